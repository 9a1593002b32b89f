"""pgoutput messages -> neutral events (:mod:`sluice.worker.events`), one message at a time.

The generic stream asks for protocol version 2 with ``streaming`` off, so only committed transactions arrive, each
as Begin, its messages, Commit; nothing here buffers a transaction (memory stays bounded by one message).

Per relation (pgoutput sends a Relation message before a table's first change of a session, and again after its
shape changed) :class:`EventDecoder` keeps a :class:`_Shape`: which tuple position holds each column of the table's
:class:`~sluice.worker.events.TableSchema`, and the psycopg text loader of each column's type. A Relation whose
shape differs from the table's current schema becomes a :class:`~sluice.worker.events.SchemaChange`. Changes of
tables the connector does not replicate are dropped here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.adapt import AdaptersMap, Transformer
from psycopg.pq import Format

from sluice.worker.events import (
    Begin,
    Column,
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
from sluice.worker.positions import Lsn
from sluice.worker.sources.postgres import pgoutput as po
from sluice.worker.sources.postgres.types import PgType, column_type, install_loaders

__all__ = ["COMPILED", "EventDecoder", "pg_timestamp", "py_row_change", "py_tuple_values", "row_change", "tuple_values"]

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def pg_timestamp(micros: int) -> datetime:
    """A pgoutput timestamp (microseconds since 2000-01-01 UTC) as an aware datetime."""
    return _PG_EPOCH + timedelta(microseconds=micros)


Loader = Callable[[Any], Any]


@dataclass
class _Shape:
    table: TableId
    schema: TableSchema
    #: per schema column: its position in the relation's tuples (-1: not sent) and its value loader
    positions: tuple[int, ...]
    loaders: tuple[Loader, ...]


def py_tuple_values(
    buf: bytes, pos: int, positions: tuple[int, ...], loaders: tuple[Loader, ...]
) -> tuple[tuple[Any, ...], tuple[int, ...] | None, int]:
    """The pgoutput TupleData at ``pos`` as the schema's values: ``(values, unchanged, end)``.

    ``values`` in schema column order (None for NULL, for columns the relation does not send and for unchanged
    TOAST values); ``unchanged``: the indexes of the unchanged TOAST values, or None; ``end``: the byte after the
    tuple. The reference of ``sluice._pgrows.tuple_values`` (and the fallback where it was not built).
    """
    data, end = po.read_tuple(buf, pos)
    out: list[Any] = []
    unchanged: list[int] = []
    n = len(data)
    for i, (at, load) in enumerate(zip(positions, loaders, strict=True)):
        raw = data[at] if 0 <= at < n else None
        if raw is None:
            out.append(None)
        elif raw is po.UNCHANGED:
            out.append(None)
            unchanged.append(i)
        else:
            assert isinstance(raw, bytes)
            out.append(load(raw))
    return tuple(out), (tuple(unchanged) if unchanged else None), end


def py_row_change(
    payload: bytes,
    positions: tuple[int, ...],
    loaders: tuple[Loader, ...],
    table: TableId,
    cls: type[RowChange],
    ops: tuple[Op, Op, Op],
    nothing: frozenset[int],
) -> RowChange:
    """An Insert, Update or Delete message outside a streamed block (no xid field) as a ``cls`` row change, ``ops``
    being (insert, update, delete) and ``nothing`` the empty ``unchanged``. The reference of
    ``sluice._pgrows.row_change`` (and the fallback where it was not built)."""
    if len(payload) < 6:
        raise po.PgOutputError("message truncated")
    kind, marker, pos = payload[0], payload[5], 6
    before = after = None
    unchanged: tuple[int, ...] | None = None
    if kind == _INSERT:
        if marker != _NEW:
            raise po.PgOutputError(f"insert: expected 'N', got {chr(marker)!r}")
        op = ops[0]
    elif kind == _UPDATE:
        if marker in (_KEY, _OLD):
            before, _, pos = py_tuple_values(payload, pos, positions, loaders)
            if pos >= len(payload):
                raise po.PgOutputError("message truncated")
            marker = payload[pos]
            pos += 1
        if marker != _NEW:
            raise po.PgOutputError(f"update: expected 'N', got {chr(marker)!r}")
        op = ops[1]
    elif kind == _DELETE:
        if marker not in (_KEY, _OLD):
            raise po.PgOutputError(f"delete: expected 'K' or 'O', got {chr(marker)!r}")
        before, _, pos = py_tuple_values(payload, pos, positions, loaders)
        op = ops[2]
    else:
        raise po.PgOutputError(f"not a row change: {chr(kind)!r}")
    if kind != _DELETE:
        after, unchanged, _ = py_tuple_values(payload, pos, positions, loaders)
    return cls(op, table, before, after, frozenset(unchanged) if unchanged else nothing)


tuple_values: Callable[
    [bytes, int, tuple[int, ...], tuple[Loader, ...]], tuple[tuple[Any, ...], tuple[int, ...] | None, int]
]
row_change: Callable[
    [bytes, tuple[int, ...], tuple[Loader, ...], TableId, type[RowChange], tuple[Op, Op, Op], frozenset[int]],
    RowChange,
]
MalformedTuple: type[Exception]
try:
    from sluice._pgrows import (  # type: ignore[import-not-found,no-redef,unused-ignore]
        MalformedTuple,
        row_change,
        tuple_values,
    )

    #: the compiled version is in use (CI requires it: the published figures come from it)
    COMPILED = True
except ImportError:  # built without a C compiler
    MalformedTuple, tuple_values, row_change, COMPILED = po.PgOutputError, py_tuple_values, py_row_change, False

_INSERT, _UPDATE, _DELETE = b"IUD"
_NEW, _KEY, _OLD = b"NKO"
_OID = struct.Struct("!I")
_NOTHING: frozenset[int] = frozenset()
_OPS = (Op.INSERT, Op.UPDATE, Op.DELETE)


@dataclass
class SchemaSource:
    """What the decoder needs from the source's catalog (callables, so it stays free of connections)."""

    #: the type of a column from its OID and type modifier
    describe: Callable[[int, int], PgType]
    #: {column: NOT NULL} of a table now
    not_null: Callable[[str, str], dict[str, bool]]
    #: columns the catalog excludes
    excluded: Callable[[str, str], set[str]]
    #: what rows that existed hold in columns just added (``schema_changes.existing_values``)
    existing: Callable[[TableSchema, list[Column]], dict[str, ExistingValues]] = field(default=lambda _s, _a: {})


