"""Debezium's change event envelope, as Kafka Connect's ``JsonConverter`` writes it.

A consumer written for Debezium's PostgreSQL connector reads these events unchanged. Every event is a
:class:`Record`: a key and a value, each a Connect *schema* plus a *payload*. :meth:`DebeziumEncoder.json` writes
one part the way ``JsonConverter`` does: with ``schemas.enable=true`` ``{"schema": {...}, "payload": {...}}``,
with ``schemas.enable=false`` the payload alone; a null part (a tombstone's value, a keyless table's key) is JSON
``null`` either way.

Value of a row change (``<prefix>.<schema>.<table>.Envelope``, version 2, fields in this order), field by field:

``before``
    The row before the change (struct ``<prefix>.<schema>.<table>.Value``), for ``u`` and ``d`` — as much as the
    source knows: PostgreSQL sends the key columns only unless the table has ``REPLICA IDENTITY FULL``; the other
    fields are then null, except NOT NULL columns, which hold Connect's default for their type (0, 0.0, false,
    ``""``) as Debezium fills them. Null for ``c``/``r``/``t``, and always null with ``include_before=False``.
``after``
    The row after the change, for ``c``/``u``/``r``; null for ``d``/``t``. A column the source did not send (an
    unchanged TOAST value) holds Debezium's placeholder ``__debezium_unavailable_value`` (:data:`UNAVAILABLE_VALUE`;
    its bytes for a ``bytes`` column, a one-element list for an array of strings, null for other types).
``source``
    Struct ``io.debezium.connector.postgresql.Source`` (version 1): ``version`` (``sluice-<version>``),
    ``connector`` (the source kind as Debezium names it: ``postgresql``, ``mysql``), ``name`` (the prefix, by
    default the connector id), ``ts_ms`` (the commit time of the source transaction), ``snapshot`` (``"true"`` for
    snapshot rows, ``"false"`` otherwise), ``db``, ``sequence`` (null), ``ts_us``/``ts_ns``, ``schema``, ``table``,
    ``txId`` (the source transaction id when it is a number), ``lsn`` (the position's LSN as a number for a
    PostgreSQL position, else null), ``xmin``, ``origin``, ``origin_lsn`` (null).
``transaction``
    With ``emit_tx_metadata``: struct ``event.block`` ``{id, total_order, data_collection_order}``: ``id`` is
    ``<txId>:<lsn>`` as Debezium's PostgreSQL connector writes it (the position's text when it is no LSN),
    ``total_order`` the event's 1-based place in its transaction, ``data_collection_order`` its 1-based place among
    the transaction's events of the same table. Null otherwise, and for snapshot rows.
``op``
    ``c`` insert, ``u`` update, ``d`` delete, ``r`` snapshot read, ``t`` truncate.
``ts_ms`` / ``ts_us`` / ``ts_ns``
    When the event was encoded (the caller passes it, so encoding is pure).

Key (``<prefix>.<schema>.<table>.Key``): a struct of the key columns (the primary key or replica identity), taken
from ``after`` (``before`` for deletes). A keyless table's events have a null key. A truncate has a null key.

Tombstones: :meth:`DebeziumEncoder.tombstone` gives, for a delete's record, the record Debezium sends after it
with ``tombstones.on.delete``: the same key and a null value (log compaction then drops the key).

Transaction metadata (:meth:`DebeziumEncoder.begin` / :meth:`DebeziumEncoder.end`, ``<prefix>.transaction``):
value ``io.debezium.connector.common.TransactionMetadataValue`` ``{status BEGIN|END, id, event_count,
data_collections [{data_collection "<schema>.<table>", event_count}], ts_ms}`` (the counts on END only), key
``io.debezium.connector.common.TransactionMetadataKey`` ``{id}``.

Column types, as Debezium's PostgreSQL connector emits them with its defaults (``decimal.handling.mode=precise``,
``time.precision.mode=adaptive`` for the default precision 6, ``binary.handling.mode=bytes``):

============== =============================================== =============================================
logical kind   Connect schema                                  JSON payload
============== =============================================== =============================================
int            ``int16`` (≤16 bits), ``int32``, ``int64``          number
decimal(p,s)   ``bytes`` ``org.apache.kafka.connect.data.Decimal`` base64 of the unscaled two's complement value
               (parameters ``scale``, ``connect.decimal.precision``)
decimal        struct ``io.debezium.data.VariableScaleDecimal``    ``{"scale": s, "value": base64}``
float          ``float`` / ``double`` (Connect's JSON names for      number (NaN and infinities: null)
               FLOAT32 / FLOAT64)
bool           ``boolean``                                     true/false
text           ``string``                                      string
bytes          ``bytes``                                       base64
date           ``int32`` ``io.debezium.time.Date``                days since 1970-01-01
time           ``int64`` ``io.debezium.time.MicroTime``           microseconds since midnight
timetz         ``string`` ``io.debezium.time.ZonedTime``          ``HH:MM:SS[.ffffff]Z`` in UTC
timestamp      ``int64`` ``io.debezium.time.MicroTimestamp``      microseconds since the epoch
timestamptz    ``string`` ``io.debezium.time.ZonedTimestamp``     ISO 8601 in UTC, six fraction digits, ``Z``
interval       ``int64`` ``io.debezium.time.MicroDuration``       microseconds (a month = 30.4375 days)
uuid           ``string`` ``io.debezium.data.Uuid``               string
json           ``string`` ``io.debezium.data.Json``               the JSON text
enum           ``string`` ``io.debezium.data.Enum`` (``allowed``)  the label
array          ``array`` of the element's schema                 list
native         ``string``                                      the source's text
============== =============================================== =============================================

Columns of a MySQL or MariaDB source take Debezium's MySQL connector's forms where they differ (YEAR, BIT(n),
DATETIME, TIMESTAMP, TIME, SET, spatial types, MEDIUMINT UNSIGNED): see :mod:`.debezium_mysql`.

PostgreSQL's ``infinity`` timestamps become Debezium's sentinels (``9223372036825200000`` /
``-9223372036832400000`` microseconds; ``infinity``/``-infinity`` for ``ZonedTimestamp``); ``infinity`` dates null.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from sluice import __version__
from sluice.worker.encoders.debezium_mysql import mysql_column_schema
from sluice.worker.events import Column, ColumnType, Op, RowChange, TableId, TableSchema, TypeKind
from sluice.worker.positions import Lsn, Position

__all__ = [
    "UNAVAILABLE_VALUE",
    "DebeziumEncoder",
    "Record",
    "TxContext",
    "connector_name",
    "decimal_bytes",
    "dumps",
    "dumps_bytes",
    "epoch_micros",
    "format_zoned_timestamp",
    "interval_micros",
]

#: What Debezium writes for a value the source did not send (an unchanged TOAST column).
UNAVAILABLE_VALUE = "__debezium_unavailable_value"
_UNAVAILABLE_B64 = base64.b64encode(UNAVAILABLE_VALUE.encode()).decode()

#: Debezium's PostgreSQL ``infinity`` / ``-infinity`` timestamps, in microseconds.
POSITIVE_INFINITY_MICROS = 9223372036825200000
NEGATIVE_INFINITY_MICROS = -9223372036832400000

_EPOCH_DATE = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_DAYS_PER_MONTH = 365.25 / 12.0
_MICROS_PER_DAY = 86_400_000_000

_DEBEZIUM_CONNECTOR = {"postgres": "postgresql", "mysql": "mysql", "sqlserver": "sqlserver", "oracle": "oracle"}

Schema = dict[str, Any]
Converter = Callable[[Any], Any]


def _plain(value: Any) -> Any:
    """What msgspec does not encode itself: subclasses of int, str and float (a loader's or a driver's own types)
    as their base value, as the standard library wrote them; anything else is refused, naming its type."""
    for base in (int, str, float):
        if isinstance(value, base):
            return base(value)
    raise TypeError(f"cannot write a {type(value).__qualname__} as JSON")


def dumps_bytes(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes, as Kafka Connect writes it (no spaces, non-ASCII kept).

    msgspec does it about ten times faster than the standard library's encoder (whose per-call set-up outweighs a
    small event): on the CDC path that was a third of the worker's time. The text is the standard library's except
    for the float notation (``1e16`` for ``1e+16``, ``0.00001`` for ``1e-05``: the same numbers). Not orjson, which
    is as fast but keeps a 4 KiB buffer behind every result: a snapshot batch of encoded rows took gigabytes.
    """
    return msgspec.json.encode(value, enc_hook=_plain)


