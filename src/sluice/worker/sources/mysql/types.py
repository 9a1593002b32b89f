"""MySQL / MariaDB column types as neutral :class:`~sluice.worker.events.ColumnType` values, and value loaders.

One loader per column turns what the snapshot (PyMySQL's text protocol) and the binlog (``mysql-replication``'s row
decoder) hand over into the one neutral value, so a row copied and the same row streamed are equal:

================================ ============== ======================================= ==========================
MySQL type                       logical kind   value                                   PostgreSQL sink
================================ ============== ======================================= ==========================
TINYINT/SMALLINT/MEDIUMINT/INT   ``int``        ``int`` (bits 8/16/32/32/64, unsigned)   smallint/integer/bigint;
/BIGINT [UNSIGNED]                                                                      BIGINT UNSIGNED numeric(20)
TINYINT(1)                       ``bool``       ``bool`` (any non-zero is true) when     boolean
                                                ``infer_tinyint1_as_boolean``, else int
DECIMAL(p,s)                     ``decimal``    ``Decimal``                              numeric(p,s)
FLOAT / DOUBLE                   ``float``      ``float`` (FLOAT as its shortest         real / double precision
                                                32-bit decimal form)
BIT(1) / BIT(n>1)                ``bool`` /     ``bool`` / ``bytes`` (big-endian,        boolean / bytea
                                 ``bytes``      ceil(n/8) bytes; Debezium's ``Bits``
                                                are little-endian: its encoder turns
                                                them round)
DATE                             ``date``       ``date``                                 date
DATETIME(fsp)                    ``timestamp``  naive ``datetime`` (microseconds)        timestamp
TIMESTAMP(fsp)                   ``timestamptz`` aware ``datetime`` in UTC               timestamptz
TIME(fsp)                        ``interval``   ``timedelta`` (MySQL's TIME is a         interval
                                                duration: -838:59:59 to 838:59:59)
YEAR                             ``int``        ``int`` (16 bits)                        smallint
CHAR(n)/VARCHAR(n)               ``text``       ``str`` (any charset, decoded)           varchar(n)
TINYTEXT..LONGTEXT               ``text``       ``str``                                  text
BINARY(n)                        ``bytes``      ``bytes``, zero-padded to n              bytea
VARBINARY/TINYBLOB..LONGBLOB     ``bytes``      ``bytes``                                bytea
ENUM(...)                        ``enum``       ``str``                                  text
SET(...)                         ``text``       ``str``: members comma-separated in      text
                                                definition order (``a,c``), as MySQL
JSON (MySQL), LONGTEXT with      ``json``       ``str``: JSON text (MySQL's binary JSON  jsonb
``json_valid`` check (MariaDB)                  from the binlog is rendered as text)
GEOMETRY, POINT, ... (spatial)   ``bytes``      ``bytes``: MySQL's internal form (4-byte bytea
                                                little-endian SRID, then WKB)
================================ ============== ======================================= ==========================

Zero dates (``0000-00-00``, ``0000-00-00 00:00:00``, and dates with a zero month or day) are not dates: they become
NULL in a nullable column and ``1970-01-01`` (00:00:00) in a NOT NULL one, as Debezium's MySQL connector does.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sluice.worker.events import Column, ColumnType, TypeKind

__all__ = ["INFO_COLUMNS", "ColumnInfo", "Loader", "column_info", "column_of", "loader_for", "parse_values"]

Loader = Callable[[Any], Any]

_INT_BITS = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64}
_TEXT = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext"}
_BYTES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
_SPATIAL = {
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
}
#: the type families by name, for the COPY-text snapshot loop (copytext) to pick its converters from the same lists
TEXT_TYPES = frozenset(_TEXT)
INT_TYPES = frozenset(_INT_BITS)
BYTES_TYPES = frozenset(_BYTES)
SPATIAL_TYPES = frozenset(_SPATIAL)
_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_EPOCH_DATE = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class ColumnInfo:
    """One column as ``information_schema.COLUMNS`` describes it."""

    name: str
    data_type: str  # lower case: int, varchar, ...
    column_type: str  # the full spelling: ``int(10) unsigned``, ``enum('a','b')``
    nullable: bool
    precision: int | None = None
    scale: int | None = None
    length: int | None = None
    #: a MariaDB LONGTEXT column with a ``json_valid`` check (MariaDB's JSON alias)
    json_check: bool = False


#: the ``information_schema.COLUMNS`` fields :func:`column_info` takes, in its order
INFO_COLUMNS = (
    "COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE, CHARACTER_MAXIMUM_LENGTH"
)


def column_info(row: Sequence[Any], *, json_check: bool = False) -> ColumnInfo:
    """A row of :data:`INFO_COLUMNS` as a :class:`ColumnInfo` (servers give numbers and text in several types)."""
    return ColumnInfo(
        name=str(row[0]),
        data_type=str(row[1]).lower(),
        column_type=str(row[2]),
        nullable=str(row[3]).upper() == "YES",
        precision=None if row[4] is None else int(row[4]),
        scale=None if row[5] is None else int(row[5]),
        length=None if row[6] is None else int(row[6]),
        json_check=json_check,
    )


def parse_values(column_type: str) -> tuple[str, ...]:
    """``enum('a','b''c')`` -> ('a', "b'c")."""
    body = column_type[column_type.find("(") + 1 : column_type.rfind(")")]
    return tuple(m.replace("''", "'") for m in _QUOTED.findall(body))


def _bit_width(column_type: str) -> int:
    m = re.search(r"\((\d+)\)", column_type)
    return int(m.group(1)) if m else 1


def column_of(info: ColumnInfo, *, infer_bool: bool) -> Column:
    """The neutral column of ``info``."""
    dt, ct = info.data_type.lower(), info.column_type.lower()
    native = info.column_type
    unsigned = "unsigned" in ct
    kind: TypeKind
    extra: dict[str, Any] = {}
    if dt == "tinyint" and infer_bool and re.match(r"tinyint\(1\)", ct):
        kind = TypeKind.BOOL
    elif dt in _INT_BITS:
        kind = TypeKind.INT
        bits = _INT_BITS[dt]
        extra = {"bits": 32 if bits == 24 else bits, "unsigned": unsigned}
    elif dt == "year":
        kind, extra = TypeKind.INT, {"bits": 16}
    elif dt in ("decimal", "numeric"):
        kind, extra = TypeKind.DECIMAL, {"precision": info.precision, "scale": info.scale}
    elif dt == "float":
        kind, extra = TypeKind.FLOAT, {"bits": 32}
    elif dt in ("double", "real"):
        kind, extra = TypeKind.FLOAT, {"bits": 64}
    elif dt == "bit":
        kind = TypeKind.BOOL if _bit_width(ct) == 1 else TypeKind.BYTES
    elif dt == "date":
        kind = TypeKind.DATE
    elif dt == "datetime":
        kind = TypeKind.TIMESTAMP
    elif dt == "timestamp":
        kind = TypeKind.TIMESTAMPTZ
    elif dt == "time":
        kind = TypeKind.INTERVAL
    elif dt == "json" or (dt == "longtext" and info.json_check):
        kind = TypeKind.JSON
    elif dt in ("char", "varchar"):
        kind, extra = TypeKind.TEXT, {"length": info.length}
    elif dt in _TEXT:
        kind = TypeKind.TEXT
    elif dt in _BYTES or dt in _SPATIAL:
        kind = TypeKind.BYTES
    elif dt == "enum":
        kind, extra = TypeKind.ENUM, {"enum_values": parse_values(info.column_type)}
    elif dt == "set":
        kind = TypeKind.TEXT
    else:
        kind = TypeKind.NATIVE
    return Column(info.name, ColumnType(kind, native=native, dialect="mysql", **extra), nullable=info.nullable)


def _f32(value: float) -> float:
    """The shortest decimal that is the same 32-bit float (the binlog gives FLOAT as its exact binary value)."""
    if math.isnan(value) or math.isinf(value):
        return value
    target = struct.unpack("<f", struct.pack("<f", value))[0]
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", candidate))[0] == target:
            return candidate
    return float(target)


def _json_text(value: Any) -> Any:
    """MySQL's binlog JSON (a parsed structure with bytes) as JSON text; text stays text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8")

    def plain(v: Any) -> Any:
        if isinstance(v, bytes | bytearray):
            return bytes(v).decode("utf-8", errors="replace")
        if isinstance(v, dict):
            return {plain(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        if isinstance(v, Decimal):
            return float(v)
        if isinstance(v, datetime | date | timedelta):
            return str(v)
        return v

    return json.dumps(plain(value))


def _bytes(value: Any) -> bytes:
    """A binary value as bytes. The binlog reader hands an empty one of a ``binary``-charset column over as ``''``
    (it "decodes" it with a codec Python lacks, and an empty input decodes before the codec is looked up)."""
    return value.encode() if isinstance(value, str) else bytes(value)


_TEXTY = (str, bytes)  # a tuple: ``isinstance(v, str | bytes)`` builds a union object at every call


def _is_zero_date(value: Any) -> bool:
    return isinstance(value, _TEXTY)  # PyMySQL returns what it cannot parse (zero dates) as text


def loader_for(info: ColumnInfo, column: Column) -> Loader:
    """A function from a snapshot or binlog value of ``info`` to the neutral value of ``column``'s type."""
    t = column.type
    dt = info.data_type.lower()
    nullable = info.nullable

    if t.kind == TypeKind.INT:
        bits = _INT_BITS.get(dt, 16)
        unsigned = t.unsigned
        span = 1 << bits

        def load_int(v: Any) -> Any:
            if v is None:
                return None
            n = int(v)
            # The binlog decoder may misread signedness (its bitmap differs by server version): the schema rules.
            if unsigned and n < 0:
                n += span
            elif not unsigned and dt != "year" and n >= span >> 1:
                n -= span
            return n

        return load_int
    if t.kind == TypeKind.BOOL:
        if dt == "bit":
            return lambda v: None if v is None else (v != "0" if isinstance(v, str) else any(bytes(v)))
        return lambda v: None if v is None else bool(int(v))
    if t.kind == TypeKind.BYTES and dt == "bit":
        width = (_bit_width(info.column_type) + 7) // 8

        def load_bits(v: Any) -> Any:
            if v is None:
                return None
            if isinstance(v, str):  # the binlog gives BIT as a string of 0 and 1
                return int(v, 2).to_bytes(width, "big")
            return bytes(v).rjust(width, b"\0")

        return load_bits
    if t.kind == TypeKind.BYTES and dt == "binary":
        n = info.length or 0
        return lambda v: None if v is None else _bytes(v).ljust(n, b"\0")
    if t.kind == TypeKind.BYTES:
        return lambda v: None if v is None else _bytes(v)
    if t.kind == TypeKind.FLOAT:
        if t.bits == 32:
            return lambda v: None if v is None else _f32(float(v))
        return lambda v: None if v is None else float(v)
    if t.kind == TypeKind.DECIMAL:
        return lambda v: None if v is None else Decimal(v)
    if t.kind == TypeKind.DATE:
        zero_date: Any = None if nullable else _EPOCH_DATE

        def load_date(v: Any) -> Any:
            if v is None:
                return zero_date if not nullable else None
            if _is_zero_date(v):
                return zero_date
            return v

        return load_date
    if t.kind in (TypeKind.TIMESTAMP, TypeKind.TIMESTAMPTZ):
        aware = t.kind == TypeKind.TIMESTAMPTZ
        zero: Any = None if nullable else (_EPOCH.replace(tzinfo=UTC) if aware else _EPOCH)

        def load_ts(v: Any) -> Any:
            if v is None:
                return zero if not nullable else None
            if _is_zero_date(v):
                return zero
            if aware:
                return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
            return v

        return load_ts
    if t.kind == TypeKind.INTERVAL:
        return lambda v: None if v is None else v
    if t.kind == TypeKind.JSON:
        return _json_text
    if dt == "set":
        order = {name: i for i, name in enumerate(parse_values(info.column_type))}

        def load_set(v: Any) -> Any:
            if v is None or isinstance(v, str):
                return v
            return ",".join(sorted((str(m) for m in v), key=lambda m: order.get(m, len(order))))

        return load_set
    if t.kind in (TypeKind.TEXT, TypeKind.ENUM, TypeKind.NATIVE):
        return lambda v: (
            None if v is None else (bytes(v).decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
        )
    return lambda v: v