class EventDecoder:
    """Feeds on pgoutput payloads; returns the event each one means (None for those that mean nothing here)."""

    def __init__(
        self,
        *,
        schemas: dict[tuple[str, str], TableSchema],
        types: dict[tuple[str, str], list[PgType]],
        catalog: SchemaSource,
        adapters: AdaptersMap,
        start: int = 0,
    ) -> None:
        #: the current schema of every replicated table, by (schema, name); updated by schema changes
        self.schemas = dict(schemas)
        self.catalog = catalog
        self.adapters = adapters
        self.start = start
        self._decoder = po.PgOutputDecoder()
        self._shapes: dict[int, _Shape | None] = {}
        self._skip = False
        self._xid: str | None = None
        self._counts: dict[str, int] = {}
        install_loaders(adapters, [t for ts in types.values() for t in ts])

    @property
    def in_transaction(self) -> bool:
        return self._xid is not None

    def feed(self, payload: bytes) -> Event | None:
        kind = payload[0] if payload else 0
        if kind in (_INSERT, _UPDATE, _DELETE) and not self._decoder.in_stream:
            return None if self._skip else self._row(payload)
        msg = self._decoder.decode(payload)
        if isinstance(msg, po.Begin):
            # The server skips transactions that committed before the start position; so does this, in case the
            # slot was behind the position the sink made durable.
            self._skip = msg.final_lsn < self.start
            if self._skip:
                return None
            self._xid = str(msg.xid)
            self._counts = {}
            return Begin(xid=self._xid, position=Lsn(msg.final_lsn), commit_time=pg_timestamp(msg.commit_ts))
        if isinstance(msg, po.Commit):
            if self._skip:
                self._skip = False
                return None
            xid, self._xid = self._xid, None
            return Commit(
                xid=xid,
                position=Lsn(msg.end_lsn),
                commit_time=pg_timestamp(msg.commit_ts),
                event_counts=self._counts,
            )
        if isinstance(msg, po.Relation):
            return self._relation(msg)
        if self._skip:
            return None
        if isinstance(msg, po.Truncate):
            tables = tuple(s.table for oid in msg.relation_oids if (s := self._shapes.get(oid)) is not None)
            if not tables:
                return None
            for t in tables:
                self._counts[t.label] = self._counts.get(t.label, 0) + 1
            return Truncate(tables, cascade=bool(msg.options & 1), restart_identity=bool(msg.options & 2))
        return None  # Origin, Type, logical messages

    def _row(self, payload: bytes) -> RowChange | None:
        """An Insert, Update or Delete message (outside a streamed block: no xid field) as a row change."""
        if len(payload) < 5:
            raise po.PgOutputError("message truncated")
        (oid,) = _OID.unpack_from(payload, 1)
        shape = self._shapes.get(oid)
        if shape is None:
            return None
        try:
            change = row_change(payload, shape.positions, shape.loaders, shape.table, RowChange, _OPS, _NOTHING)
        except MalformedTuple as exc:
            raise po.PgOutputError(str(exc)) from exc
        label = shape.table.label
        self._counts[label] = self._counts.get(label, 0) + 1
        return change

    def _relation(self, rel: po.Relation) -> SchemaChange | None:
        key = (rel.namespace, rel.name)
        previous = self.schemas.get(key)
        if previous is None:
            self._shapes[rel.oid] = None  # not replicated: its changes are dropped
            return None
        excluded = self.catalog.excluded(rel.namespace, rel.name)
        wanted = [c for c in rel.columns if c.name not in excluded]
        types = [self.catalog.describe(c.type_oid, c.type_modifier) for c in wanted]
        not_null = self.catalog.not_null(rel.namespace, rel.name)
        columns = tuple(
            Column(c.name, column_type(t), nullable=not not_null.get(c.name, False))
            for c, t in zip(wanted, types, strict=True)
        )
        names = {c.name for c in columns}
        if rel.replica_identity == "f":
            key_names = tuple(k for k in previous.key if k in names)  # every column is "key": keep the real one
        else:
            key_names = tuple(c.name for c in wanted if c.is_key) or tuple(k for k in previous.key if k in names)
        schema = TableSchema(previous.table, columns, key_names)
        install_loaders(self.adapters, types)
        tx = Transformer(self.adapters)
        by_name = {c.name: i for i, c in enumerate(rel.columns)}
        loaders: list[Loader] = []
        for t in types:
            loader = tx.get_loader(t.oid, Format.TEXT)
            loaders.append(loader.load)
        positions = tuple(by_name.get(c.name, -1) for c in columns)
        self._shapes[rel.oid] = _Shape(previous.table, schema, positions, tuple(loaders))
        if schema == previous:
            return None
        self.schemas[key] = schema
        before = set(previous.column_names)
        added = [c for c in columns if c.name not in before]
        existing = self.catalog.existing(schema, added) if added else {}
        return SchemaChange(schema=schema, previous=previous, existing=existing)