def dumps(value: Any) -> str:
    """:func:`dumps_bytes` as text."""
    return dumps_bytes(value).decode()


def connector_name(source_kind: str) -> str:
    """Debezium's ``source.connector`` for a Sluice source kind (``postgres`` -> ``postgresql``)."""
    return _DEBEZIUM_CONNECTOR.get(source_kind, source_kind)


@dataclass(frozen=True)
class TxContext:
    """The source transaction an event belongs to (or the snapshot: ``snapshot=True``, ``position`` = its point).

    ``position`` is the transaction's position as :class:`~sluice.worker.events.Begin` gives it (where its commit
    starts in the log), or its :class:`~sluice.worker.events.Commit` position when the source has no other.
    """

    xid: str | None
    position: Position | None
    commit_time: datetime | None = None
    snapshot: bool = False

    @property
    def id(self) -> str:
        """Debezium's transaction id: ``<txId>:<lsn>`` (the LSN as a number; other positions as their text)."""
        pos = self.position
        where = str(pos.value) if isinstance(pos, Lsn) else (pos.encode() if pos is not None else "")
        return f"{self.xid or ''}:{where}"


@dataclass(frozen=True)
class Record:
    """One message: key and value, each a Connect schema and a payload (None = null, e.g. a tombstone's value)."""

    key_schema: Schema | None
    key: Any
    value_schema: Schema | None
    value: Any
    #: the table the record belongs to; None for transaction metadata
    table: TableId | None = None
    op: str | None = None


