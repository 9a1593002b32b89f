"""Snapshot of a MySQL / MariaDB source: consistent with the binlog position, parallel by primary-key ranges.

Consistency: :func:`open_consistent` takes ``FLUSH TABLES WITH READ LOCK`` on one connection, starts
``START TRANSACTION WITH CONSISTENT SNAPSHOT`` on every reader connection, reads the binlog position (file,
offset and GTID state) and unlocks: writes pause only for the milliseconds those statements take (the lock waits at
most ``lock_wait_timeout`` = 60 s for running statements). Every reader then sees exactly the data committed
before the position the stream starts from, so nothing is lost or doubled between the snapshot and the stream.

Chunks: a keyed table is cut into primary-key ranges of about ``batch_rows`` rows (keyset walk: one indexed
``LIMIT 1 OFFSET n`` per boundary), the first and last ranges open-ended; a keyless table is one chunk. Bounds are
JSON (key values tagged where JSON has no type for them), so a resumed snapshot re-reads exactly the unfinished
ranges.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pymysql
import pymysql.cursors

from sluice.errors import SourceSetupError, TransientError
from sluice.worker.events import TableSchema
from sluice.worker.sources.base import SnapshotChunk, SnapshotSession
from sluice.worker.sources.mysql.errors import classify, error_number
from sluice.worker.sources.mysql.positions import MySqlPosition
from sluice.worker.sources.mysql.types import Loader

_PARSE_ERROR = 1064

__all__ = ["MySqlSnapshot", "decode_key", "encode_key", "plan_table", "qi", "read_position"]


def qi(name: str) -> str:
    """A MySQL identifier, quoted."""
    return "`" + name.replace("`", "``") + "`"


def encode_key(values: tuple[Any, ...] | None) -> list[Any] | None:
    if values is None:
        return None
    out: list[Any] = []
    for v in values:
        if v is None or isinstance(v, int | str | float):
            out.append(v)
        elif isinstance(v, bytes | bytearray):
            out.append({"$b": bytes(v).hex()})
        elif isinstance(v, Decimal | datetime | date | time | timedelta):
            out.append({"$t": str(v)})
        else:
            out.append({"$t": str(v)})
    return out


def decode_key(values: list[Any] | None) -> tuple[Any, ...] | None:
    if values is None:
        return None
    out: list[Any] = []
    for v in values:
        if isinstance(v, dict) and "$b" in v:
            out.append(bytes.fromhex(v["$b"]))
        elif isinstance(v, dict) and "$t" in v:
            out.append(v["$t"])
        else:
            out.append(v)
    return tuple(out)


def read_position(cur: Any, *, mariadb: bool) -> MySqlPosition:
    """The binlog position now (call under the global read lock for a consistent one)."""
    try:
        cur.execute("SHOW MASTER STATUS")
    except pymysql.err.ProgrammingError as exc:
        if error_number(exc) != _PARSE_ERROR:
            raise
        cur.execute("SHOW BINARY LOG STATUS")  # MySQL 8.4 removed SHOW MASTER STATUS
    row = cur.fetchone()
    if row is None:
        raise SourceSetupError(
            "the source has no binary log (SHOW MASTER STATUS is empty)",
            fix="Start the server with log_bin and binlog_format=ROW.",
        )
    file, pos = str(row[0]), int(row[1])
    if mariadb:
        cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        gtid = cur.fetchone()
        return MySqlPosition(file, pos, mariadb_gtid=str(gtid[0] or "") if gtid else "")
    cur.execute("SELECT @@global.gtid_mode")
    mode = cur.fetchone()
    if mode is not None and str(mode[0]).upper() == "ON":
        executed = str(row[4] if len(row) > 4 else "").replace("\n", "")
        return MySqlPosition(file, pos, gtid_set=executed)
    return MySqlPosition(file, pos)


def _where(key: tuple[str, ...], lo: tuple[Any, ...] | None, hi: tuple[Any, ...] | None) -> tuple[str, list[Any]]:
    cols = "(" + ", ".join(qi(k) for k in key) + ")"
    marks = "(" + ", ".join(["%s"] * len(key)) + ")"
    parts: list[str] = []
    params: list[Any] = []
    if lo is not None:
        parts.append(f"{cols} > {marks}")
        params += list(lo)
    if hi is not None:
        parts.append(f"{cols} <= {marks}")
        params += list(hi)
    return (" AND ".join(parts) or "TRUE"), params


def plan_table(cur: Any, database: str, schema: TableSchema, batch_rows: int) -> list[SnapshotChunk]:
    """Primary-key ranges of about ``batch_rows`` rows (one chunk for a keyless table)."""
    label = schema.table.label
    if not schema.key:
        return [SnapshotChunk(label, 0, {})]
    key = schema.key
    table = f"{qi(database)}.{qi(schema.table.name)}"
    order = ", ".join(qi(k) for k in key)
    step = max(1, batch_rows)
    bounds: list[tuple[Any, ...]] = []
    last: tuple[Any, ...] | None = None
    while True:
        where, params = _where(key, last, None)
        cur.execute(f"SELECT {order} FROM {table} WHERE {where} ORDER BY {order} LIMIT 1 OFFSET {step - 1}", params)
        row = cur.fetchone()
        if row is None:
            break
        last = tuple(row)
        bounds.append(last)
    chunks: list[SnapshotChunk] = []
    lo: tuple[Any, ...] | None = None
    for i, hi in enumerate([*bounds, None]):
        chunks.append(SnapshotChunk(label, i, {"lo": encode_key(lo), "hi": encode_key(hi)}))
        lo = hi
    return chunks


class MySqlSnapshot(SnapshotSession):
    """Reads chunks on a pool of reader connections (each in the same consistent snapshot, when there is one)."""

    def __init__(
        self,
        *,
        database: str,
        schemas: Callable[[str], TableSchema],
        loaders: Callable[[str], list[Loader]],
        connect: Callable[[], Any],
        readers: list[Any],
        position: MySqlPosition | None,
    ) -> None:
        self.database = database
        self._schemas = schemas
        self._loaders = loaders
        self._connect = connect
        self.position = position
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._all = list(readers)
        self._lock = threading.Lock()
        self._consistent = bool(readers)
        for conn in readers:
            self._pool.put(conn)

    def _take(self) -> Any:
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = self._pool.get() if self._consistent else self._connect()
            if not self._consistent:
                with self._lock:
                    self._all.append(conn)
                return conn
        if conn is None:
            self._pool.put(None)
            raise TransientError("a snapshot reader connection was lost; the snapshot is read again")
        return conn

    def read(self, chunk: SnapshotChunk, batch_rows: int) -> Iterator[list[tuple[Any, ...]]]:
        schema = self._schemas(chunk.table)
        loaders = self._loaders(chunk.table)
        cols = ", ".join(qi(c) for c in schema.column_names)
        table = f"{qi(self.database)}.{qi(schema.table.name)}"
        where: str = "TRUE"
        params: list[Any] = []
        if schema.key and chunk.bounds:
            where, params = _where(schema.key, decode_key(chunk.bounds.get("lo")), decode_key(chunk.bounds.get("hi")))
        conn = self._take()
        finished = False
        try:
            cur = conn.cursor(pymysql.cursors.SSCursor)
            try:
                cur.execute(f"SELECT {cols} FROM {table} WHERE {where}", params)
                size = max(1, batch_rows)
                while True:
                    rows = cur.fetchmany(size)
                    if not rows:
                        break
                    yield [tuple(load(v) for load, v in zip(loaders, row, strict=True)) for row in rows]
                finished = True
            finally:
                if finished:
                    cur.close()
        except pymysql.err.MySQLError as exc:
            raise classify(exc, f"cannot read {chunk.table} from the source") from exc
        finally:
            if finished:
                self._pool.put(conn)
            else:
                # Abandoned mid-result (stop or failure): the connection cannot be reused.
                with contextlib.suppress(Exception):
                    conn.close()
                if self._consistent:
                    self._pool.put(None)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
