"""Snapshot of a MySQL / MariaDB source: consistent with the binlog position, parallel by primary-key ranges.

Consistency: :func:`open_consistent` takes ``FLUSH TABLES WITH READ LOCK`` on one connection, starts
``START TRANSACTION WITH CONSISTENT SNAPSHOT`` on every reader connection, reads the binlog position (file,
offset and GTID state) and unlocks: writes pause only for the milliseconds those statements take (the lock waits at
most ``lock_wait_timeout`` = 60 s for running statements). Every reader then sees exactly the data committed
before the position the stream starts from, so nothing is lost or doubled between the snapshot and the stream.

Chunks: a keyed table is cut into primary-key ranges of about ``batch_rows`` rows (keyset walk: one indexed
``LIMIT 1 OFFSET n`` per boundary), the first and last ranges open-ended; smaller ones (not below
``MIN_SPLIT_ROWS``) when that leaves readers idle, so a table of 1.5 ``batch_rows`` is not read as one big range
and one half-size range on two of four readers (the server's row estimate decides); a keyless table is one
chunk. Bounds are JSON (key values tagged where JSON has no type for them), so a resumed snapshot re-reads exactly
the unfinished ranges.

Each chunk is read either as neutral rows (:meth:`MySqlSnapshot.read`, for any sink) or, for a PostgreSQL sink, as
COPY text made straight from the server's row packets (:meth:`MySqlSnapshot.read_copy`, see :mod:`.copytext`):
the same query on the same connections, so the same rows at the same consistent point.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pymysql
import pymysql.cursors

from sluice.errors import ReplicationError, SourceSetupError, TransientError
from sluice.worker.events import TableSchema
from sluice.worker.sources.base import SnapshotChunk, SnapshotSession
from sluice.worker.sources.mysql.copytext import ColumnValueError, Fallback, column_kinds, read_copy_text
from sluice.worker.sources.mysql.errors import classify, error_number
from sluice.worker.sources.mysql.positions import MySqlPosition
from sluice.worker.sources.mysql.types import ColumnInfo, Loader

_PARSE_ERROR = 1064
#: ranges are not cut smaller than this to keep readers busy (each range is one query and one sink commit)
MIN_SPLIT_ROWS = 10_000

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


def plan_table(cur: Any, database: str, schema: TableSchema, batch_rows: int, readers: int = 1) -> list[SnapshotChunk]:
    """Primary-key ranges of about ``batch_rows`` rows, or of a ``readers``-th of the table when that is smaller
    (not below :data:`MIN_SPLIT_ROWS`); one chunk for a keyless table."""
    label = schema.table.label
    if not schema.key:
        return [SnapshotChunk(label, 0, {})]
    key = schema.key
    table = f"{qi(database)}.{qi(schema.table.name)}"
    order = ", ".join(qi(k) for k in key)
    step = max(1, batch_rows)
    if readers > 1 and step > MIN_SPLIT_ROWS:
        cur.execute(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (database, schema.table.name),
        )
        row = cur.fetchone()
        estimate = int(row[0] or 0) if row else 0
        if estimate > 0:  # 0 or NULL: no statistics yet, nothing to split by
            step = min(step, max(MIN_SPLIT_ROWS, -(-estimate // readers)))
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
        infos: Callable[[str], list[ColumnInfo]] | None = None,
    ) -> None:
        self.database = database
        self._schemas = schemas
        self._loaders = loaders
        self._infos = infos
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

    def _select(self, chunk: SnapshotChunk, schema: TableSchema) -> tuple[str, list[Any]]:
        cols = ", ".join(qi(c) for c in schema.column_names)
        table = f"{qi(self.database)}.{qi(schema.table.name)}"
        where: str = "TRUE"
        params: list[Any] = []
        if schema.key and chunk.bounds:
            where, params = _where(schema.key, decode_key(chunk.bounds.get("lo")), decode_key(chunk.bounds.get("hi")))
        return f"SELECT {cols} FROM {table} WHERE {where}", params

    def read(self, chunk: SnapshotChunk, batch_rows: int) -> Iterator[list[tuple[Any, ...]]]:
        schema = self._schemas(chunk.table)
        loaders = self._loaders(chunk.table)
        query, params = self._select(chunk, schema)
        size = max(1, batch_rows)

        def rows(cur: Any) -> Iterator[list[tuple[Any, ...]]]:
            while True:
                batch = cur.fetchmany(size)
                if not batch:
                    return
                yield [tuple(load(v) for load, v in zip(loaders, row, strict=True)) for row in batch]

        yield from self._reading(chunk, query, params, rows)

    def read_copy(
        self, chunk: SnapshotChunk, keep: Sequence[bool], dump: Callable[[int, Any], bytes | None]
    ) -> Iterator[tuple[bytes, int]]:
        """The chunk's rows as PostgreSQL text COPY blocks with their row counts (:mod:`.copytext`).

        ``keep``: per schema column, whether the sink takes it (columns it lacks are left out of the lines).
        ``dump(i, value)``: the sink's text of column ``i``'s neutral value (None for NULL), for the values the
        compiled converter hands back (zero dates, long TIMEs, FLOAT...).
        """
        if self._infos is None:
            raise RuntimeError("this snapshot session cannot read COPY text (no column descriptions)")
        schema = self._schemas(chunk.table)
        loaders = self._loaders(chunk.table)
        infos = self._infos(chunk.table)
        kinds, widths = column_kinds(infos, schema.columns, keep)
        query, params = self._select(chunk, schema)

        def blocks(cur: Any) -> Iterator[tuple[bytes, int]]:
            converters = cur._result.converters  # PyMySQL's own (encoding, converter) per column, for fallbacks
            fallbacks = tuple(
                _fallback(i, converters[i], loaders[i], dump) if kind in b"dtzTf" else None
                for i, kind in enumerate(kinds)
            )
            names = [c.name for c in schema.columns]
            yield from read_copy_text(cur.connection, kinds, widths, fallbacks, names)

        yield from self._reading(chunk, query, params, blocks)

    def _reading(
        self, chunk: SnapshotChunk, query: str, params: list[Any], results: Callable[[Any], Iterator[Any]]
    ) -> Iterator[Any]:
        """``results(cursor)`` of ``query`` run unbuffered on a pooled reader (returned to the pool when read to
        the end; closed when abandoned, as its unread rows would block it)."""
        conn = self._take()
        finished = False
        try:
            cur = conn.cursor(pymysql.cursors.SSCursor)
            try:
                cur.execute(query, params)
                yield from results(cur)
                finished = True
            finally:
                if finished:
                    cur.close()
        except pymysql.err.MySQLError as exc:
            raise classify(exc, f"cannot read {chunk.table} from the source") from exc
        except ColumnValueError as exc:
            raise ReplicationError(
                f"cannot read {chunk.table} from the source: {exc}",
                fix="A value of that column cannot be converted; see the worker log for the converter's error.",
            ) from exc
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


def _fallback(
    i: int, converter: tuple[str | None, Any], load: Loader, dump: Callable[[int, Any], bytes | None]
) -> Fallback:
    """Column ``i``'s raw value as the neutral path would see it (PyMySQL's decoding and converter, then the
    column's loader), dumped by the sink."""
    encoding, convert = converter

    def fallback(raw: bytes) -> bytes | None:
        value: Any = raw.decode(encoding) if encoding is not None else raw
        if convert is not None:
            value = convert(value)
        return dump(i, load(value))

    return fallback
