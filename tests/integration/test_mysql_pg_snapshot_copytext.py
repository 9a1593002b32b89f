"""The MySQL -> PostgreSQL snapshot's COPY-text fast path writes exactly what the general flow writes.

Every MySQL type, with the values whose text differs between the two servers (zero dates in nullable and NOT NULL
columns, TIME beyond a day and negative, FLOAT, TINYINT(1) other than 0/1, escapes in text and JSON, padded BINARY
and BIT, a row above 16 MiB that the server splits into several packets), is copied once by the general flow
(``SLUICE_FASTPATH=off``) and once by the fast path, into two schemas of one sink; the sink's text of every row must
be the same. Small chunks make several chunks per table, read in parallel.

The fast path falls back to the general flow without failing (no compiled loop, an unexpected session or writer),
which would make this a comparison of the general flow with itself; so the test needs the compiled loop (fails
under ``CI``, skips locally without it) and checks the worker's log that every chunk of the fast run went as COPY
text and none of the general run did.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.worker.sources.mysql import copytext
from tests.support.mysql import MySqlDatabase
from tests.support.pg import PgDatabase, WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EDGE_TABLE = """
CREATE TABLE edge (
  id int PRIMARY KEY,
  ti tinyint, tb tinyint(1), si smallint unsigned, mi mediumint, ui int unsigned, bi bigint, ubi bigint unsigned,
  de decimal(12,3), de0 decimal(30,10), f float, db double, b1 bit(1), b9 bit(9), b64 bit(64),
  da date, dann date NOT NULL DEFAULT '2000-01-01', dtm datetime(6), dtnn datetime NOT NULL DEFAULT '2000-01-01',
  ts timestamp(3) NULL, tm time(2), y year,
  c char(3), vc varchar(20), tx longtext, l1 varchar(10) CHARACTER SET latin1,
  bn binary(3), vb varbinary(5), bl longblob,
  e enum('a','b','c d'), s set('x','y','z'), j json, g geometry
)
"""

ROWS = [
    "(1, -128, 1, 65535, -8388608, 4294967295, -9223372036854775808, 18446744073709551615, -123456789.125, "
    "0.0000000001, 1.1, 2.5e-300, b'1', b'101010101', b'1', '2024-02-29', '2024-02-29', '2024-02-29 12:34:56.789012', "
    "'2024-02-29 23:59:59', '2024-02-29 12:34:56.789', '-12:34:56.5', 2024, 'ab', 'héllo 😀', "
    "'tab\\there\\nline\\\\back\\rcr', 'café', x'0102', x'ff00', x'5c0009000a0d', 'c d', 'x,z', "
    """'{"k": [1, 2.5, "s\\\\t\\\\n", null, true], "u": "é😀"}', ST_GeomFromText('POINT(1 2)'))""",
    "(2" + ", NULL" * 14 + ", NULL, '2000-01-01', NULL, '2000-01-01 00:00:00'" + ", NULL" * 14 + ")",
    "(3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3.4028235e38, -0, b'0', b'0', b'0', '0000-00-00', '0000-00-00', "
    "'0000-00-00 00:00:00', '0000-00-00 00:00:00', NULL, '838:59:59', 0, '', '', '', '', x'', x'', x'', 'a', '', "
    "'[]', NULL)",
    "(4, 5, 5, 1, 1, 1, 1, 1, 0.001, -0.5, -1.17549435e-38, 1e308, b'1', b'1', x'ffffffffffffffff', "
    "'2024-00-15', '2024-02-00', '2024-02-29 00:00:00.000001', '2024-05-00 00:00:00', '1970-01-01 00:00:01', "
    "'-838:59:59', 1901, 'xyz', '\\\\N', '\\\\.', 'ÿ', x'00', x'00', x'00', 'b', 'x,y,z', '\"\\\\\\\\\"', NULL)",
    "(5, -1, -1, 2, 2, 2, 2, 2, 1, 1, 0.1, 0.1, b'0', b'111111111', b'0', '0001-01-01', '9999-12-31', "
    "'9999-12-31 23:59:59.999999', '1000-01-01 00:00:00', '2038-01-19 03:14:07.999', '24:00:00', 2155, 'a', "
    "'a\\tb', 'x', 'y', x'616263', x'6162636465', x'00ff', 'a', 'y', '{\"a\": {\"b\": [1e100, -0.0]}}', NULL)",
    "(6, 1, 1, 3, 3, 3, 3, 3, 2, 2, 1e-45, 5e-324, b'1', b'100000000', b'1', '2023-02-28', '2023-02-28', "
    "'2023-02-28 00:00:00.5', '2023-02-28 00:00:00', '2023-02-28 00:00:00', '00:00:00.01', 1970, 'b', 'b', 'z', 'z', "
    "x'000000', x'', REPEAT(x'5c0a', 9000000), 'b', 'x', '\"big\"', NULL)",
    "(7, 2, 2, 4, 4, 4, 4, 4, 3, 3, 2.0, 2.0, b'0', b'000000001', b'0', '2024-12-31', '2024-12-31', "
    "'2024-12-31 23:59:59', '2024-12-31 23:59:59', '2024-12-31 23:59:59', '-00:00:00.01', 0, 'c', 'c', "
    "REPEAT('ab\\t\\\\', 4500000), 'c', x'7f', x'7f', x'7f', 'c d', 'x,y', 'true', NULL)",
]


PATHS = re.compile(r"snapshot paths: copytext=(\d+) general=(\d+)")


@pytest.fixture
def speedups() -> None:
    """The compiled loop, without which the fast path is the general flow (required under ``CI``)."""
    if copytext.SPEEDUPS:
        return
    reason = "sluice._speedups (the compiled COPY-text loop) is not built: pip install -e . with a C compiler"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def big_packets(mysql_db: MySqlDatabase) -> Iterator[None]:
    """max_allowed_packet of 64 MiB for rows 6 and 7 (18 MiB: several packets), then the server's value again (the
    server is the session's, shared with the test files that run after this one)."""
    before = int(mysql_db.server.execute("SELECT @@GLOBAL.max_allowed_packet")[0][0])
    mysql_db.server.execute("SET GLOBAL max_allowed_packet = 67108864")
    try:
        yield
    finally:
        mysql_db.server.execute(f"SET GLOBAL max_allowed_packet = {before}")


