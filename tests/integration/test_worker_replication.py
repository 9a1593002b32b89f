"""The worker against real PostgreSQL: snapshot + streaming PG→PG, behaviour by behaviour.

Each test gets fresh source and sink databases on the session's two servers and runs ``sluice worker`` as a
subprocess, exactly as the operator will. Tables are compared row by row in their text form.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.pg import PgDatabase, WorkerProcess, table_diff, wait_tables_equal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MakeConfig = Callable[..., Path]
RunWorker = Callable[..., WorkerProcess]


def realtime(status: dict[str, Any]) -> bool:
    return status.get("state") == "realtime"


def edit_spec(path: Path, fn: Callable[[dict[str, Any]], None]) -> Path:
    spec = yaml.safe_load(path.read_text())
    fn(spec)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sink_types(db: PgDatabase, schema: str, table: str) -> dict[str, str]:
    rows = db.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c "
        "ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND "
        "c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
        (schema, table),
    )
    return {r[0]: r[1] for r in rows}


TYPE_TABLE = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE types (
    id integer PRIMARY KEY,
    i2 smallint, i8 bigint, n numeric(12, 2), nfree numeric, r real, d double precision,
    b boolean, t text, vc varchar(20), ch char(3),
    ts timestamp, tstz timestamptz, dt date, tm time, iv interval,
    arr integer[], tarr text[], j json, jb jsonb, u uuid, by bytea,
    m mood, marr mood[], p posint, ip inet, cidr_ cidr, mac macaddr, bits bit varying(8),
    rng int4range, pt point, money_ money
);
"""

TYPE_ROWS = """
INSERT INTO types VALUES
 ({o}+1, 1, 9223372036854775807, 1234567890.12, 'NaN', 1.5, 3.141592653589793, true, 'plain', 'vc', 'abc',
  '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789+05:30', '2024-02-29', '23:59:59',
  '1 year 2 months 3 days 04:05:06',
  '{{1,2,NULL}}', '{{"a b","c,d","e\\"f",NULL}}', '{{"k": [1, 2] ,  "ws": true}}', '{{"b": 1, "a": [null]}}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10', 'happy', '{{sad,ok}}', 5, '10.1.2.3/24', '10.1.0.0/16',
  '08:00:2b:01:02:03', B'1011', '[1,10)', '(1.5,2.5)', 12.34),
 ({o}+2, NULL, NULL, -0.01, '-1e-20', '-Infinity', 'NaN', false, E'tab\\there\\nnewline \\\\ backslash', '',
  '   ', 'infinity', '-infinity', '0001-01-01', '00:00', '-1 day', '{{}}', '{{}}', 'null', '[]', NULL, '\\x',
  'sad', '{{}}', NULL, '::1', '::/0', NULL, B'', 'empty', NULL, NULL),
 ({o}+3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"""


