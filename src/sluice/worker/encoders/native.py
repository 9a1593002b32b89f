"""Sluice's native change events: one flat JSON object per change, rows as plain JSON objects.

Field by field:

``op``
    ``c`` insert, ``u`` update, ``d`` delete, ``r`` snapshot read, ``t`` truncate (Debezium's letters).
``table``
    ``"<schema>.<table>"`` (``<database>.<table>`` for MySQL).
``position``
    The source position of the change's transaction in the source's notation with its scheme
    (``pg:0/16B3748``); for snapshot rows the snapshot's consistent point. Ordered within one source.
``xid``
    The source transaction id (string), or null.
``ts_ms``
    The source transaction's commit time in milliseconds since the epoch (0 when the source does not say).
``key``
    The key columns (primary key or replica identity) as an object, taken from ``row`` (``before`` for deletes);
    absent for keyless tables and truncates.
``row``
    The row after the change (``c``, ``u``, ``r``); absent for ``d`` and ``t``.
``before``
    The row before the change as far as the source knows it (``u``, ``d``; PostgreSQL sends the key columns only
    unless ``REPLICA IDENTITY FULL``); absent when unknown.
``unchanged``
    Names of columns the source did not send (unchanged TOAST values): absent from ``row``, the receiver keeps what
    it has. Present only when not empty.

Values: integers and floats as JSON numbers (NaN and infinities null), decimals as strings (exact), booleans,
text, bytes as base64, dates ``YYYY-MM-DD``, times ``HH:MM:SS[.ffffff]`` (``+HH:MM`` with a zone), timestamps ISO
8601 (``...Z`` when with time zone, in UTC), intervals as ISO 8601 durations when they have a fixed length
(``P1DT2H3M4.5S``) or the source's text, UUIDs as strings, JSON columns as embedded JSON values, enums as their
label, arrays as lists, and everything else as the source's text.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sluice.worker.encoders.debezium import TxContext, dumps_bytes, epoch_micros
from sluice.worker.events import ColumnType, Op, RowChange, TableSchema, TypeKind

__all__ = ["COMPILED", "NativeEncoder", "native_value"]

Converter = Callable[[Any], Any]


def _float(value: Any) -> Any:
    f = float(value)
    return f if math.isfinite(f) else None


def _decimal(value: Any) -> Any:
    if isinstance(value, Decimal) and not value.is_finite():
        return str(value)  # 'NaN', 'Infinity'
    return str(value)


def _bytes(value: Any) -> Any:
    return base64.b64encode(bytes(value)).decode()


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)


def _interval(value: Any) -> Any:
    if not isinstance(value, timedelta):
        return str(value)
    micros = value // timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    days, rest = divmod(micros, 86_400_000_000)
    seconds, us = divmod(rest, 1_000_000)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    out = f"{sign}P{days}D" if days else f"{sign}P"
    if h or m or s or us or not days:
        frac = f".{us:06d}".rstrip("0") if us else ""
        out += f"T{h}H{m}M{s}{frac}S"
    return out


def _json(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str | bytes) else value
    except ValueError:
        return value


def _identity(value: Any) -> Any:
    return value


def _text(value: Any) -> Any:
    return value if isinstance(value, str) else str(value)


def native_value(ctype: ColumnType) -> Converter:
    """The converter of one column type's values to JSON (see the module docstring)."""
    k = ctype.kind
    if k in (TypeKind.INT, TypeKind.BOOL, TypeKind.TEXT):
        return _identity
    if k is TypeKind.FLOAT:
        return _float
    if k is TypeKind.DECIMAL:
        return _decimal
    if k is TypeKind.BYTES:
        return _bytes
    if k in (TypeKind.DATE, TypeKind.TIME, TypeKind.TIMETZ, TypeKind.TIMESTAMP, TypeKind.TIMESTAMPTZ):
        return _iso
    if k is TypeKind.INTERVAL:
        return _interval
    if k is TypeKind.JSON:
        return _json
    if k is TypeKind.ARRAY and ctype.element is not None:
        item = native_value(ctype.element)

        def convert(value: Any) -> Any:
            if not isinstance(value, list | tuple):
                return _text(value)
            return [None if v is None else (convert(v) if isinstance(v, list) else item(v)) for v in value]

        return convert
    return _text