def _load(db: MySqlDatabase) -> None:
    db.execute(EDGE_TABLE)
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = ''")  # zero and partial dates
            for row in ROWS:
                cur.execute("INSERT INTO edge VALUES " + row)
            cur.execute("CREATE TABLE many (id int PRIMARY KEY, v varchar(10), d date NOT NULL)")
            cur.executemany(
                "INSERT INTO many VALUES (%s, %s, %s)",
                [(n, f"v{n}", "0000-00-00" if n % 7 == 0 else "2024-01-01") for n in range(1, 1001)],
            )
    finally:
        conn.close()
    assert db.scalar("SELECT LENGTH(bl) FROM edge WHERE id = 6") == 18_000_000
    assert db.scalar("SELECT LENGTH(tx) FROM edge WHERE id = 7") == 18_000_000


def _copy(
    make: Callable[..., Path], run: Callable[..., WorkerProcess], db: MySqlDatabase, schema: str, fast: bool
) -> None:
    """Snapshot into ``schema``; every chunk must have gone as COPY text when ``fast``, none otherwise."""
    cfg = make(
        source_spec=db.source_spec(),
        target_schema=schema,
        limits={"snapshot": {"max_buffer_rows": 3}, "cdc": {"flush_interval_ms": 50}},
    )
    worker = run(cfg, env={"SLUICE_FASTPATH": "on" if fast else "off"})
    status = worker.wait_for_status(lambda s: s.get("state") == "realtime", timeout=180)
    assert status["tables"][f"{db.name}.many"]["chunks_total"] > 100
    chunks = sum(t["chunks_total"] for t in status["tables"].values())
    assert worker.stop() == 0
    paths = [(int(m[1]), int(m[2])) for m in PATHS.finditer(worker.stderr_file.read_text(errors="replace"))]
    if fast:
        assert paths == [(chunks, 0)], f"every chunk as COPY text\n{worker.output_tail()}"
    else:
        assert paths == [], "SLUICE_FASTPATH=off runs the general flow, which does not count paths"


def _dump(sink: PgDatabase, schema: str, table: str) -> tuple[list[Any], list[Any]]:
    types = sink.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    )
    # md5 of each column's text: the 18 MiB values stay out of assertion messages
    rows = sink.execute(f"SELECT id, md5(t::text), t::text FROM {schema}.{table} t ORDER BY id")
    return types, [(r[0], r[1], r[2] if len(r[2]) < 2000 else len(r[2])) for r in rows]


@pytest.mark.usefixtures("speedups", "big_packets")
def test_fast_path_snapshot_equals_the_general_flow(
    mysql_db: MySqlDatabase,
    sink_db: PgDatabase,
    make_connector_config: Callable[..., Path],
    run_worker: Callable[..., WorkerProcess],
) -> None:
    _load(mysql_db)
    _copy(make_connector_config, run_worker, mysql_db, "neutral", fast=False)
    _copy(make_connector_config, run_worker, mysql_db, "fast", fast=True)
    for table in ("edge", "many"):
        neutral, fast = _dump(sink_db, "neutral", table), _dump(sink_db, "fast", table)
        assert fast[0] == neutral[0], table
        assert len(fast[1]) == len(neutral[1]) == (7 if table == "edge" else 1000)
        for got, want in zip(fast[1], neutral[1], strict=True):
            assert got == want, f"{table} row {want[0]}"