# --------------------------------------------------------------------------------------------------- values


def decimal_bytes(unscaled: int) -> bytes:
    """Java's ``BigInteger.toByteArray()``: minimal big-endian two's complement."""
    length = ((unscaled if unscaled >= 0 else ~unscaled).bit_length() + 8) // 8
    return unscaled.to_bytes(length, "big", signed=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _fixed_decimal(scale: int) -> Converter:
    quantum = Decimal(1).scaleb(-scale)

    def convert(value: Any) -> Any:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
        if not d.is_finite():
            return None
        unscaled = int(d.quantize(quantum).scaleb(scale))
        return _b64(decimal_bytes(unscaled))

    return convert


def _variable_decimal(value: Any) -> Any:
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if not d.is_finite():
        return None
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    scale = -exponent
    if scale < 0:
        unscaled *= 10**-scale
        scale = 0
    return {"scale": scale, "value": _b64(decimal_bytes(unscaled))}


def _float(value: Any) -> Any:
    f = float(value)
    return f if math.isfinite(f) else None


def _bytes(value: Any) -> Any:
    return _b64(bytes(value))


def _date(value: Any) -> Any:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return (value - _EPOCH_DATE).days
    return None  # 'infinity' / '-infinity'


def _time_micros(value: time) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _time(value: Any) -> Any:
    if isinstance(value, time):
        return _time_micros(value)
    if isinstance(value, timedelta):  # a source may give 24:00:00 as a duration
        return value // timedelta(microseconds=1)
    return None


def _fraction(micros: int) -> str:
    return f".{micros:06d}".rstrip("0") if micros else ""


def _timetz(value: Any) -> Any:
    if not isinstance(value, time):
        return None
    offset = value.utcoffset() or timedelta(0)
    micros = (_time_micros(value) - offset // timedelta(microseconds=1)) % _MICROS_PER_DAY
    seconds, us = divmod(micros, 1_000_000)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{_fraction(us)}Z"


def _timestamp(value: Any) -> Any:
    if isinstance(value, datetime):
        naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
        return (naive - _EPOCH) // timedelta(microseconds=1)
    if isinstance(value, str):
        if value.strip() == "infinity":
            return POSITIVE_INFINITY_MICROS
        if value.strip() == "-infinity":
            return NEGATIVE_INFINITY_MICROS
    return None


def format_zoned_timestamp(value: datetime) -> str:
    """``2024-01-02T03:04:05.120000Z``: UTC with six fraction digits, as Debezium 3 writes a ``ZonedTimestamp`` of
    PostgreSQL's default precision."""
    utc = value.astimezone(UTC) if value.tzinfo is not None else value
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
        f".{utc.microsecond:06d}Z"
    )


def _timestamptz(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_zoned_timestamp(value)
    if isinstance(value, str) and value.strip() in ("infinity", "-infinity"):
        return value.strip()
    return None


_INTERVAL_PART = re.compile(r"([+-]?\d+)\s+(years?|mons?|days?)")
_INTERVAL_TIME = re.compile(r"([+-])?(\d+):(\d+):(\d+(?:\.\d+)?)")


def interval_micros(value: Any) -> int | None:
    """A ``timedelta``, or PostgreSQL's ``IntervalStyle=postgres`` text (``1 year 2 mons 3 days 04:05:06.5``), as
    Debezium's ``MicroDuration``: a month counts 365.25/12 days."""
    if isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    if not isinstance(value, str):
        return None
    years = months = days = 0
    for number, unit in _INTERVAL_PART.findall(value):
        n = int(number)
        if unit.startswith("year"):
            years += n
        elif unit.startswith("mon"):
            months += n
        else:
            days += n
    micros = 0.0
    m = _INTERVAL_TIME.search(value)
    if m:
        sign = -1 if m.group(1) == "-" else 1
        micros = sign * ((int(m.group(2)) * 60 + int(m.group(3))) * 60 + float(m.group(4))) * 1_000_000
    total_days = (years * 12 + months) * _DAYS_PER_MONTH + days
    return round(total_days * _MICROS_PER_DAY + micros)


def _identity(value: Any) -> Any:
    return value


def _text(value: Any) -> Any:
    return value if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------------------------------- schemas


def _schema(type_: str, optional: bool, name: str | None = None, **extra: Any) -> Schema:
    """A Connect schema in ``JsonConverter``'s key order: type, [fields|items], optional, name, version, ..."""
    out: Schema = {"type": type_}
    for k in ("fields", "items"):
        if k in extra:
            out[k] = extra.pop(k)
    out["optional"] = optional
    if name is not None:
        out["name"] = name
    for k in ("version", "doc", "parameters", "default"):
        if k in extra:
            out[k] = extra.pop(k)
    return out


def _field(schema: Schema, name: str) -> Schema:
    return {**schema, "field": name}


def column_schema(ctype: ColumnType, optional: bool) -> tuple[Schema, Converter]:
    """The Connect schema of a column type (without ``field``) and the converter of its values to JSON payload."""
    if ctype.dialect == "mysql":
        special = mysql_column_schema(ctype, optional, _schema, _field, _identity)
        if special is not None:
            return special
    k = ctype.kind
    if k is TypeKind.INT:
        bits = ctype.bits or 64
        if ctype.unsigned:
            bits = min(64, bits * 2)
        name = "int16" if bits <= 16 else "int32" if bits <= 32 else "int64"
        return _schema(name, optional), _identity
    if k is TypeKind.DECIMAL:
        if ctype.scale is not None:
            params = {"scale": str(ctype.scale)}
            if ctype.precision is not None:
                params["connect.decimal.precision"] = str(ctype.precision)
            schema = _schema("bytes", optional, "org.apache.kafka.connect.data.Decimal", version=1, parameters=params)
            return schema, _fixed_decimal(ctype.scale)
        fields = [_field(_schema("int32", False), "scale"), _field(_schema("bytes", False), "value")]
        schema = _schema(
            "struct",
            optional,
            "io.debezium.data.VariableScaleDecimal",
            fields=fields,
            version=1,
            doc="Variable scaled decimal",
        )
        return schema, _variable_decimal
    if k is TypeKind.FLOAT:
        return _schema("float" if ctype.bits == 32 else "double", optional), _float
    if k is TypeKind.BOOL:
        return _schema("boolean", optional), _identity
    if k is TypeKind.TEXT:
        return _schema("string", optional), _identity
    if k is TypeKind.BYTES:
        return _schema("bytes", optional), _bytes
    if k is TypeKind.DATE:
        return _schema("int32", optional, "io.debezium.time.Date", version=1), _date
    if k is TypeKind.TIME:
        return _schema("int64", optional, "io.debezium.time.MicroTime", version=1), _time
    if k is TypeKind.TIMETZ:
        return _schema("string", optional, "io.debezium.time.ZonedTime", version=1), _timetz
    if k is TypeKind.TIMESTAMP:
        return _schema("int64", optional, "io.debezium.time.MicroTimestamp", version=1), _timestamp
    if k is TypeKind.TIMESTAMPTZ:
        return _schema("string", optional, "io.debezium.time.ZonedTimestamp", version=1), _timestamptz
    if k is TypeKind.INTERVAL:
        return _schema("int64", optional, "io.debezium.time.MicroDuration", version=1), interval_micros
    if k is TypeKind.UUID:
        return _schema("string", optional, "io.debezium.data.Uuid", version=1), _text
    if k is TypeKind.JSON:
        return _schema("string", optional, "io.debezium.data.Json", version=1), _text
    if k is TypeKind.ENUM:
        params = {"allowed": ",".join(ctype.enum_values)}
        return _schema("string", optional, "io.debezium.data.Enum", version=1, parameters=params), _text
    if k is TypeKind.ARRAY and ctype.element is not None:
        item_schema, item = column_schema(ctype.element, True)

        def convert(value: Any) -> Any:
            if not isinstance(value, list | tuple):
                return None
            return [None if v is None else (convert(v) if isinstance(v, list) else item(v)) for v in value]

        return _schema("array", optional, items=item_schema), convert
    return _schema("string", optional), _text


def _unavailable(schema: Schema) -> Any:
    """Debezium's placeholder for a value the source did not send, in the column's schema type."""
    t = schema["type"]
    if t == "string":
        return UNAVAILABLE_VALUE
    if t == "bytes" and "name" not in schema:
        return _UNAVAILABLE_B64
    if t == "array" and schema["items"]["type"] == "string":
        return [UNAVAILABLE_VALUE]
    return None


#: Connect's default value per schema type, as Debezium fills a NOT NULL column it has no value for
_CONNECT_DEFAULTS: dict[str, Any] = {
    "int8": 0,
    "int16": 0,
    "int32": 0,
    "int64": 0,
    "float": 0.0,
    "double": 0.0,
    "boolean": False,
    "string": "",
    "bytes": "",
}


@dataclass(frozen=True)
class _Table:
    """Everything per table that does not change from row to row (built once per table shape)."""

    key_schema: Schema | None
    value_schema: Schema
    envelope: Schema
    columns: tuple[tuple[str, Converter, Any], ...]  # (name, converter, unavailable placeholder)
    key_index: tuple[tuple[str, int, Converter], ...]
    names: tuple[str, ...] = ()
    #: every converter is the identity: a row is ``dict(zip(names, row))``
    plain: bool = False
    #: per column: Connect's default for a NOT NULL column missing from a key-only ``before`` (None: nullable)
    defaults: tuple[Any, ...] = ()


# --------------------------------------------------------------------------------------------------- encoder


class DebeziumEncoder:
    """Encodes :mod:`~sluice.worker.events` as Debezium records (see the module docstring, field by field).

    ``prefix`` is Debezium's ``topic.prefix`` (schema names ``<prefix>.<schema>.<table>.Value``, ``source.name``);
    the connector id when omitted. ``schemas_enable`` is ``JsonConverter``'s option of the same name.
    """

    def __init__(
        self,
        *,
        connector: str,
        source_kind: str = "postgres",
        database: str = "",
        prefix: str | None = None,
        include_before: bool = True,
        emit_tx_metadata: bool = False,
        schemas_enable: bool = True,
        version: str = __version__,
    ) -> None:
        self.connector = connector
        self.source_kind = source_kind
        self.database = database
        self.prefix = prefix or connector
        self.include_before = include_before
        self.emit_tx_metadata = emit_tx_metadata
        self.schemas_enable = schemas_enable
        self.version = f"sluice-{version}"
        self._tables: dict[TableSchema, _Table] = {}
        self._last: tuple[TableSchema, _Table] | None = None
        self._schema_text: dict[int, str] = {}
        # (tx, table, the source block's JSON): one tuple replaced whole, since snapshot threads share the encoder
        self._sources: tuple[TxContext, TableId, str] | None = None
        self.source_schema = self._source_schema()

    # -- schemas -------------------------------------------------------------------------------------------

    def _source_schema(self) -> Schema:
        opt_str, opt_i64 = _schema("string", True), _schema("int64", True)
        snapshot = _schema(
            "string",
            True,
            "io.debezium.data.Enum",
            version=1,
            parameters={
                "allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"
            },
            default="false",
        )
        fields = [
            _field(_schema("string", False), "version"),
            _field(_schema("string", False), "connector"),
            _field(_schema("string", False), "name"),
            _field(_schema("int64", False), "ts_ms"),
            _field(snapshot, "snapshot"),
            _field(_schema("string", False), "db"),
            _field(opt_str, "sequence"),
            _field(opt_i64, "ts_us"),
            _field(opt_i64, "ts_ns"),
            _field(_schema("string", False), "schema"),
            _field(_schema("string", False), "table"),
            _field(opt_i64, "txId"),
            _field(opt_i64, "lsn"),
            _field(opt_i64, "xmin"),
            _field(opt_str, "origin"),
            _field(opt_i64, "origin_lsn"),
        ]
        kind = connector_name(self.source_kind)
        return _schema("struct", False, f"io.debezium.connector.{kind}.Source", fields=fields, version=1)

    def _table(self, schema: TableSchema) -> _Table:
        # By identity first: hashing a TableSchema (every column type, recursively) costs more than encoding a row.
        last = self._last
        if last is not None and last[0] is schema:
            return last[1]
        cached = self._tables.get(schema)
        if cached is not None:
            self._last = (schema, cached)
            return cached
        base = f"{self.prefix}.{schema.table.namespace}.{schema.table.name}"
        fields: list[Schema] = []
        columns: list[tuple[str, Converter, Any]] = []
        by_name: dict[str, tuple[Column, Converter]] = {}
        for col in schema.columns:
            col_schema, convert = column_schema(col.type, col.nullable)
            fields.append(_field(col_schema, col.name))
            columns.append((col.name, convert, _unavailable(col_schema)))
            by_name[col.name] = (col, convert)
        value_schema = _schema("struct", True, f"{base}.Value", fields=fields)
        key_schema: Schema | None = None
        key_index: list[tuple[str, int, Converter]] = []
        if schema.key:
            key_fields = []
            for name in schema.key:
                col, convert = by_name[name]
                key_fields.append(_field(column_schema(col.type, False)[0], name))
                key_index.append((name, schema.index(name), convert))
            key_schema = _schema("struct", False, f"{base}.Key", fields=key_fields)
        block = _schema(
            "struct",
            True,
            "event.block",
            fields=[
                _field(_schema("string", False), "id"),
                _field(_schema("int64", False), "total_order"),
                _field(_schema("int64", False), "data_collection_order"),
            ],
            version=1,
        )
        opt_i64 = _schema("int64", True)
        envelope = _schema(
            "struct",
            False,
            f"{base}.Envelope",
            fields=[
                _field(value_schema, "before"),
                _field(value_schema, "after"),
                _field(self.source_schema, "source"),
                _field(block, "transaction"),
                _field(_schema("string", False), "op"),
                _field(opt_i64, "ts_ms"),
                _field(opt_i64, "ts_us"),
                _field(opt_i64, "ts_ns"),
            ],
            version=2,
        )
        names = tuple(c[0] for c in columns)
        plain = all(c[1] is _identity for c in columns)
        defaults = tuple(None if f["optional"] or "name" in f else _CONNECT_DEFAULTS.get(f["type"]) for f in fields)
        table = _Table(key_schema, value_schema, envelope, tuple(columns), tuple(key_index), names, plain, defaults)
        self._tables[schema] = table
        self._last = (schema, table)
        return table

    def key_schema(self, schema: TableSchema) -> Schema | None:
        return self._table(schema).key_schema

    def value_schema(self, schema: TableSchema) -> Schema:
        return self._table(schema).envelope

    # -- payloads ------------------------------------------------------------------------------------------

    def _before(self, table: _Table, row: tuple[Any, ...]) -> dict[str, Any]:
        """``before``: NOT NULL columns the source did not send (a key-only replica identity) get Connect defaults."""
        out = self._row(table, row)
        if any(d is not None for d in table.defaults):
            for name, default in zip(table.names, table.defaults, strict=True):
                if default is not None and out.get(name) is None:
                    out[name] = default
        return out

    def _row(self, table: _Table, row: tuple[Any, ...], unchanged: frozenset[int] = frozenset()) -> dict[str, Any]:
        if table.plain and not unchanged and len(row) == len(table.names):
            return dict(zip(table.names, row, strict=True))
        out: dict[str, Any] = {}
        for i, (name, convert, placeholder) in enumerate(table.columns):
            if i in unchanged:
                out[name] = placeholder
                continue
            v = row[i] if i < len(row) else None
            out[name] = None if v is None else convert(v)
        return out

    def _source(self, table: TableId, tx: TxContext) -> dict[str, Any]:
        ts_us = epoch_micros(tx.commit_time)
        pos = tx.position
        xid = tx.xid
        return {
            "version": self.version,
            "connector": connector_name(self.source_kind),
            "name": self.prefix,
            "ts_ms": ts_us // 1000,
            "snapshot": "true" if tx.snapshot else "false",
            "db": self.database,
            "sequence": None,
            "ts_us": ts_us,
            "ts_ns": ts_us * 1000,
            "schema": table.namespace,
            "table": table.name,
            "txId": int(xid) if xid is not None and xid.isdigit() else None,
            "lsn": pos.value if isinstance(pos, Lsn) else None,
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        }

    def _block(self, tx: TxContext, total_order: int, collection_order: int) -> dict[str, Any] | None:
        if not self.emit_tx_metadata or tx.snapshot:
            return None
        return {"id": tx.id, "total_order": total_order, "data_collection_order": collection_order}

    def change(
        self,
        schema: TableSchema,
        change: RowChange,
        tx: TxContext,
        *,
        ts_us: int,
        total_order: int = 1,
        collection_order: int = 1,
    ) -> Record:
        """The record of one row change (``op`` ``r`` when ``tx.snapshot``); ``ts_us`` is the encoding time."""
        table = self._table(schema)
        op = Op.READ.value if tx.snapshot else change.op.value
        after = None if change.after is None else self._row(table, change.after, change.unchanged)
        before = None
        if self.include_before and change.before is not None and change.op in (Op.UPDATE, Op.DELETE):
            before = self._before(table, change.before)
        value = {
            "before": before,
            "after": after,
            "source": self._source(change.table, tx),
            "transaction": self._block(tx, total_order, collection_order),
            "op": op,
            "ts_ms": ts_us // 1000,
            "ts_us": ts_us,
            "ts_ns": ts_us * 1000,
        }
        key = None
        if table.key_schema is not None:
            row = change.after if change.after is not None else change.before
            if row is not None:
                key = {name: (None if row[i] is None else conv(row[i])) for name, i, conv in table.key_index}
        return Record(table.key_schema if key is not None else None, key, table.envelope, value, change.table, op)

    def change_json(
        self,
        schema: TableSchema,
        change: RowChange,
        tx: TxContext,
        *,
        ts_us: int,
        total_order: int = 1,
        collection_order: int = 1,
    ) -> str:
        """``value_json(change(...))``, faster: the ``source`` block's text is made once per transaction and table."""
        table = self._table(schema)
        op = Op.READ.value if tx.snapshot else change.op.value
        after = None if change.after is None else self._row(table, change.after, change.unchanged)
        before = None
        if self.include_before and change.before is not None and change.op in (Op.UPDATE, Op.DELETE):
            before = self._before(table, change.before)
        source = self._sources
        if source is None or source[0] is not tx or source[1] != change.table:
            source = self._sources = (tx, change.table, dumps(self._source(change.table, tx)))
        block = self._block(tx, total_order, collection_order)
        payload = (
            f'{{"before":{dumps(before)},"after":{dumps(after)},"source":{source[2]},'
            f'"transaction":{dumps(block)},"op":"{op}","ts_ms":{ts_us // 1000},"ts_us":{ts_us},"ts_ns":{ts_us * 1000}}}'
        )
        if not self.schemas_enable:
            return payload
        return '{"schema":' + self._text_of(table.envelope) + ',"payload":' + payload + "}"

    def _text_of(self, schema: Schema) -> str:
        text = self._schema_text.get(id(schema))
        if text is None:
            text = self._schema_text[id(schema)] = dumps(schema)
        return text

    def truncate(
        self,
        schema: TableSchema,
        tx: TxContext,
        *,
        ts_us: int,
        total_order: int = 1,
        collection_order: int = 1,
    ) -> Record:
        """A truncate of one table (``op`` ``t``, null key, null before/after)."""
        table = self._table(schema)
        value = {
            "before": None,
            "after": None,
            "source": self._source(schema.table, tx),
            "transaction": self._block(tx, total_order, collection_order),
            "op": "t",
            "ts_ms": ts_us // 1000,
            "ts_us": ts_us,
            "ts_ns": ts_us * 1000,
        }
        return Record(None, None, table.envelope, value, schema.table, "t")

    def tombstone(self, record: Record) -> Record | None:
        """The tombstone that follows a delete's record (same key, null value); None when there is nothing to
        compact (not a delete, or a keyless table)."""
        if record.op != Op.DELETE.value or record.key is None:
            return None
        return Record(record.key_schema, record.key, None, None, record.table, None)

    # -- transaction metadata ------------------------------------------------------------------------------

    _TX_KEY = _schema(
        "struct",
        False,
        "io.debezium.connector.common.TransactionMetadataKey",
        fields=[_field(_schema("string", False), "id")],
    )
    _TX_VALUE = _schema(
        "struct",
        False,
        "io.debezium.connector.common.TransactionMetadataValue",
        fields=[
            _field(_schema("string", False), "status"),
            _field(_schema("string", False), "id"),
            _field(_schema("int64", True), "event_count"),
            _field(
                _schema(
                    "array",
                    True,
                    items=_schema(
                        "struct",
                        False,
                        "event.collection",
                        fields=[
                            _field(_schema("string", False), "data_collection"),
                            _field(_schema("int64", False), "event_count"),
                        ],
                        version=1,
                    ),
                ),
                "data_collections",
            ),
            _field(_schema("int64", False), "ts_ms"),
        ],
    )

    def begin(self, tx: TxContext) -> Record:
        """``BEGIN`` of a transaction (``ts_ms`` its commit time)."""
        value = {"status": "BEGIN", "id": tx.id, "event_count": None, "data_collections": None, "ts_ms": _ms(tx)}
        return Record(self._TX_KEY, {"id": tx.id}, self._TX_VALUE, value)

    def end(self, tx: TxContext, counts: Mapping[str, int]) -> Record:
        """``END`` of a transaction with its events per table (``"<schema>.<table>"`` -> count)."""
        value = {
            "status": "END",
            "id": tx.id,
            "event_count": sum(counts.values()),
            "data_collections": [{"data_collection": t, "event_count": n} for t, n in counts.items()],
            "ts_ms": _ms(tx),
        }
        return Record(self._TX_KEY, {"id": tx.id}, self._TX_VALUE, value)

    # -- JsonConverter -------------------------------------------------------------------------------------

    def converted(self, schema: Schema | None, payload: Any) -> Any:
        """One part of a record as ``JsonConverter`` writes it (a Python value ready for ``json``)."""
        if payload is None and schema is None:
            return None
        if not self.schemas_enable:
            return payload
        return {"schema": schema, "payload": payload}

    def json(self, schema: Schema | None, payload: Any) -> str:
        """:meth:`converted` as JSON text; the schema's text is made once per schema."""
        if payload is None and schema is None:
            return "null"
        if not self.schemas_enable:
            return dumps(payload)
        assert schema is not None
        text = self._schema_text.get(id(schema))
        if text is None:
            text = self._schema_text[id(schema)] = dumps(schema)
        return '{"schema":' + text + ',"payload":' + dumps(payload) + "}"

    def value_json(self, record: Record) -> str:
        return self.json(record.value_schema, record.value)

    def key_json(self, record: Record) -> str:
        return self.json(record.key_schema, record.key)


def epoch_micros(moment: datetime | None) -> int:
    """Microseconds since the epoch of an aware (or UTC naive) datetime; 0 for None."""
    if moment is None:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH_UTC) // timedelta(microseconds=1)


def _ms(tx: TxContext) -> int:
    return epoch_micros(tx.commit_time) // 1000
