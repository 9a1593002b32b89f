"""The MySQL source against real MariaDB 10.11 and MySQL 8.0 servers, into real PostgreSQL, through the worker.

Each test runs on both servers (``mysql_server`` is parametrized ``mariadb`` / ``mysql8``) with a fresh MySQL
database and a fresh PostgreSQL sink database, and runs ``sluice worker`` as a subprocess, as the operator does.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

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
    assert worker.stop() == 0
