"""MySQL columns as Debezium's MySQL connector writes them, where that differs from the generic mapping.

:func:`~sluice.worker.encoders.debezium.column_schema` asks :func:`mysql_column_schema` first for a column of the
``mysql`` dialect (MySQL and MariaDB sources). Debezium 3.6's defaults (``time.precision.mode=
adaptive_time_microseconds``, ``binary.handling.mode=bytes``, ``bigint.unsigned.handling.mode=long``), compared
with Debezium's own events in ``tests/integration/test_mysql_debezium_conformance.py``:

===================== ============================================ ==========================================
MySQL type            Connect schema                               JSON payload
===================== ============================================ ==========================================
MEDIUMINT UNSIGNED    ``int32`` (the generic rule doubles the       number
                      source's 32 bits to ``int64``)
YEAR                  ``int32`` ``io.debezium.time.Year``           the year
BIT(n), n > 1         ``bytes`` ``io.debezium.data.Bits``           base64 of ceil(n/8) bytes, least
                      (``length`` n)                                significant byte first
DATETIME(0..3)        ``int64`` ``io.debezium.time.Timestamp``      milliseconds since the epoch
DATETIME(4..6)        ``int64`` ``io.debezium.time.MicroTimestamp`` microseconds since the epoch
TIMESTAMP(fsp)        ``string`` ``io.debezium.time.ZonedTimestamp`` UTC, ``Z``, exactly fsp fraction digits
TIME(fsp)             ``int64`` ``io.debezium.time.MicroTime``      microseconds (negative and beyond 24 h as
                                                                   MySQL has them)
SET(...)              ``string`` ``io.debezium.data.EnumSet``       the members, comma-separated
                      (``allowed``)
GEOMETRY, LINESTRING, struct ``io.debezium.data.geometry.Geometry`` ``{"wkb": base64, "srid": n or null}``:
POLYGON, ...          ``{wkb, srid}``                              the WKB without MySQL's SRID prefix
POINT                 struct ``io.debezium.data.geometry.Point``    ``{"x", "y", "wkb", "srid"}``
                      ``{x, y, wkb, srid}``
===================== ============================================ ==========================================

Every other MySQL type takes the generic mapping (``DECIMAL`` as Connect ``Decimal``, ``FLOAT`` ``float``,
``DOUBLE`` ``double``, ``ENUM`` ``io.debezium.data.Enum``, ``JSON`` ``io.debezium.data.Json``, text ``string``,
binary ``bytes``, ``DATE`` ``io.debezium.time.Date``).
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.worker.events import ColumnType, TypeKind
from sluice.worker.sources.mysql.types import SPATIAL_TYPES, parse_values

__all__ = ["mysql_column_schema"]

Schema = dict[str, Any]
Converter = Callable[[Any], Any]
#: the encoder's schema builder: (type, optional, name, **extra) -> schema
SchemaOf = Callable[..., Schema]
FieldOf = Callable[[Schema, str], Schema]

_EPOCH = datetime(1970, 1, 1)
_FSP = re.compile(r"\((\d+)\)")


def _fsp(native: str, default: int = 0) -> int:
    m = _FSP.search(native)
    return int(m.group(1)) if m else default


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _millis(value: Any) -> Any:
    if not isinstance(value, datetime):
        return None
    naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    return (naive - _EPOCH) // timedelta(milliseconds=1)


def _micros(value: Any) -> Any:
    if not isinstance(value, datetime):
        return None
    naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    return (naive - _EPOCH) // timedelta(microseconds=1)


def _zoned(fsp: int) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, datetime):
            return None
        utc = value.astimezone(UTC) if value.tzinfo is not None else value
        text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
        if fsp > 0:
            text += "." + f"{utc.microsecond:06d}"[:fsp]
        return text + "Z"

    return convert


def _time_micros(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    return None


def _bits_le(value: Any) -> Any:
    """The neutral BIT(n) value (big-endian bytes) as Debezium's ``Bits``: least significant byte first."""
    return _b64(bytes(value)[::-1])


def _split_geometry(value: Any) -> tuple[int | None, bytes]:
    """MySQL's internal geometry (4-byte little-endian SRID, then WKB) as (SRID or None for 0, WKB)."""
    data = bytes(value)
    srid = int.from_bytes(data[:4], "little")
    return (srid or None), data[4:]


def _geometry(value: Any) -> Any:
    srid, wkb = _split_geometry(value)
    return {"wkb": _b64(wkb), "srid": srid}


def _point(value: Any) -> Any:
    srid, wkb = _split_geometry(value)
    order = "<" if wkb[:1] == b"\x01" else ">"
    x, y = struct.unpack_from(f"{order}dd", wkb, 5)
    return {"x": x, "y": y, "wkb": _b64(wkb), "srid": srid}


def mysql_column_schema(
    ctype: ColumnType, optional: bool, schema: SchemaOf, field: FieldOf, identity: Converter
) -> tuple[Schema, Converter] | None:
    """Debezium's MySQL schema and payload converter for ``ctype``, or None where the generic mapping applies.

    ``schema``/``field`` build Connect schemas as the encoder does; ``identity`` is its pass-through converter.
    """
    native = ctype.native.lower().strip()
    base = native.split("(", 1)[0].split(" ", 1)[0]
    k = ctype.kind
    if k is TypeKind.INT:
        if base == "mediumint":
            return schema("int32", optional), identity
        if base == "year":
            return schema("int32", optional, "io.debezium.time.Year", version=1), identity
        return None
    if k is TypeKind.BYTES and base == "bit":
        params = {"length": str(_fsp(native, 1))}
        return schema("bytes", optional, "io.debezium.data.Bits", version=1, parameters=params), _bits_le
    if k is TypeKind.TIMESTAMP and base == "datetime":
        if _fsp(native) <= 3:
            return schema("int64", optional, "io.debezium.time.Timestamp", version=1), _millis
        return schema("int64", optional, "io.debezium.time.MicroTimestamp", version=1), _micros
    if k is TypeKind.TIMESTAMPTZ and base == "timestamp":
        return schema("string", optional, "io.debezium.time.ZonedTimestamp", version=1), _zoned(_fsp(native))
    if k is TypeKind.INTERVAL and base == "time":
        return schema("int64", optional, "io.debezium.time.MicroTime", version=1), _time_micros
    if k is TypeKind.TEXT and base == "set":
        params = {"allowed": ",".join(parse_values(ctype.native))}
        return schema("string", optional, "io.debezium.data.EnumSet", version=1, parameters=params), identity
    if k is TypeKind.BYTES and base in SPATIAL_TYPES:
        wkb, srid = field(schema("bytes", False), "wkb"), field(schema("int32", True), "srid")
        if base == "point":
            x, y = field(schema("double", False), "x"), field(schema("double", False), "y")
            fields = [x, y, {**wkb, "optional": True}, srid]
            doc = "Geometry (POINT)"
            return (
                schema("struct", optional, "io.debezium.data.geometry.Point", fields=fields, version=1, doc=doc),
                _point,
            )
        name = "io.debezium.data.geometry.Geometry"
        return schema("struct", optional, name, fields=[wkb, srid], version=1, doc="Geometry"), _geometry
    return None
