"""Source schema changes reach the sink under ``migration_strategy``, and the sink ends equal to the source.

Rows that existed before ``ALTER TABLE ... ADD COLUMN`` hold the column's default at the source (one constant, or
a value of their own for a volatile default); pgoutput sends no row for them, so these tests compare every row of
every column after the change, with rows inserted, updated and deleted around it. Real servers, real worker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.pg import PgDatabase, WorkerProcess, wait_tables_equal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MakeConfig = Callable[..., Path]
RunWorker = Callable[..., WorkerProcess]
FAST = {"cdc": {"flush_interval_ms": 50}}


def realtime(status: dict[str, Any]) -> bool:
    return status.get("state") == "realtime"


def failed(status: dict[str, Any]) -> bool:
    return status.get("status") == "failed"


def set_strategy(path: Path, strategy: dict[str, Any] | None) -> None:
    spec = yaml.safe_load(path.read_text())
    sink = spec["sink"]["postgres"]
    if strategy is None:
        sink.pop("migration_strategy", None)
    else:
        sink["migration_strategy"] = strategy
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def sink_columns(db: PgDatabase, table: str) -> dict[str, tuple[str, bool]]:
    """name -> (type, NOT NULL) of ``public.table``."""
    rows = db.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (f"public.{table}",),
    )
    return {r[0]: (r[1], bool(r[2])) for r in rows}


def start(
    source_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker, setup: str, **options: Any
) -> tuple[Path, WorkerProcess]:
    source_db.psql(setup)
    options.setdefault("limits", FAST)
    cfg = make_connector_config(**options)
    worker = run_worker(cfg)
    worker.wait_for_status(realtime)
    return cfg, worker


def test_added_columns_with_constant_defaults_fill_existing_rows(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    _, worker = start(
        source_db,
        make_connector_config,
        run_worker,
        "CREATE TABLE s (id int PRIMARY KEY, a int); INSERT INTO s SELECT g, g FROM generate_series(1, 200) g;",
        migration_strategy={"allowed": ["Add"]},
    )
    source_db.psql(
        "ALTER TABLE s ADD COLUMN seven int DEFAULT 7;"
        "ALTER TABLE s ADD COLUMN quoted text DEFAULT E'it''s \"q\", \\\\ {x}';"
        "ALTER TABLE s ADD COLUMN arr int[] DEFAULT '{1,NULL,3}';"
        "ALTER TABLE s ADD COLUMN at timestamptz DEFAULT now();"
        "ALTER TABLE s ADD COLUMN must int NOT NULL DEFAULT 3;"
        "ALTER TABLE s ADD COLUMN nothing text;"
        "INSERT INTO s (id, a, seven, nothing) VALUES (1000, 1, 8, 'n');"
        "UPDATE s SET a = -a, nothing = 'u' WHERE id % 10 = 0;"
        "DELETE FROM s WHERE id % 10 = 1;"
    )
    wait_tables_equal(source_db, sink_db, {"s": ("id",)})
    assert sink_db.scalar("SELECT count(*) FROM s WHERE seven = 7 AND must = 3 AND at IS NOT NULL") == 180
    cols = sink_columns(sink_db, "s")
    assert cols["must"] == ("integer", True)
    assert cols["seven"] == ("integer", False)
    # The sink keeps no default of its own: a later insert carries the source's values.
    assert sink_db.scalar("SELECT count(*) FROM pg_attrdef WHERE adrelid = 'public.s'::regclass") == 0
    source_db.psql("INSERT INTO s (id, a) VALUES (1001, 2); UPDATE s SET seven = 70 WHERE id = 2;")
    wait_tables_equal(source_db, sink_db, {"s": ("id",)})
    assert worker.stop() == 0


def test_added_columns_with_volatile_defaults_copy_each_rows_value(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    _, worker = start(
        source_db,
        make_connector_config,
        run_worker,
        "CREATE TABLE v (id int PRIMARY KEY, a int); INSERT INTO v SELECT g, g FROM generate_series(1, 300) g;"
        "CREATE TABLE k (x int, y int, PRIMARY KEY (x, y));"
        "INSERT INTO k SELECT g % 7, g FROM generate_series(1, 50) g;",
        migration_strategy={"allowed": ["Add"]},
        limits={"cdc": {"flush_interval_ms": 50}, "snapshot": {"max_buffer_rows": 64}},
    )
    source_db.psql(
        "ALTER TABLE v ADD COLUMN r double precision DEFAULT random();"
        "ALTER TABLE v ADD COLUMN seven int DEFAULT 7;"  # after a rewrite: materialised, read per row too
        "ALTER TABLE v ADD COLUMN at timestamptz DEFAULT clock_timestamp();"
        "ALTER TABLE v ADD COLUMN u uuid NOT NULL DEFAULT gen_random_uuid();"
        "ALTER TABLE v ADD COLUMN plain text;"
        "INSERT INTO v (id, a) VALUES (1000, 1), (1001, 2);"
        "UPDATE v SET r = -1, a = 0 WHERE id % 5 = 0;"
        "DELETE FROM v WHERE id % 7 = 0;"
        "ALTER TABLE k ADD COLUMN r double precision DEFAULT random();"
        "UPDATE k SET r = 2 WHERE y = 1;"
    )
    wait_tables_equal(source_db, sink_db, {"v": ("id",), "k": ("x", "y")})
    # Each existing row kept its own value (not one value for all, not NULL).
    assert sink_db.scalar("SELECT count(DISTINCT r) FROM v WHERE id % 5 <> 0") > 200
    assert sink_db.scalar("SELECT count(*) FROM v WHERE at IS NULL OR u IS NULL") == 0
    assert sink_columns(sink_db, "v")["u"] == ("uuid", True)
    source_db.psql("UPDATE v SET at = at + interval '1 day', plain = 'p' WHERE id < 20; DELETE FROM v WHERE id = 2;")
    wait_tables_equal(source_db, sink_db, {"v": ("id",), "k": ("x", "y")})
    assert worker.stop() == 0


KIND_CASES = {
    "Add": ("ALTER TABLE {t} ADD COLUMN x int DEFAULT 5; INSERT INTO {t} (id, a, b) VALUES (100, 1, 'n');", "x"),
    "Drop": ("ALTER TABLE {t} DROP COLUMN b; INSERT INTO {t} (id, a) VALUES (100, 1);", "b"),
    "Datatype": ("ALTER TABLE {t} ALTER COLUMN a TYPE bigint; INSERT INTO {t} VALUES (100, 10000000000, 'n');", "a"),
    "Nullability": ("ALTER TABLE {t} ALTER COLUMN b SET NOT NULL; INSERT INTO {t} VALUES (100, 1, 'n');", "b"),
}
#: the sink column each kind changes, as (type, NOT NULL), after it was applied (None: dropped)
KIND_RESULT = {
    "Add": ("x", ("integer", False)),
    "Drop": ("b", None),
    "Datatype": ("a", ("bigint", False)),
    "Nullability": ("b", ("text", True)),
}


@pytest.mark.parametrize("kind", list(KIND_CASES))
def test_each_kind_is_applied_when_allowed_and_refused_otherwise(
    kind: str, source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    ddl, column = KIND_CASES[kind]
    cfg, worker = start(
        source_db,
        make_connector_config,
        run_worker,
        "CREATE TABLE yes (id int PRIMARY KEY, a int, b text); CREATE TABLE no (LIKE yes INCLUDING ALL);"
        "INSERT INTO yes SELECT g, g, 'b' || g FROM generate_series(1, 50) g; INSERT INTO no SELECT * FROM yes;",
        migration_strategy={"allowed": [kind]},
    )
    source_db.psql(ddl.format(t="yes"))
    wait_tables_equal(source_db, sink_db, {"yes": ("id",), "no": ("id",)})
    name, result = KIND_RESULT[kind]
    assert sink_columns(sink_db, "yes").get(name) == result
    assert worker.stop() == 0
    # Every kind but this one allowed: the same change is refused, naming the table, the change and the fix.
    set_strategy(cfg, {"allowed": [k for k in ("Add", "Drop", "Datatype", "Nullability", "Order") if k != kind]})
    worker = run_worker(cfg)
    worker.wait_for_status(realtime)
    source_db.psql(ddl.format(t="no"))
    status = worker.wait_for_status(failed, timeout=60)
    assert worker.wait(30) == 1
    err = status["last_error"]
    assert err["error"] == "SchemaChangeNotAllowed"
    assert kind in err["message"] and f"column {column}" in err["message"] and "public.no" in err["message"]
    assert f"Add {kind} to sink.postgres.migration_strategy.allowed" in err["fix"]
    assert sink_db.scalar("SELECT count(*) FROM no") == 50  # nothing after the change
    assert sink_columns(sink_db, "no") == {"id": ("integer", True), "a": ("integer", False), "b": ("text", False)}


def test_omitted_strategy_applies_add_and_refuses_drop_with_the_fix(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    cfg, worker = start(
        source_db,
        make_connector_config,
        run_worker,
        "CREATE TABLE s (id int PRIMARY KEY, a int, b text);"
        "INSERT INTO s SELECT g, g, 'b' FROM generate_series(1, 20) g;",
    )
    source_db.psql("ALTER TABLE s ADD COLUMN c int DEFAULT 7; INSERT INTO s VALUES (100, 1, 'b', 8);")
    wait_tables_equal(source_db, sink_db, {"s": ("id",)})
    source_db.psql("ALTER TABLE s DROP COLUMN b; INSERT INTO s VALUES (101, 1, 9);")
    status = worker.wait_for_status(failed, timeout=60)
    assert worker.wait(30) == 1
    err = status["last_error"]
    assert err["error"] == "SchemaChangeNotAllowed"
    assert "column b dropped" in err["message"] and "Drop" in err["message"]
    assert "migration_strategy is not set" in err["fix"] and "sink.postgres.migration_strategy.allowed" in err["fix"]
    assert [d["field"] for d in err.get("details", [])] == ["sink.postgres.migration_strategy.allowed"]
    set_strategy(cfg, {"allowed": ["Add", "Drop"]})
    worker = run_worker(cfg)
    wait_tables_equal(source_db, sink_db, {"s": ("id",)})
    assert "b" not in sink_columns(sink_db, "s")
    assert worker.stop() == 0


def test_disable_all_refuses_even_an_allowed_add(
    source_db: PgDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    _, worker = start(
        source_db,
        make_connector_config,
        run_worker,
        "CREATE TABLE s (id int PRIMARY KEY, a int); INSERT INTO s VALUES (1, 1);",
        migration_strategy={"allowed": ["Add"], "disable_all": True},
    )
    source_db.psql("ALTER TABLE s ADD COLUMN c int; INSERT INTO s VALUES (2, 2, 2);")
    status = worker.wait_for_status(failed, timeout=60)
    err = status["last_error"]
    assert err["error"] == "SchemaChangeNotAllowed" and "disable_all to false" in err["fix"]
    assert sink_db.scalar("SELECT count(*) FROM s") == 1