#: per table: ((name, converter) per column, key column indexes), and the names when every converter is the identity
_Entry = tuple[tuple[tuple[tuple[str, Converter], ...], tuple[int, ...]], tuple[str, ...] | None]
#: the fields every event of one transaction, table and op share: (tx, table, op, as a dict, as JSON without its "}")
_Head = tuple[TxContext, str, str, dict[str, Any], bytes]

try:
    from sluice._eventjson import native_event  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # built without a C compiler: the dict path does it all
    native_event = None

#: the compiled event writer is in use (CI requires it: the published figures come from it)
COMPILED = native_event is not None


class NativeEncoder:
    """Encodes row changes and truncates as native events (dicts ready for ``json``)."""

    def __init__(self, *, include_before: bool = True) -> None:
        self.include_before = include_before
        self._tables: dict[TableSchema, _Entry] = {}
        self._last: tuple[TableSchema, _Entry] | None = None
        # one tuple, replaced whole: snapshot threads share the encoder
        self._heads: _Head | None = None
        #: per table with plain values: each column name as JSON with its ":", for the compiled path
        self._json_names: dict[tuple[str, ...], tuple[bytes, ...]] = {}

    def _table(self, schema: TableSchema) -> tuple[tuple[tuple[str, Converter], ...], tuple[int, ...]]:
        return self._entry(schema)[0]

    def _entry(self, schema: TableSchema) -> _Entry:
        # By identity first: hashing a TableSchema (every column type, recursively) costs more than encoding a row.
        last = self._last
        if last is not None and last[0] is schema:
            return last[1]
        entry = self._tables.get(schema)
        if entry is None:
            columns = tuple((c.name, native_value(c.type)) for c in schema.columns)
            key = tuple(schema.index(k) for k in schema.key)
            plain = tuple(n for n, _ in columns) if all(c is _identity for _, c in columns) else None
            entry = self._tables[schema] = ((columns, key), plain)
        self._last = (schema, entry)
        return entry

    @staticmethod
    def _row(
        columns: tuple[tuple[str, Converter], ...], row: tuple[Any, ...], skip: frozenset[int] = frozenset()
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, (name, convert) in enumerate(columns):
            if i in skip:
                continue
            v = row[i] if i < len(row) else None
            out[name] = None if v is None else convert(v)
        return out

    def change(self, schema: TableSchema, change: RowChange, tx: TxContext) -> dict[str, Any]:
        columns, key = self._table(schema)
        op = Op.READ.value if tx.snapshot else change.op.value
        event: dict[str, Any] = {
            "op": op,
            "table": change.table.label,
            "position": tx.position.encode() if tx.position is not None else None,
            "xid": tx.xid,
            "ts_ms": epoch_micros(tx.commit_time) // 1000,
        }
        identity = change.after if change.after is not None else change.before
        if key and identity is not None:
            event["key"] = {columns[i][0]: (None if identity[i] is None else columns[i][1](identity[i])) for i in key}
        if change.after is not None:
            event["row"] = self._row(columns, change.after, change.unchanged)
        if self.include_before and change.before is not None and change.op in (Op.UPDATE, Op.DELETE):
            event["before"] = self._row(columns, change.before)
        if change.unchanged:
            event["unchanged"] = [columns[i][0] for i in sorted(change.unchanged)]
        return event

    def _head(self, tx: TxContext, label: str, op: str) -> _Head:
        head = self._heads
        if head is None or head[0] is not tx or head[1] != label or head[2] != op:
            fields: dict[str, Any] = {
                "op": op,
                "table": label,
                "position": tx.position.encode() if tx.position is not None else None,
                "xid": tx.xid,
                "ts_ms": epoch_micros(tx.commit_time) // 1000,
            }
            head = self._heads = (tx, label, op, fields, dumps_bytes(fields)[:-1])
        return head

    def _names(self, plain: tuple[str, ...]) -> tuple[bytes, ...]:
        names = self._json_names.get(plain)
        if names is None:
            names = self._json_names[plain] = tuple(dumps_bytes(n) + b":" for n in plain)
        return names

    def change_json(self, schema: TableSchema, change: RowChange, tx: TxContext) -> bytes:
        """``dumps(change(...))`` as UTF-8, faster: the fields shared by a transaction's events of one table are made
        once, and a table whose values are all JSON already (integers, text, booleans) skips the converters, in C
        where it is built."""
        (columns, key), plain = self._entry(schema)
        op = Op.READ.value if tx.snapshot else change.op.value
        head = self._head(tx, change.table.label, op)
        after, before = change.after, change.before
        unchanged = change.unchanged
        if (
            native_event is not None
            and plain is not None
            and type(after) is tuple
            and not unchanged
            and (before is None or not self.include_before or change.op not in (Op.UPDATE, Op.DELETE))
        ):
            out = native_event(head[4], self._names(plain), key, after)
            if out is not None:
                return out  # type: ignore[no-any-return]
        event = head[3].copy()
        identity = after if after is not None else before
        if key and identity is not None:
            if plain is not None:
                event["key"] = {plain[i]: identity[i] for i in key}
            else:
                event["key"] = {
                    columns[i][0]: (None if identity[i] is None else columns[i][1](identity[i])) for i in key
                }
        if after is not None:
            if plain is not None and not unchanged and len(after) == len(plain):
                event["row"] = dict(zip(plain, after, strict=True))
            else:
                event["row"] = self._row(columns, after, unchanged)
        if self.include_before and before is not None and change.op in (Op.UPDATE, Op.DELETE):
            if plain is not None and len(before) == len(plain):
                event["before"] = dict(zip(plain, before, strict=True))
            else:
                event["before"] = self._row(columns, before)
        if unchanged:
            event["unchanged"] = [columns[i][0] for i in sorted(unchanged)]
        return dumps_bytes(event)

    def snapshot_json(self, schema: TableSchema, rows: list[tuple[Any, ...]], tx: TxContext) -> Iterator[bytes]:
        """``change_json`` of each snapshot row (``op: r``), one at a time (a batch of encoded rows would double its
        memory), in one loop: a snapshot moves millions of rows, and the per-row change object and calls were a
        third of its cost."""
        (columns, key), plain = self._entry(schema)
        if plain is None:
            table = schema.table
            for row in rows:
                yield self.change_json(schema, RowChange(Op.READ, table, None, row), tx)
            return
        head: dict[str, Any] = {
            "op": Op.READ.value,
            "table": schema.table.label,
            "position": tx.position.encode() if tx.position is not None else None,
            "xid": tx.xid,
            "ts_ms": epoch_micros(tx.commit_time) // 1000,
        }
        width = len(plain)
        if native_event is not None:
            start, names, table = dumps_bytes(head)[:-1], self._names(plain), schema.table
            for row in rows:
                out = native_event(start, names, key, row) if type(row) is tuple else None
                yield out if out is not None else self.change_json(schema, RowChange(Op.READ, table, None, row), tx)
            return
        key_names = [(plain[i], i) for i in key]
        for row in rows:
            event = head.copy()
            if key_names:
                event["key"] = {name: row[i] for name, i in key_names}
            event["row"] = dict(zip(plain, row, strict=True)) if len(row) == width else self._row(columns, row)
            yield dumps_bytes(event)

    def truncate(self, schema: TableSchema, tx: TxContext) -> dict[str, Any]:
        return {
            "op": "t",
            "table": schema.table.label,
            "position": tx.position.encode() if tx.position is not None else None,
            "xid": tx.xid,
            "ts_ms": epoch_micros(tx.commit_time) // 1000,
        }
