"""The MySQL source against real MariaDB 10.11 and MySQL 8.0 servers, into real PostgreSQL, through the worker.

Each test runs on both servers (``mysql_server`` is parametrized ``mariadb`` / ``mysql8``) with a fresh MySQL
database and a fresh PostgreSQL sink database, and runs ``sluice worker`` as a subprocess, as the operator does.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.mysql import MySqlDatabase
from tests.support.pg import PgDatabase, WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MakeConfig = Callable[..., Path]
RunWorker = Callable[..., WorkerProcess]
UTC = dt.UTC


def realtime(status: dict[str, Any]) -> bool:
    return status.get("state") == "realtime"


def config(make: MakeConfig, db: MySqlDatabase, **source_options: Any) -> Path:
    limits = source_options.pop("limits", {"cdc": {"flush_interval_ms": 50}})
    extra = {k: source_options.pop(k) for k in ("migration_strategy",) if k in source_options}
    user = source_options.pop("user", None)
    password = source_options.pop("password", None)
    return make(
        source_spec=db.source_spec(user=user, password=password, **source_options),
        target_schema="replica",
        limits=limits,
        **extra,
    )


def wait_for(
    predicate: Callable[[], bool], what: str, timeout: float = 60, worker: WorkerProcess | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if worker is not None and worker.returncode is not None:
            raise AssertionError(f"worker exited while waiting for {what}\n{worker.output_tail()}")
        if time.monotonic() > deadline:
            tail = worker.output_tail() if worker is not None else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.1)


def sink_rows(sink: PgDatabase, table: str, key: str = "id") -> list[tuple[Any, ...]]:
    return sink.execute(f'SELECT * FROM replica."{table}" ORDER BY "{key}"')


def source_rows(db: MySqlDatabase, table: str, key: str = "id") -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT * FROM `{table}` ORDER BY `{key}`")


def wait_same_rows(
    db: MySqlDatabase, sink: PgDatabase, table: str, worker: WorkerProcess, *, key: str = "id", timeout: float = 60
) -> None:
    """The sink's rows equal the source's (compared as the source's values, for plain int/text tables)."""
    last: list[Any] = []

    def same() -> bool:
        nonlocal last
        try:
            got = [tuple(r) for r in sink_rows(sink, table, key)]
        except Exception:
            return False
        want = [tuple(r) for r in source_rows(db, table, key)]
        last = [len(got), len(want)]
        return got == want

    try:
        wait_for(same, f"{table} equal in the sink", timeout, worker)
    except AssertionError as exc:
        raise AssertionError(f"sink/source rows {last}: {exc}") from None


# ---------------------------------------------------------------------------------------------------- types

TYPE_TABLE = """
CREATE TABLE types (
  id int PRIMARY KEY,
  ti tinyint, tb tinyint(1), si smallint unsigned, mi mediumint, ui int unsigned, bi bigint, ubi bigint unsigned,
  de decimal(12,3), f float, db double, b1 bit(1), b9 bit(9),
  da date, dtm datetime(6), ts timestamp(3) NULL, tm time(2), y year,
  c char(3), vc varchar(20), tx text, l1 varchar(10) CHARACTER SET latin1,
  bn binary(3), vb varbinary(5), bl blob,
  e enum('a','b','c d'), s set('x','y','z'), j json, g geometry
)
"""
TYPE_ROW = (
    "({id}, -128, 1, 65535, -8388608, 4294967295, -9223372036854775808, 18446744073709551615, -123456789.125, 1.1, "
    "2.5e-300, b'1', b'101010101', '2024-02-29', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.789', "
    "'-12:34:56.5', 2024, 'ab', 'héllo 😀', 'long text', 'café', x'0102', x'ff00', x'deadbeef', 'c d', 'x,z', "
    """'{{"k": [1, 2.5, "s", null, true]}}', ST_GeomFromText('POINT(1 2)'))"""
)
NULL_ROW = "({id}" + ", NULL" * 28 + ")"


def expected_types(id_: int) -> tuple[Any, ...]:
    return (
        id_,
        -128,
        True,
        65535,
        -8388608,
        4294967295,
        -9223372036854775808,
        Decimal(18446744073709551615),
        Decimal("-123456789.125"),
        pytest.approx(1.1, rel=1e-6),
        2.5e-300,
        True,
        b"\x01\x55",
        dt.date(2024, 2, 29),
        dt.datetime(2024, 2, 29, 12, 34, 56, 789012),
        dt.datetime(2024, 2, 29, 12, 34, 56, 789000, tzinfo=UTC),
        -dt.timedelta(hours=12, minutes=34, seconds=56, microseconds=500000),
        2024,
        "ab",
        "héllo 😀",
        "long text",
        "café",
        b"\x01\x02\x00",
        b"\xff\x00",
        b"\xde\xad\xbe\xef",
        "c d",
        "x,z",
        {"k": [1, 2.5, "s", None, True]},
        b"\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0?\x00\x00\x00\x00\x00\x00\x00@",
    )


def test_type_table_round_trips_into_postgres(
    mysql_db: MySqlDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    mysql_db.execute(TYPE_TABLE)
    mysql_db.execute("INSERT INTO types VALUES " + TYPE_ROW.format(id=1) + ", " + NULL_ROW.format(id=2))
    worker = run_worker(config(make_connector_config, mysql_db))
    worker.wait_for_status(realtime, timeout=90)
    # The same values again through the binlog, an update of every column, and a delete.
    mysql_db.execute("INSERT INTO types VALUES " + TYPE_ROW.format(id=11) + ", " + NULL_ROW.format(id=12))
    mysql_db.execute("INSERT INTO types VALUES " + TYPE_ROW.format(id=21))
    mysql_db.execute("UPDATE types SET id = 22 WHERE id = 21")
    mysql_db.execute("INSERT INTO types VALUES " + NULL_ROW.format(id=31))
    mysql_db.execute(
        "UPDATE types t JOIN types s ON s.id = 1 SET "
        + ", ".join(
            f"t.{c} = s.{c}"
            for c in (
                "ti",
                "tb",
                "si",
                "mi",
                "ui",
                "bi",
                "ubi",
                "de",
                "f",
                "db",
                "b1",
                "b9",
                "da",
                "dtm",
                "ts",
                "tm",
                "y",
                "c",
                "vc",
                "tx",
                "l1",
                "bn",
                "vb",
                "bl",
                "e",
                "s",
                "j",
                "g",
            )
        )
        + " WHERE t.id = 31"
    )
    mysql_db.execute("INSERT INTO types (id) VALUES (40)")
    mysql_db.execute("DELETE FROM types WHERE id = 40")
    wait_for(lambda: [r[0] for r in sink_rows(sink_db, "types")] == [1, 2, 11, 12, 22, 31], "rows", 60, worker)
    rows = {r[0]: r for r in sink_rows(sink_db, "types")}
    for id_ in (1, 11, 22, 31):
        assert rows[id_][1:] == expected_types(id_)[1:], f"row {id_}"
    for id_ in (2, 12):
        assert rows[id_][1:] == (None,) * 28, f"row {id_}"
    types = dict(
        sink_db.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'replica' "
            "AND table_name = 'types'"
        )
    )
    assert types["ubi"] == "numeric" and types["ui"] == "bigint" and types["tb"] == "boolean"
    assert types["ts"] == "timestamp with time zone" and types["dtm"] == "timestamp without time zone"
    assert types["j"] == "jsonb" and types["tm"] == "interval" and types["g"] == "bytea"
    # A streaming worker stops at once on SIGTERM: the binlog reader thread, waiting on its socket, is woken.
    stopping = time.monotonic()
    assert worker.stop() == 0
    assert time.monotonic() - stopping < 5, "the worker took the binlog reader's full join timeout to stop"


# ---------------------------------------------------------------------------------------------------- snapshot, crashes


class Writer:
    """A thread of small transactions on ``acc`` (keyed) and ``nokey`` (keyless, one row per change, countable)."""

    def __init__(self, db: MySqlDatabase, first_id: int) -> None:
        self.db = db
        self.next_id = first_id
        self.seq = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        rnd = random.Random(7)
        conn = self.db.connect()
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute("BEGIN")
                    for _ in range(rnd.randint(1, 20)):
                        self.next_id += 1
                        self.seq += 1
                        cur.execute("INSERT INTO acc VALUES (%s, %s, %s)", (self.next_id, self.seq, f"w{self.seq}"))
                        cur.execute("INSERT INTO nokey VALUES (%s, %s)", (self.seq, self.seq % 5))
                    cur.execute("UPDATE acc SET v = v + 1 WHERE id = %s", (rnd.randint(1, self.next_id),))
                    cur.execute("DELETE FROM acc WHERE id = %s", (rnd.randint(1, self.next_id),))
                    cur.execute("UPDATE nokey SET g = g + 10 WHERE k = %s", (rnd.randint(1, max(1, self.seq)),))
                    cur.execute("COMMIT")
        except BaseException as exc:
            self.error = exc
        finally:
            conn.close()


def _create_acc(db: MySqlDatabase, rows: int) -> None:
    db.execute("CREATE TABLE acc (id int PRIMARY KEY, v int NOT NULL, s varchar(40))")
    db.execute("CREATE TABLE nokey (k int, g int)")
    batch = [(i, i, f"r{i}") for i in range(1, rows + 1)]
    for lo in range(0, rows, 5000):
        db.executemany("INSERT INTO acc VALUES (%s, %s, %s)", batch[lo : lo + 5000])
    db.executemany("INSERT INTO nokey VALUES (%s, %s)", [(-i, 0) for i in range(1, 101)])


def _wait_converged(db: MySqlDatabase, sink: PgDatabase, worker: WorkerProcess, timeout: float = 120) -> None:
    wait_same_rows(db, sink, "acc", worker, timeout=timeout)

    def nokey_same() -> bool:
        got = sorted(tuple(r) for r in sink.execute("SELECT k, g FROM replica.nokey"))
        want = sorted(tuple(r) for r in db.execute("SELECT k, g FROM nokey"))
        return got == want

    wait_for(nokey_same, "keyless table equal (no change lost or doubled)", timeout, worker)


def test_snapshot_under_concurrent_writes_is_consistent(
    mysql_db: MySqlDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    _create_acc(mysql_db, 20000)
    cfg = config(
        make_connector_config,
        mysql_db,
        limits={"snapshot": {"max_buffer_rows": 700}, "cdc": {"flush_interval_ms": 50}},
    )
    with Writer(mysql_db, 100000):
        worker = run_worker(cfg)
        status = worker.wait_for_status(realtime, timeout=120)
    assert status["tables"][f"{mysql_db.name}.acc"]["chunks_total"] > 10  # parallel key ranges
    _wait_converged(mysql_db, sink_db, worker)
    assert worker.stop() == 0


def test_kill_9_at_random_instants_loses_and_doubles_nothing(
    mysql_db: MySqlDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    _create_acc(mysql_db, 8000)
    cfg = config(
        make_connector_config,
        mysql_db,
        limits={"snapshot": {"max_buffer_rows": 500}, "cdc": {"flush_interval_ms": 20, "max_buffer_rows": 50}},
    )
    rnd = random.Random()
    with Writer(mysql_db, 100000):
        worker = run_worker(cfg)
        time.sleep(rnd.uniform(0.2, 1.5))  # a random instant: during the snapshot
        worker.kill()
        for _ in range(4):
            worker = run_worker(cfg)
            worker.wait_for_status(lambda s: s.get("state") in ("snapshot", "realtime"), timeout=120)
            time.sleep(rnd.uniform(0.1, 1.5))  # a random instant while streaming (or copying)
            worker.kill()
        worker = run_worker(cfg)
        worker.wait_for_status(realtime, timeout=120)
    _wait_converged(mysql_db, sink_db, worker)
    assert worker.stop() == 0


# ---------------------------------------------------------------------------------------------------- DDL


def test_ddl_while_streaming(
    mysql_db: MySqlDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    mysql_db.execute("CREATE TABLE t (id int PRIMARY KEY, a int, b varchar(10))")
    mysql_db.execute("CREATE TABLE gone (id int PRIMARY KEY)")
    mysql_db.execute("INSERT INTO t VALUES (1, 1, 'x'), (2, 2, 'y')")
    mysql_db.execute("INSERT INTO gone VALUES (1)")
    cfg = config(
        make_connector_config,
        mysql_db,
        migration_strategy={"allowed": ["Add", "Drop", "Datatype", "Nullability"]},
    )
    worker = run_worker(cfg)
    worker.wait_for_status(realtime, timeout=90)
    mysql_db.execute("ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 7")
    mysql_db.execute("INSERT INTO t VALUES (3, 3, 'z', 8)")
    wait_same_rows(mysql_db, sink_db, "t", worker)
    mysql_db.execute("ALTER TABLE t DROP COLUMN b")
    mysql_db.execute("UPDATE t SET a = a * 10")
    wait_same_rows(mysql_db, sink_db, "t", worker)
    mysql_db.execute("TRUNCATE TABLE t")
    mysql_db.execute("INSERT INTO t VALUES (5, 5, 5)")
    wait_same_rows(mysql_db, sink_db, "t", worker)
    # A dropped table stops streaming (the sink keeps its rows); a renamed table arrives under its new name.
    mysql_db.execute("DROP TABLE gone")
    mysql_db.execute("RENAME TABLE t TO t2")
    mysql_db.execute("INSERT INTO t2 VALUES (6, 6, 6)")
    mysql_db.execute("UPDATE t2 SET c = 0 WHERE id = 5")
    wait_same_rows(mysql_db, sink_db, "t2", worker)
    assert sink_db.scalar("SELECT count(*) FROM replica.gone") == 1
    assert worker.last_status() is not None and worker.returncode is None
    assert worker.stop() == 0


# ---------------------------------------------------------------------------------------------------- failures


def test_purged_binlog_stops_with_the_reinitialize_fix(
    mysql_db: MySqlDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    mysql_db.execute("CREATE TABLE p (id int PRIMARY KEY)")
    mysql_db.execute("INSERT INTO p VALUES (1)")
    cfg = config(make_connector_config, mysql_db)
    worker = run_worker(cfg)
    worker.wait_for_status(realtime, timeout=90)
    wait_same_rows(mysql_db, sink_db, "p", worker)
    assert worker.stop() == 0
    # While the connector is stopped the binlog it would resume from is purged.
    mysql_db.execute("INSERT INTO p VALUES (2)")
    resume_file = sink_db.scalar("SELECT position FROM sluice.checkpoints").split(":")[1]

    def purged() -> bool:
        # MariaDB keeps a binlog until its commits are checkpointed: flush and purge until it is gone.
        mysql_db.execute("FLUSH BINARY LOGS")
        newest = mysql_db.execute("SHOW MASTER STATUS")[0][0]
        mysql_db.execute(f"PURGE BINARY LOGS TO '{newest}'")
        return resume_file not in [r[0] for r in mysql_db.execute("SHOW BINARY LOGS")]

    wait_for(purged, f"binlog {resume_file} purged", 30)
    worker = run_worker(cfg)
    status = worker.wait_for_status(lambda s: s.get("status") == "failed", timeout=60)
    assert worker.wait(30) == 1  # a permanent failure: the worker stops instead of retrying for ever
    err = status["last_error"]
    assert "purged" in err["message"]
    assert "ReIntialize" in err["fix"]
    assert sink_db.scalar("SELECT count(*) FROM replica.p") == 1


def test_missing_privileges_are_named_with_their_grants(
    mysql_db: MySqlDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    mysql_db.execute("CREATE TABLE q (id int PRIMARY KEY)")
    user = f"u{mysql_db.name[-8:]}"
    mysql_db.create_user(user, "pw-limited", [f"SELECT ON `{mysql_db.name}`.*"])
    try:
        cfg = config(make_connector_config, mysql_db, user=user, password="pw-limited")
        worker = run_worker(cfg)
        status = worker.wait_for_status(lambda s: s.get("status") == "failed", timeout=60)
        assert worker.wait(30) == 2  # a set-up error: the spec or the source must change, retrying cannot help
        err = status["last_error"]
        assert err["error"] == "SourceNotReady"
        for grant in ("REPLICATION SLAVE", "REPLICATION CLIENT", "RELOAD"):
            assert grant in err["fix"], grant
        assert "SELECT" not in err["message"].replace("SELECT on", "")  # SELECT was granted
        # Granting what the fix says makes it work.
        mysql_db.server.execute(f"GRANT REPLICATION SLAVE, REPLICATION CLIENT, RELOAD ON *.* TO '{user}'@'%'")
        mysql_db.execute("INSERT INTO q VALUES (1)")
        worker = run_worker(cfg)
        worker.wait_for_status(realtime, timeout=90)
        mysql_db.execute("INSERT INTO q VALUES (2)")
        wait_same_rows(mysql_db, sink_db, "q", worker)
        assert worker.stop() == 0
    finally:
        mysql_db.server.execute(f"DROP USER IF EXISTS '{user}'@'%'")


# ---------------------------------------------------------------------------------------------------- TLS


@pytest.mark.parametrize("mysql_server", ["mysql8"], indirect=True)
def test_tls_modes_against_a_user_that_requires_ssl(
    mysql_db: MySqlDatabase, sink_db: PgDatabase, make_connector_config: MakeConfig, run_worker: RunWorker
) -> None:
    """MySQL 8 generates its own CA and server certificate; a user created ``REQUIRE SSL`` cannot log in without
    TLS, so a connector that streams as that user used TLS on every connection (queries, snapshot, binlog)."""
    mysql_db.execute("CREATE TABLE s (id int PRIMARY KEY, v varchar(10))")
    mysql_db.execute("INSERT INTO s VALUES (1, 'a')")
    user = f"tls{mysql_db.name[-8:]}"
    mysql_db.create_user(
        user, "pw-tls", ["REPLICATION SLAVE, REPLICATION CLIENT, RELOAD ON *.*", f"SELECT ON `{mysql_db.name}`.*"]
    )
    mysql_db.server.execute(f"ALTER USER '{user}'@'%' REQUIRE SSL")
    ca = (mysql_db.server.data_dir / "ca.pem").read_text()
    try:
        # Without TLS the server refuses the user: a credentials problem for the spec, not retried.
        plain = config(make_connector_config, mysql_db, user=user, password="pw-tls")
        worker = run_worker(plain)
        status = worker.wait_for_status(lambda s: s.get("status") == "failed", timeout=60)
        assert worker.wait(30) == 2
        assert "1045" in status["last_error"]["message"]
        for new_id, mode in ((2, {"require": {}}), (3, {"verify_ca": {"ca_file": ca}})):
            spec_path = config(make_connector_config, mysql_db, user=user, password="pw-tls")
            spec = yaml.safe_load(spec_path.read_text())
            spec["source"]["mysql"]["connection"]["ssl_mode"] = mode
            spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
            worker = run_worker(spec_path)
            worker.wait_for_status(realtime, timeout=90)
            mysql_db.execute("INSERT INTO s VALUES (%s, %s)", (new_id, "t"))
            wait_same_rows(mysql_db, sink_db, "s", worker)
            assert worker.stop() == 0
    finally:
        mysql_db.server.execute(f"DROP USER IF EXISTS '{user}'@'%'")


# ---------------------------------------------------------------------------------------------------- into Kafka


def test_mysql_into_kafka_as_debezium_events(
    mysql_db: MySqlDatabase, kafka: Any, run_worker: RunWorker, tmp_path: Path
) -> None:
    """The same source feeds the Kafka sink (Debezium envelope, exactly once): snapshot rows as ``r``, then c/u/d
    and a truncate, keyed by the primary key, ``source.connector`` mysql."""
    from tests.support.kafka import consume_all
    from tests.support.pg import write_connector_config

    mysql_db.execute("CREATE TABLE acc (id bigint unsigned PRIMARY KEY, v int NOT NULL, s varchar(20), ok tinyint(1))")
    mysql_db.executemany("INSERT INTO acc VALUES (%s, %s, %s, %s)", [(i, i, f"r{i}", i % 2) for i in range(1, 11)])
    connector_id = f"k-{mysql_db.name[-8:]}"
    spec = {
        "id": connector_id,
        "source": mysql_db.source_spec(),
        "sink": {
            "kafka": {
                "connection": {"brokers": [kafka.bootstrap], "config": {"transactions": {"enabled": True}}},
                "format": {"debezium": {}},
            }
        },
        "limits": {"cdc": {"flush_interval_ms": 50}},
    }
    worker = run_worker(write_connector_config(tmp_path / "k.yaml", spec))
    worker.wait_for_status(realtime, timeout=90)
    topic = f"{connector_id}.{mysql_db.name}.acc"
    mysql_db.execute("INSERT INTO acc VALUES (18446744073709551615, -1, 'max', 1)")
    mysql_db.execute("UPDATE acc SET v = 100 WHERE id = 3")
    mysql_db.execute("DELETE FROM acc WHERE id = 4")
    mysql_db.execute("TRUNCATE TABLE acc")

    def events() -> list[dict[str, Any]]:
        records = consume_all(kafka.bootstrap, [topic], timeout=10)
        return [json.loads(r.value)["payload"] for r in records if r.value is not None]

    got: list[dict[str, Any]] = []

    def arrived() -> bool:
        nonlocal got
        got = events()
        return len(got) >= 14  # 10 r + c + u + d + t

    wait_for(arrived, "events in Kafka", 90, worker)
    ops = [e["op"] for e in got]
    assert sorted(ops) == sorted(["r"] * 10 + ["c", "u", "d", "t"]), ops
    by_op = {e["op"]: e for e in got}
    assert by_op["c"]["after"]["s"] == "max" and by_op["c"]["after"]["ok"] is True
    assert by_op["u"]["before"]["v"] == 3 and by_op["u"]["after"]["v"] == 100
    assert by_op["d"]["before"]["id"] == 4 and by_op["d"]["after"] is None
    assert all(e["source"]["connector"] == "mysql" for e in got)
    assert all(e["source"]["table"] == "acc" for e in got if e["op"] != "t")
    assert worker.stop() == 0
