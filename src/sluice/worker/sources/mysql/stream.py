"""The binlog as neutral events: one reader thread, a bounded queue, transactions event by event.

A thread reads the binlog with ``mysql-replication`` (``COM_BINLOG_DUMP_GTID`` from a GTID set on MySQL, MariaDB's
GTID dump from ``domain-server-seq``, or ``COM_BINLOG_DUMP`` from file+offset) and turns each event into neutral
events in a queue of at most :data:`QUEUE_EVENTS` lists (one binlog event's worth each), which
:meth:`BinlogStream.poll` hands to the engine one by one. A transaction of any size passes row by row; nothing holds
it whole.

Mapping: rows events of selected tables -> ``RowChange`` (the first one opens the ``Begin``); ``XID`` or a
``COMMIT`` query -> ``Commit`` at the position after it (binlog file, offset, GTID state with this transaction's
GTID added); ``TRUNCATE`` -> ``Truncate``; ``ALTER``/``CREATE``/``RENAME``/``DROP TABLE`` -> ``SchemaChange``
with the table as ``information_schema`` describes it now (a dropped table stops streaming; the sink keeps its
rows; a table renamed into the selection arrives with its current rows, as upserts). Transactions without
changes of selected tables produce nothing, except that the position moves on: every :data:`IDLE_COMMIT_S` seconds
an empty ``Begin``/``Commit`` carries it, so a restart does not re-read long stretches of other databases' log.

Rows events are not read by the library's per-value reader: :mod:`.rowdecode` decodes each event's rows, applies the
column loaders (:mod:`.types`) and builds the ``RowChange`` events in one compiled loop, with the library's reader
left for tables with a column type it does not decode.

The library reconnects by itself after a lost connection, from its start position: that would replay events
already handed out, so a second stream connection is refused and the failure goes to the engine, which resumes
from the sink's checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import GtidEvent, MariadbGtidEvent, QueryEvent, RotateEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, TableMapEvent, UpdateRowsEvent, WriteRowsEvent

from sluice.errors import TransientError
from sluice.worker.events import (
    Begin,
    Commit,
    Event,
    ExistingValues,
    Op,
    RowChange,
    SchemaChange,
    TableId,
    TableSchema,
    Truncate,
)
from sluice.worker.positions import Position
from sluice.worker.sources.base import ChangeStream, Lag
from sluice.worker.sources.mysql.errors import classify
from sluice.worker.sources.mysql.positions import MySqlPosition, add_gtid, mariadb_state_add
from sluice.worker.sources.mysql.rowdecode import decode_rows, loader_is_identity, table_specs
from sluice.worker.sources.mysql.types import Loader

__all__ = ["IDLE_COMMIT_S", "QUEUE_EVENTS", "BinlogStream", "parse_ddl"]

log = logging.getLogger(__name__)

QUEUE_EVENTS = 50  # lists of at most _BATCH events each: at most 10,000 events waiting
_BATCH = 200
IDLE_COMMIT_S = 5.0
_NOTHING: frozenset[int] = frozenset()


def _read_bool_list(self: Any, read_byte_length: int, signedness_flag: bool) -> list[bool]:
    """``TableMapEvent._read_bool_list`` that tolerates a shorter bitmap than the library expects.

    MySQL 8.0.15 leaves YEAR out of the signedness bitmap, the library counts it: reading past the end raised
    IndexError. Missing bits read as "signed"; the loaders (``types.loader_for``) re-apply the schema's signedness
    to every integer anyway.
    """
    data = self.packet.read(read_byte_length)
    out: list[bool] = []
    bit = 0
    for i in range(self.column_count):
        if signedness_flag and not self._is_numeric_column(self.columns[i].type):
            continue
        idx = bit // 8
        byte = data[idx] if idx < len(data) else 0
        out.append((byte & (0x80 >> (bit % 8))) != 0)
        bit += 1
    return out


TableMapEvent._read_bool_list = _read_bool_list

_COMMENTS = re.compile(r"/\*.*?\*/|--[^\n]*\n|#[^\n]*\n", re.S)
_NAME = r"(?:`((?:[^`]|``)+)`|([\w$]+))"
_QNAME = rf"(?:{_NAME}\s*\.\s*)?{_NAME}"
_TRUNCATE = re.compile(rf"^TRUNCATE\s+(?:TABLE\s+)?{_QNAME}", re.I)
_ALTER = re.compile(rf"^ALTER\s+(?:ONLINE\s+|IGNORE\s+)*TABLE\s+(?:IF\s+EXISTS\s+)?{_QNAME}", re.I)
_ALTER_RENAME = re.compile(rf"\bRENAME\s+(?:TO\s+|AS\s+)?{_QNAME}\s*$", re.I)
_CREATE = re.compile(rf"^CREATE\s+(?:OR\s+REPLACE\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_QNAME}", re.I)
_RENAME = re.compile(r"^RENAME\s+TABLES?\s+(.*)$", re.I | re.S)
_DROP = re.compile(r"^DROP\s+TABLES?\s+(?:IF\s+EXISTS\s+)?(.*)$", re.I | re.S)
_PAIR = re.compile(rf"{_QNAME}\s+TO\s+{_QNAME}", re.I)
_ONE = re.compile(_QNAME)


def _name(m: re.Match[str], first: int, default: str) -> tuple[str, str]:
    db = m.group(first) or m.group(first + 1)
    name = m.group(first + 2) or m.group(first + 3)
    if name is None:  # only one part: it matched as the name
        return default, (db or "").replace("``", "`")
    return (db.replace("``", "`") if db else default), name.replace("``", "`")


@dataclass(frozen=True)
class Ddl:
    """What a statement does to tables: ``kind`` truncate / alter / create / rename / drop."""

    kind: str
    tables: tuple[tuple[str, str], ...]  # (database, table); for rename: old, new, old, new ...


def parse_ddl(query: str, default_db: str) -> Ddl | None:
    """The table statement ``query`` is, or None (DML, other DDL, BEGIN, COMMIT...)."""
    text = _COMMENTS.sub(" ", query + "\n").strip()
    if m := _TRUNCATE.match(text):
        return Ddl("truncate", (_name(m, 1, default_db),))
    if m := _ALTER.match(text):
        table = _name(m, 1, default_db)
        if r := _ALTER_RENAME.search(text):
            return Ddl("rename", (table, _name(r, 1, table[0])))
        return Ddl("alter", (table,))
    if m := _CREATE.match(text):
        return Ddl("create", (_name(m, 1, default_db),))
    if m := _RENAME.match(text):
        pairs: list[tuple[str, str]] = []
        for p in _PAIR.finditer(m.group(1)):
            pairs += [_name(p, 1, default_db), _name(p, 5, default_db)]
        return Ddl("rename", tuple(pairs))
    if m := _DROP.match(text):
        names = [_name(n, 1, default_db) for n in _ONE.finditer(m.group(1)) if (n.group(0) or "").strip()]
        names = [n for n in names if n[1].upper() not in ("CASCADE", "RESTRICT")]
        return Ddl("drop", tuple(names))
    return None


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class BinlogStream(ChangeStream):
    """Events of the selected tables from ``start`` (see the module docstring)."""

    def __init__(
        self,
        *,
        settings: dict[str, Any],
        server_id: int,
        database: str,
        mariadb: bool,
        start: MySqlPosition,
        schemas: dict[str, TableSchema],
        loaders: Callable[[str], list[Loader]],
        refresh: Callable[[str, str], TableSchema | None],
        lag_bytes: Callable[[MySqlPosition], int | None],
        current_rows: Callable[[str], Iterator[tuple[Any, ...]]],
        existing: Callable[[TableSchema, list[str]], dict[str, ExistingValues]],
    ) -> None:
        self.settings = settings
        self.server_id = server_id
        self.database = database
        self.mariadb = mariadb
        self.start = start
        self.schemas = dict(schemas)  # label -> schema; the stream's own view, changed by DDL
        self._loaders = loaders
        self._refresh = refresh
        self._lag_bytes = lag_bytes
        self._current_rows = current_rows
        self._existing = existing
        self._copy_later: list[str] = []
        #: lists of events (one binlog event's worth: a thread hand-off per row would cost more than the row)
        self.queue: queue.Queue[list[Event] | _Failure] = queue.Queue(maxsize=QUEUE_EVENTS)
        self._ready: deque[Event] = deque()
        self._pending: list[Event] = []
        self._closed = threading.Event()
        self._reader: BinLogStreamReader | None = None
        self._stream_connections = 0
        # the reader thread's state
        self.file = start.file
        self.gtid_set = start.gtid_set
        self.mariadb_gtid = start.mariadb_gtid
        self._pending_gtid: str | None = None
        self._began = False
        self._last_emit = time.monotonic()
        self.emitted: MySqlPosition = start
        self.acked: MySqlPosition = start
        self._thread = threading.Thread(target=self._run, name="binlog-reader", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ engine side

    def poll(self, timeout: float) -> Event | None:
        if not self._ready:
            try:
                got = self.queue.get(timeout=max(timeout, 0.0)) if timeout > 0 else self.queue.get_nowait()
            except queue.Empty:
                return None
            if isinstance(got, _Failure):
                self.queue.put_nowait(got)  # every later poll fails the same way
                raise got.error
            self._ready.extend(got)
            if not self._ready:
                return None
        item = self._ready.popleft()
        if isinstance(item, Commit):
            assert isinstance(item.position, MySqlPosition)
            self.emitted = item.position
        return item

    def ack(self, position: Position) -> None:
        # MySQL keeps binlogs by time, not for readers: nothing to release. Remembered for lag().
        if isinstance(position, MySqlPosition) and self.acked < position:
            self.acked = position

    def lag(self) -> Lag:
        return Lag(bytes=self._lag_bytes(self.emitted))

    def close(self) -> None:
        self._closed.set()
        reader = self._reader
        if reader is not None:
            # The reader thread waits in recv() on the dump connection: closing the socket from here would not wake
            # it (it used to hold a SIGTERM for the full join timeout); shutting it down does, at once.
            sock = getattr(getattr(reader, "_stream_connection", None), "_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                reader.close()
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ reader thread

    def _connect(self, **kwargs: Any) -> Any:
        if "cursorclass" not in kwargs:  # the dump connection (the schema connection has a DictCursor)
            self._stream_connections += 1
            if self._stream_connections > 1:
                raise TransientError(
                    "the binlog connection was lost; the stream resumes from the sink's checkpoint",
                    fix="Check the network to the MySQL server if this repeats.",
                )
        return pymysql.connect(**kwargs)

    def _put(self, item: Event) -> None:
        """Queue ``item`` with the rest of its binlog event's events (:meth:`_flush` hands them over)."""
        self._pending.append(item)
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> bool:
        if not self._pending:
            return True
        batch, self._pending = self._pending, []
        return self._hand_over(batch)

    def _hand_over(self, item: list[Event] | _Failure) -> bool:
        while not self._closed.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        start = self.start
        kwargs: dict[str, Any] = {}
        if self.mariadb:
            kwargs = {"is_mariadb": True, "auto_position": start.mariadb_gtid or None}
            if not start.mariadb_gtid:
                kwargs.update(log_file=start.file, log_pos=start.pos, resume_stream=True)
        elif start.gtid_set:
            kwargs = {"auto_position": start.gtid_set}
        else:
            kwargs = {"log_file": start.file, "log_pos": start.pos, "resume_stream": True}
        try:
            reader = BinLogStreamReader(
                connection_settings=dict(self.settings),
                server_id=self.server_id,
                blocking=True,
                only_events=[
                    GtidEvent,
                    MariadbGtidEvent,
                    QueryEvent,
                    XidEvent,
                    RotateEvent,
                    WriteRowsEvent,
                    UpdateRowsEvent,
                    DeleteRowsEvent,
                ],
                only_schemas=[self.database],
                pymysql_wrapper=self._connect,
                enable_logging=False,
                slave_heartbeat=5,
                **kwargs,
            )
            self._reader = reader
            if self._closed.is_set():
                return
            for event in reader:
                if self._closed.is_set():
                    return
                self._handle(event)
                self._flush()
        except BaseException as exc:
            if self._closed.is_set():
                return
            err = classify(exc, "reading the binlog failed") if isinstance(exc, pymysql.err.MySQLError) else exc
            self._flush()
            self._hand_over(_Failure(err))

    def _position(self, log_pos: int) -> MySqlPosition:
        if self._pending_gtid is not None:
            if self.mariadb:
                self.mariadb_gtid = mariadb_state_add(self.mariadb_gtid or "", self._pending_gtid)
            elif self.gtid_set is not None:
                self.gtid_set = add_gtid(self.gtid_set, self._pending_gtid)
            self._pending_gtid = None
        return MySqlPosition(self.file, log_pos, self.gtid_set, self.mariadb_gtid)

    @staticmethod
    def _time(event: Any) -> datetime | None:
        ts = getattr(event, "timestamp", 0)
        return datetime.fromtimestamp(ts, UTC) if ts else None

    def _begin(self, event: Any) -> None:
        if not self._began:
            self._began = True
            self._put(Begin(None, None, self._time(event)))

    def _commit(self, event: Any, xid: str | None) -> None:
        position = self._position(int(event.packet.log_pos))
        if self._began:
            self._began = False
            self._put(Commit(xid, position, self._time(event)))
            self._last_emit = time.monotonic()
        elif time.monotonic() - self._last_emit >= IDLE_COMMIT_S:
            # Nothing of ours in a while: carry the position forward with an empty transaction.
            self._put(Begin(None, None, self._time(event)))
            self._put(Commit(xid, position, self._time(event)))
            self._last_emit = time.monotonic()

    def _handle(self, event: Any) -> None:
        if isinstance(event, RotateEvent):
            self.file = str(event.next_binlog)
            return
        if isinstance(event, GtidEvent | MariadbGtidEvent):
            self._pending_gtid = str(event.gtid)
            return
        if isinstance(event, XidEvent):
            self._commit(event, str(event.xid))
            return
        if isinstance(event, QueryEvent):
            self._query(event)
            return
        if isinstance(event, WriteRowsEvent | UpdateRowsEvent | DeleteRowsEvent):
            self._rows(event)

    def _rows(self, event: Any) -> None:
        if event.schema != self.database:
            return
        label = f"{event.schema}.{event.table}"
        schema = self.schemas.get(label)
        if schema is None:
            return
        loaders = self._loaders(label)
        names = schema.column_names
        table = schema.table
        tmap = event.table_map.get(event.table_id)
        plan = self._plan(tmap, schema, loaders) if tmap is not None else None
        if plan is not None and plan[1] is not None:
            # Decoded, loaded and made row changes in one go.
            if isinstance(event, WriteRowsEvent):
                change = (RowChange, Op.INSERT, table, _NOTHING, 0)
            elif isinstance(event, UpdateRowsEvent):
                change = (RowChange, Op.UPDATE, table, _NOTHING, 2)
            else:
                change = (RowChange, Op.DELETE, table, _NOTHING, 1)
            changes = decode_rows(event, plan[1], change)
            if changes is not None:
                self._begin(event)
                self._pending.extend(changes)
                if len(self._pending) >= _BATCH:
                    self._flush()
                return
        elif plan is not None:
            # Decoded here, loaded per row: the table map's columns are not the schema's.
            decoded = decode_rows(event)
            if decoded is not None:
                self._begin(event)
                self._decoded(event, decoded, plan, loaders, table)
                return
        # None from decode_rows: an event the library must read itself (nothing of it was consumed)

        def row_of(values: dict[str, Any]) -> tuple[Any, ...]:
            return tuple(load(values.get(n)) for load, n in zip(loaders, names, strict=True))

        self._begin(event)
        if isinstance(event, WriteRowsEvent):
            for row in event.rows:
                self._put(RowChange(Op.INSERT, table, None, row_of(row["values"])))
        elif isinstance(event, UpdateRowsEvent):
            for row in event.rows:
                self._put(RowChange(Op.UPDATE, table, row_of(row["before_values"]), row_of(row["after_values"])))
        else:
            for row in event.rows:
                self._put(RowChange(Op.DELETE, table, row_of(row["values"]), None))

    @staticmethod
    def _plan(tmap: Any, schema: TableSchema, loaders: list[Loader]) -> tuple[list[int], tuple[Any, ...] | None]:
        """For the rows of table map ``tmap``: where each schema column is in its images (-1: not there), and, when
        they are the same columns in the same order, the loaders for the decoder to apply (None where a loader would
        return the decoded value as it is). Kept on the table map (a new one comes with every transaction)."""
        names = schema.column_names
        cached = getattr(tmap, "_sluice_plan", None)
        if cached is not None and cached[0] is loaders and cached[1] == names:
            return cached[2]  # type: ignore[no-any-return]
        where = {c.name: i for i, c in enumerate(tmap.columns)}
        positions = [where.get(n, -1) for n in names]
        fused: tuple[Any, ...] | None = None
        specs = table_specs(tmap)
        if specs is not None and positions == list(range(len(tmap.columns))):
            fused = tuple(
                None if loader_is_identity(spec, column) else load
                for spec, column, load in zip(specs, schema.columns, loaders, strict=True)
            )
        plan = (positions, fused)
        tmap._sluice_plan = (loaders, names, plan)
        return plan

    def _decoded(
        self,
        event: Any,
        images: list[tuple[Any, ...]],
        plan: tuple[list[int], tuple[Any, ...] | None],
        loaders: list[Loader],
        table: TableId,
    ) -> None:
        """The events of rows decoded by :mod:`.rowdecode` as tuples in the table map's column order, still to load
        (a table map whose columns differ from the schema's: a column added or dropped since)."""
        positions = plan[0]

        def row_of(values: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(load(values[i] if i >= 0 else None) for load, i in zip(loaders, positions, strict=True))

        put = self._put
        if isinstance(event, WriteRowsEvent):
            for row in images:
                put(RowChange(Op.INSERT, table, None, row_of(row)))
        elif isinstance(event, UpdateRowsEvent):
            for k in range(0, len(images), 2):
                put(RowChange(Op.UPDATE, table, row_of(images[k]), row_of(images[k + 1])))
        else:
            for row in images:
                put(RowChange(Op.DELETE, table, row_of(row), None))

    def _query(self, event: Any) -> None:
        query = event.query if isinstance(event.query, str) else bytes(event.query).decode("utf-8", "replace")
        word = query.strip().upper()
        if word == "BEGIN":
            return
        if word == "COMMIT":
            self._commit(event, None)
            return
        default_db = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema or "")
        ddl = parse_ddl(query, default_db)
        changes: list[Event] = []
        if ddl is not None:
            changes = self._ddl(ddl)
        if changes:
            self._began = False
            self._put(Begin(None, None, self._time(event)))
            for change in changes:
                self._put(change)
            for label in self._copy_later:
                # A table renamed into the selection brings its rows: copied as they are now (upserts; the binlog
                # events after this point are applied on top, so a keyed table converges to the source).
                table = self.schemas[label].table
                for row in self._current_rows(label):
                    self._put(RowChange(Op.INSERT, table, None, row))
            self._copy_later.clear()
            self._began = True
        self._commit(event, None)

    def _ddl(self, ddl: Ddl) -> list[Event]:
        ours = [(db, name) for db, name in ddl.tables if db == self.database]
        if not ours:
            return []
        out: list[Event] = []
        if ddl.kind == "truncate":
            tables = tuple(TableId(db, name) for db, name in ours if f"{db}.{name}" in self.schemas)
            return [Truncate(tables)] if tables else []
        if ddl.kind == "drop":
            for db, name in ours:
                if self.schemas.pop(f"{db}.{name}", None) is not None:
                    log.warning("table %s.%s was dropped at the source: it is no longer streamed", db, name)
            return []
        if ddl.kind == "rename":
            pairs = list(zip(ddl.tables[::2], ddl.tables[1::2], strict=True))
            for (odb, old), (ndb, new) in pairs:
                if self.schemas.pop(f"{odb}.{old}", None) is not None:
                    log.warning("table %s.%s was renamed to %s.%s at the source", odb, old, ndb, new)
                if ndb == self.database:
                    added = self._schema_of(ndb, new)
                    out += added
                    if added:
                        self._copy_later.append(f"{ndb}.{new}")
            return out
        for db, name in ours:  # alter / create
            out += self._schema_of(db, name)
        return out

    def _schema_of(self, db: str, name: str) -> list[Event]:
        label = f"{db}.{name}"
        previous = self.schemas.get(label)
        schema = self._refresh(db, name)
        if schema is None:  # not selected, or gone again by now
            return []
        self.schemas[label] = schema
        if previous is not None and previous == schema:
            return []
        added = [c.name for c in schema.columns if previous is not None and c.name not in previous.column_names]
        return [SchemaChange(schema, previous, self._existing(schema, added) if added else {})]