def test_type_matrix_round_trip(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql(TYPE_TABLE + TYPE_ROWS.format(o=0))
    worker = run_worker(make_connector_config())
    worker.wait_for_status(realtime)
    # Same values again, now through the change stream (text format) instead of the snapshot (binary COPY).
    source_db.psql(TYPE_ROWS.format(o=10))
    source_db.psql("UPDATE types SET t = t || '!', marr = marr || 'happy'::mood WHERE id IN (1, 11)")
    wait_tables_equal(source_db, sink_db, {"types": ("id",)})
    src_types = sink_types(source_db, "public", "types")
    assert sink_types(sink_db, "public", "types") == src_types
    assert src_types["n"] == "numeric(12,2)" and src_types["tstz"] == "timestamp with time zone"
    assert sink_db.scalar(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'p' AND conrelid = 'public.types'::regclass"
    )
    assert worker.stop() == 0


def test_changes_then_restart_exactly_once(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql(
        "CREATE TABLE acc (id int PRIMARY KEY, v int NOT NULL, s text);"
        "INSERT INTO acc SELECT g, g, 'r' || g FROM generate_series(1, 5000) g;"
    )
    cfg = make_connector_config(target_schema="replica", limits={"cdc": {"flush_interval_ms": 50}})
    worker = run_worker(cfg)
    worker.wait_for_status(realtime)
    source_db.psql(
        "INSERT INTO acc SELECT g, g, 'new' FROM generate_series(5001, 6000) g;"
        "UPDATE acc SET v = v + 1 WHERE id % 3 = 0;"
        "DELETE FROM acc WHERE id % 7 = 0;"
        "BEGIN; INSERT INTO acc VALUES (9000, 1, 'k'); UPDATE acc SET id = 9001 WHERE id = 9000;"
        "UPDATE acc SET s = 'last' WHERE id = 9001; COMMIT;"
        "BEGIN; DELETE FROM acc WHERE id = 1; INSERT INTO acc VALUES (1, -1, 'back'); COMMIT;"
    )
    wait_tables_equal(source_db, sink_db, {"acc": ("id",)}, sink_schema="replica")
    assert worker.stop() == 0
    # Changes while the worker is down, including a truncate, are applied once after the restart.
    source_db.psql(
        "UPDATE acc SET v = 0 WHERE id < 100; TRUNCATE acc; INSERT INTO acc VALUES (1, 1, 'after truncate');"
        "INSERT INTO acc SELECT g, g, 'x' FROM generate_series(2, 300) g; UPDATE acc SET v = v * 2;"
    )
    worker = run_worker(cfg)
    wait_tables_equal(source_db, sink_db, {"acc": ("id",)}, sink_schema="replica")
    applied = sink_db.scalar("SELECT position FROM sluice.checkpoints")
    slot = source_db.scalar(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE database = current_database()"
    )
    assert applied and slot
    assert worker.stop() == 0
    # An idle source does not retain WAL forever: with no changes for our tables the slot still advances.
    worker = run_worker(cfg)
    worker.wait_for_status(realtime)
    # Sluice's publication lists its tables, so a table created now is not in it: its WAL has no changes for us.
    source_db.psql("CREATE TABLE other (x int PRIMARY KEY); INSERT INTO other SELECT generate_series(1, 1000);")
    before = source_db.scalar("SELECT pg_current_wal_lsn()::text")

    def slot_caught_up() -> bool:
        return bool(
            source_db.scalar(
                "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                "WHERE database = current_database()",
                (before,),
            )
        )

    import time

    deadline = time.monotonic() + 30
    while not slot_caught_up():
        assert time.monotonic() < deadline, "slot did not advance past WAL without publication changes"
        source_db.execute("SELECT pg_switch_wal() IS NOT NULL")
        time.sleep(0.2)
    assert worker.stop() == 0
    assert table_diff(source_db, sink_db, "acc", ("id",), sink_schema="replica") is None


def test_unchanged_toast_values_are_kept(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql(
        "CREATE TABLE docs (id int PRIMARY KEY, n int, body text, blob bytea);"
        "ALTER TABLE docs ALTER COLUMN body SET STORAGE EXTERNAL;"
        "INSERT INTO docs SELECT g, 0, repeat(md5(g::text), 4000), decode(repeat('ab', 50000), 'hex') "
        "FROM generate_series(1, 20) g;"
    )
    worker = run_worker(make_connector_config(limits={"cdc": {"flush_interval_ms": 50}}))
    worker.wait_for_status(realtime)
    # Updates that do not touch the toasted columns: pgoutput sends them as 'unchanged'.
    source_db.psql(
        "UPDATE docs SET n = n + 1 WHERE id <= 10;"
        "BEGIN; UPDATE docs SET n = 100 WHERE id = 11; UPDATE docs SET n = 101 WHERE id = 11; COMMIT;"
        "INSERT INTO docs VALUES (21, 0, repeat('z', 70000), NULL);"
        "BEGIN; UPDATE docs SET body = repeat('q', 60000) WHERE id = 12; UPDATE docs SET n = 7 WHERE id = 12; COMMIT;"
    )
    wait_tables_equal(source_db, sink_db, {"docs": ("id",)})
    assert sink_db.scalar("SELECT length(body) FROM docs WHERE id = 1") == 128000
    assert worker.stop() == 0


def test_partitioned_table_as_root_and_as_leaves(
    source_db: PgDatabase,
    sink_db: PgDatabase,
    make_connector_config: MakeConfig,
    run_worker: RunWorker,
) -> None:
    source_db.psql(
        "CREATE TABLE events (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);"
        "CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');"
        "CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');"
        "INSERT INTO events SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g FROM generate_series(1, 1000) g;"
    )
    as_root = edit_spec(
        make_connector_config(target_schema="root"),
        lambda s: s["source"]["postgres"].update(partitions_as_root=True),
    )
    as_leaves = make_connector_config(target_schema="leaves")
    w1 = run_worker(as_root)
    w2 = run_worker(as_leaves)
    w1.wait_for_status(realtime)
    w2.wait_for_status(realtime)
    source_db.psql(
        "INSERT INTO events SELECT g, 'eu', g FROM generate_series(1001, 1100) g;"
        "UPDATE events SET v = -v WHERE id % 10 = 0; DELETE FROM events WHERE id % 9 = 0;"
    )
    wait_tables_equal(source_db, sink_db, {"events": ("id", "region")}, sink_schema="root")
    wait_tables_equal(source_db, sink_db, {"events_eu": ("id",), "events_us": ("id",)}, sink_schema="leaves")
    assert not sink_db.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'root' AND tablename <> 'events'")
    assert not sink_db.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'leaves' AND tablename = 'events'")
    assert w1.stop() == 0
    assert w2.stop() == 0


def test_keyless_table_with_replica_identity_full(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql(
        "CREATE TABLE log (a int, b text, j json); ALTER TABLE log REPLICA IDENTITY FULL;"
        "INSERT INTO log VALUES (1, 'dup', '{\"x\": 1}'), (1, 'dup', '{\"x\": 1}'), (2, NULL, NULL), (3, 'c', '[]');"
    )
    worker = run_worker(make_connector_config(limits={"cdc": {"flush_interval_ms": 50}}))
    worker.wait_for_status(realtime)
    source_db.psql(
        "DELETE FROM log WHERE ctid = (SELECT min(ctid) FROM log WHERE a = 1);"  # one of two duplicates
        "UPDATE log SET b = 'was null' WHERE a = 2;"
        "UPDATE log SET a = 30 WHERE a = 3;"
        "INSERT INTO log VALUES (4, 'd', NULL), (4, 'd', NULL);"
    )
    wait_tables_equal(source_db, sink_db, {"log": ("a", "b")})
    assert sink_db.scalar("SELECT count(*) FROM log WHERE a = 1") == 1
    assert worker.stop() == 0


def test_schema_changes_applied_when_allowed(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql(
        "CREATE TABLE s (id int PRIMARY KEY, a int, b text, c int NOT NULL DEFAULT 0);"
        "INSERT INTO s (id, a, b) SELECT g, g, 'x' FROM generate_series(1, 100) g;"
    )
    cfg = make_connector_config(
        migration_strategy={"allowed": ["Add", "Drop", "Datatype", "Nullability"]},
        limits={"cdc": {"flush_interval_ms": 50}},
    )
    worker = run_worker(cfg)
    worker.wait_for_status(realtime)
    source_db.psql(
        "ALTER TABLE s ADD COLUMN d numeric(10, 3); UPDATE s SET d = id / 7.0 WHERE id < 50;"
        "ALTER TABLE s DROP COLUMN b; ALTER TABLE s ALTER COLUMN a TYPE bigint; UPDATE s SET a = a * 10000000000;"
        "ALTER TABLE s ALTER COLUMN c DROP NOT NULL; INSERT INTO s (id, a, c) VALUES (1000, 1, NULL);"
    )
    wait_tables_equal(source_db, sink_db, {"s": ("id",)})
    # Small batches (one statement each, cached per table shape) before and after a change of the same table.
    for step in (
        "UPDATE s SET a = a + 1 WHERE id = 1; INSERT INTO s (id, a) VALUES (2000, 5);",
        "ALTER TABLE s ADD COLUMN e text; UPDATE s SET a = a + 1, e = 'new' WHERE id = 1;"
        "INSERT INTO s (id, a, e) VALUES (2001, 6, 'e');",
        "ALTER TABLE s ALTER COLUMN d TYPE numeric(12, 4); UPDATE s SET d = 1.2345 WHERE id = 2;",
    ):
        source_db.psql(step)
        wait_tables_equal(source_db, sink_db, {"s": ("id",)})
    types = sink_types(sink_db, "public", "s")
    assert types == {"id": "integer", "a": "bigint", "c": "integer", "d": "numeric(12,4)", "e": "text"}
    assert worker.stop() == 0


def test_schema_change_refused_stops_with_a_clear_condition(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql("CREATE TABLE s (id int PRIMARY KEY, a int); INSERT INTO s VALUES (1, 1);")
    # An explicit empty list allows nothing (an omitted migration_strategy would apply Add).
    cfg = make_connector_config(migration_strategy={"allowed": []}, limits={"cdc": {"flush_interval_ms": 50}})
    worker = run_worker(cfg)
    worker.wait_for_status(realtime)
    source_db.psql(
        "INSERT INTO s VALUES (2, 2); ALTER TABLE s ADD COLUMN extra text; INSERT INTO s VALUES (3, 3, 'e');"
    )
    status = worker.wait_for_status(lambda s: s.get("status") == "failed", timeout=60)
    assert worker.wait(30) == 1
    err = status["last_error"]
    assert err["error"] == "SchemaChangeNotAllowed"
    assert "extra" in err["message"] and "Add" in err["message"]
    assert "migration_strategy" in err["fix"]
    # Everything before the change was applied, nothing after it.
    assert sink_db.scalar("SELECT count(*) FROM s") == 2
    # The fix the message suggests works: allow Add, restart, and the rest arrives.
    edit_spec(cfg, lambda s: s["sink"]["postgres"].update(migration_strategy={"allowed": ["Add"]}))
    worker = run_worker(cfg)
    wait_tables_equal(source_db, sink_db, {"s": ("id",)})
    assert worker.stop() == 0


def test_snapshot_only_copies_and_exits_zero(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql(
        "CREATE TABLE a (id int PRIMARY KEY, v text);"
        "INSERT INTO a SELECT g, md5(g::text) FROM generate_series(1, 30000) g;"
        "CREATE TABLE b (x int); INSERT INTO b SELECT generate_series(1, 10);"
    )
    cfg = make_connector_config(replication="snapshot", limits={"snapshot": {"max_buffer_rows": 1000}})
    worker = run_worker(cfg)
    assert worker.wait(120) == 0, worker.output_tail()
    last = worker.last_status()
    assert last is not None and last["state"] == "complete"
    assert last["tables"]["public.a"]["chunks_total"] > 1
    assert table_diff(source_db, sink_db, "a", ("id",)) is None
    assert table_diff(source_db, sink_db, "b", ("x",)) is None
    assert not source_db.scalar("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
    # A second run refreshes the copy rather than duplicating it.
    source_db.psql("DELETE FROM a WHERE id > 100; INSERT INTO b VALUES (11);")
    assert run_worker(cfg).wait(120) == 0
    assert table_diff(source_db, sink_db, "a", ("id",)) is None
    assert table_diff(source_db, sink_db, "b", ("x",)) is None


def test_catalog_selects_tables_and_columns(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql(
        "CREATE TABLE keep (id int PRIMARY KEY, v text, secret text); CREATE TABLE skip (id int PRIMARY KEY);"
        "INSERT INTO keep VALUES (1, 'a', 'hidden'); INSERT INTO skip VALUES (1);"
    )
    catalog = {
        "default_action": "Exclude",
        "schemas": [
            {
                "name": "public",
                "action": "Exclude",
                "tables": [{"name": "keep", "action": "Include", "columns": [{"name": "secret", "action": "Exclude"}]}],
            }
        ],
    }
    worker = run_worker(make_connector_config(catalog=catalog, limits={"cdc": {"flush_interval_ms": 50}}))
    worker.wait_for_status(realtime)
    source_db.psql("INSERT INTO keep VALUES (2, 'b', 'hidden2'); UPDATE keep SET v = 'c' WHERE id = 1;")

    def sink_ok() -> bool:
        return sink_db.execute("SELECT id, v FROM keep ORDER BY id") == [(1, "c"), (2, "b")]

    import time

    deadline = time.monotonic() + 30
    while not sink_ok():
        assert time.monotonic() < deadline, sink_db.execute("SELECT * FROM keep")
        time.sleep(0.1)
    assert "secret" not in sink_types(sink_db, "public", "keep")
    assert not sink_db.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'skip'")
    assert worker.stop() == 0


def test_preflight_names_what_to_fix(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql("CREATE TABLE nokey (a int, b text);")
    worker = run_worker(make_connector_config(publication_name="no_such_pub"))
    assert worker.wait(60) == 2
    err = worker.last_status()["last_error"]  # type: ignore[index]
    assert err["error"] == "SourceNotReady"
    assert "no_such_pub" in err["message"]
    worker = run_worker(make_connector_config())
    assert worker.wait(60) == 2
    err = worker.last_status()["last_error"]  # type: ignore[index]
    assert "public.nokey" in err["message"]
    assert "REPLICA IDENTITY FULL" in err["fix"]


def test_catalog_naming_a_missing_table_is_refused(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql("CREATE TABLE present (id int PRIMARY KEY);")
    catalog = {
        "default_action": "Exclude",
        "schemas": [
            {
                "name": "public",
                "action": "Include",
                "tables": [{"name": "present", "action": "Include"}, {"name": "absent", "action": "Include"}],
            }
        ],
    }
    worker = run_worker(make_connector_config(catalog=catalog))
    assert worker.wait(60) == 2
    err = worker.last_status()["last_error"]  # type: ignore[index]
    assert err["error"] == "SourceNotReady"
    assert "public.absent" in err["message"]
    assert "public.present" not in err["message"]
    assert "source.postgres.catalog" in err["fix"]


def test_user_publication_is_used(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql(
        "CREATE TABLE p1 (id int PRIMARY KEY); CREATE TABLE p2 (id int PRIMARY KEY);"
        "INSERT INTO p1 VALUES (1); INSERT INTO p2 VALUES (1); CREATE PUBLICATION mine FOR TABLE p1;"
    )
    worker = run_worker(make_connector_config(publication_name="mine", limits={"cdc": {"flush_interval_ms": 50}}))
    worker.wait_for_status(realtime)
    source_db.psql("INSERT INTO p1 VALUES (2); INSERT INTO p2 VALUES (2);")
    wait_tables_equal(source_db, sink_db, {"p1": ("id",)})
    assert not sink_db.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'p2'")
    assert source_db.scalar("SELECT count(*) FROM pg_publication") == 1
    assert worker.stop() == 0


def test_least_privilege_user_with_a_user_publication(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    user = source_db.instance.replication_user
    source_db.psql(
        "CREATE TABLE lp (id int PRIMARY KEY, v text); INSERT INTO lp VALUES (1, 'a');"
        f'GRANT SELECT ON lp TO "{user.name}"; CREATE PUBLICATION lp_pub FOR TABLE lp;'
    )
    worker = run_worker(
        make_connector_config(source_user=user, publication_name="lp_pub", limits={"cdc": {"flush_interval_ms": 50}})
    )
    worker.wait_for_status(realtime)
    source_db.psql("INSERT INTO lp VALUES (2, 'b'); UPDATE lp SET v = 'c' WHERE id = 1;")
    wait_tables_equal(source_db, sink_db, {"lp": ("id",)})
    assert worker.stop() == 0


def test_missing_replication_privilege_is_named(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    from sluice.devstack.postgres import PostgresUser

    user = PostgresUser(f"norepl_{source_db.name[-8:]}", "norepl-pw")
    source_db.psql(
        f"CREATE ROLE \"{user.name}\" LOGIN PASSWORD '{user.password}';"
        f'CREATE TABLE t (id int PRIMARY KEY); GRANT SELECT ON t TO "{user.name}";'
        "CREATE PUBLICATION tp FOR TABLE t;"
    )
    try:
        worker = run_worker(make_connector_config(source_user=user, publication_name="tp"))
        assert worker.wait(60) == 2, worker.output_tail()
        err = worker.last_status()["last_error"]  # type: ignore[index]
        assert "lacks the REPLICATION attribute" in err["message"]
        assert "ALTER ROLE" in err["fix"]
        assert user.password not in worker.output_tail()
    finally:
        source_db.psql(f'DROP OWNED BY "{user.name}"; DROP ROLE "{user.name}";')


def test_table_added_after_the_snapshot_is_copied_on_restart(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    source_db.psql("CREATE TABLE first (id int PRIMARY KEY, v text); INSERT INTO first VALUES (1, 'a');")
    cfg = make_connector_config(limits={"cdc": {"flush_interval_ms": 50}})
    worker = run_worker(cfg)
    worker.wait_for_status(realtime)
    assert worker.stop() == 0
    source_db.psql(
        "CREATE TABLE later (id int PRIMARY KEY, v text);"
        "INSERT INTO later SELECT g, md5(g::text) FROM generate_series(1, 5000) g;"
        "INSERT INTO first VALUES (2, 'b');"
    )
    worker = run_worker(cfg)
    worker.wait_for_status(realtime)
    source_db.psql("UPDATE later SET v = 'changed' WHERE id <= 10; DELETE FROM later WHERE id > 4990;")
    wait_tables_equal(source_db, sink_db, {"first": ("id",), "later": ("id",)})
    assert worker.stop() == 0


def test_cleanup_drops_slot_and_own_publication(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    from sluice.errors import TransientError
    from sluice.worker.cleanup import drop_source_objects
    from sluice.worker.config import load_connector

    source_db.psql("CREATE TABLE c (id int PRIMARY KEY); INSERT INTO c VALUES (1);")
    cfg = make_connector_config()
    worker = run_worker(cfg)
    worker.wait_for_status(realtime)
    # "realtime" can be reported a moment before the replication connection holds the slot: wait for it.
    import time

    deadline = time.monotonic() + 30
    while not source_db.scalar(
        "SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND active"
    ):
        assert time.monotonic() < deadline, "the worker never made its slot active"
        time.sleep(0.05)
    connector = load_connector(cfg)
    with pytest.raises(TransientError, match="still in use"):
        drop_source_objects(connector)
    assert worker.stop() == 0
    dropped = drop_source_objects(connector)
    assert any(d.startswith("slot ") for d in dropped) and any(d.startswith("publication ") for d in dropped)
    assert not source_db.scalar("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")
    assert not source_db.scalar("SELECT count(*) FROM pg_publication")
    assert drop_source_objects(connector) == []  # idempotent


def test_inserted_keys_the_sink_already_has_become_upserts(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    # Runs of inserts are copied straight into the target. A key the sink already holds (rows written there by
    # someone else, a batch replayed) must not fail the batch: the run is redone as upserts, source values win.
    source_db.psql("CREATE TABLE ev (id int PRIMARY KEY, v text NOT NULL); INSERT INTO ev VALUES (1, 'snap');")
    source_db.execute(f"ALTER DATABASE \"{source_db.name}\" SET logical_decoding_work_mem = '64kB'")
    worker = run_worker(make_connector_config(limits={"cdc": {"flush_interval_ms": 50}}))
    worker.wait_for_status(realtime)
    sink_db.psql("INSERT INTO ev SELECT g, 'stale' FROM generate_series(5, 8) g UNION ALL SELECT 20005, 'stale';")
    # A small transaction (a plain batch) and a big one (streamed while in progress, applied ahead).
    source_db.psql(
        "INSERT INTO ev SELECT g, 'small' || g FROM generate_series(2, 10) g;"
        "BEGIN; INSERT INTO ev SELECT g, 'big' || g FROM generate_series(20000, 40000) g;"
        "UPDATE ev SET v = 'touched' WHERE id = 20001; COMMIT;"
        "INSERT INTO ev VALUES (11, 'after');"
    )
    wait_tables_equal(source_db, sink_db, {"ev": ("id",)})
    assert sink_db.scalar("SELECT count(*) FROM ev WHERE v = 'stale'") == 0
    assert worker.stop() == 0


def test_small_batches_cover_every_merge_kind(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    # Batches of a few changes skip staging (one statement with parameters): each kind of change must still land.
    source_db.psql(
        "CREATE TYPE tone AS ENUM ('low', 'high');"
        "CREATE TABLE sm (id int PRIMARY KEY, v int, doc text, t tone, a int[], n numeric(8, 2));"
        "ALTER TABLE sm ALTER COLUMN doc SET STORAGE EXTERNAL;"
        "INSERT INTO sm SELECT g, g, repeat(md5(g::text), 300), 'low', ARRAY[g, g], g / 3.0 "
        "FROM generate_series(1, 8) g;"
    )
    # Transactions over 64kB are streamed while in progress (the last step below).
    source_db.execute(f"ALTER DATABASE \"{source_db.name}\" SET logical_decoding_work_mem = '64kB'")
    worker = run_worker(make_connector_config(limits={"cdc": {"flush_interval_ms": 20}}))
    worker.wait_for_status(realtime)
    steps = [
        # insert, then update of the same key (folded after the leading insert), key change, delete, TOAST kept
        "BEGIN; INSERT INTO sm VALUES (100, 1, 'x', 'high', '{}', 1.5); UPDATE sm SET v = 2 WHERE id = 100;"
        "UPDATE sm SET id = 50 WHERE id = 1; DELETE FROM sm WHERE id = 2; UPDATE sm SET v = 9 WHERE id = 3;"
        "INSERT INTO sm VALUES (101, NULL, E'tab\\there\\nnl \\\\ bs', NULL, '{NULL,3}', NULL); COMMIT;",
        "INSERT INTO sm VALUES (102, 7, 'alone', 'low', NULL, -0.25);",
        "UPDATE sm SET v = v + 1, t = 'high' WHERE id IN (4, 5);",  # doc unchanged: masked update only
        "DELETE FROM sm WHERE id = 102;",
        # a key change keeps unchanged TOAST values only the sink's old row has: small, staged and streamed batches
        "UPDATE sm SET id = 60 WHERE id = 4;",
        "BEGIN; INSERT INTO sm SELECT g, g, 'n', 'low', NULL, 0 FROM generate_series(300, 340) g;"
        "UPDATE sm SET id = 61, v = 0 WHERE id = 5; COMMIT;",
        "BEGIN; INSERT INTO sm SELECT g, g, repeat('y', 200), 'low', NULL, 0 FROM generate_series(1000, 2000) g;"
        "UPDATE sm SET id = 62 WHERE id = 6; UPDATE sm SET id = 63 WHERE id = 62; COMMIT;",
    ]
    for step in steps:
        source_db.psql(step)
        wait_tables_equal(source_db, sink_db, {"sm": ("id",)})
    assert sink_db.scalar("SELECT length(doc) FROM sm WHERE id = 63") == 9600
    # A key the sink already has (written there by someone else) is upserted, not a failed batch.
    sink_db.psql("INSERT INTO sm VALUES (200, -1, 'stale', NULL, NULL, NULL);")
    source_db.psql("INSERT INTO sm VALUES (200, 1, 'fresh', 'low', NULL, 2);")
    wait_tables_equal(source_db, sink_db, {"sm": ("id",)})
    assert worker.stop() == 0


def test_keyless_table_added_later_is_copied_exactly_once(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    # Rows from before the table joined the publication reach the sink only through a copy; rows written after
    # it joined are also in the stream. With no key to upsert on, the copy's position decides which stream
    # changes are already in it: every row must arrive exactly once, duplicates included.
    source_db.psql("CREATE TABLE first (id int PRIMARY KEY); CREATE PUBLICATION mine FOR TABLE first;")
    cfg = make_connector_config(publication_name="mine", limits={"cdc": {"flush_interval_ms": 50}})
    worker = run_worker(cfg)
    worker.wait_for_status(realtime)
    assert worker.stop() == 0
    source_db.psql(
        "CREATE TABLE kl (a int, b text); ALTER TABLE kl REPLICA IDENTITY FULL;"
        "INSERT INTO kl SELECT g % 7, 'before' FROM generate_series(1, 300) g;"
        "ALTER PUBLICATION mine ADD TABLE kl;"
        "INSERT INTO kl SELECT g % 7, 'after' FROM generate_series(1, 200) g;"
        "DELETE FROM kl WHERE a = 0 AND b = 'before';"
    )
    worker = run_worker(cfg)
    worker.wait_for_status(realtime)
    wait_tables_equal(source_db, sink_db, {"kl": ("a", "b")})
    source_db.psql("INSERT INTO kl VALUES (9, 'live'), (9, 'live'); UPDATE kl SET b = 'x' WHERE a = 1 AND b = 'after';")
    wait_tables_equal(source_db, sink_db, {"kl": ("a", "b")})
    assert worker.stop() == 0
    # A restart reads the stream again from the stored position: still exactly once.
    source_db.psql("DELETE FROM kl WHERE a = 2;")
    worker = run_worker(cfg)
    wait_tables_equal(source_db, sink_db, {"kl": ("a", "b")})
    assert worker.stop() == 0
