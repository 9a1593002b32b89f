"""Binlog rows events (WRITE/UPDATE/DELETE_ROWS v1/v2) decoded in one pass, without ``mysql-replication``'s reader.

Why: ``mysql-replication`` decodes every value of every row image through half a dozen Python calls (packet
reads, ``struct.unpack``, bitmap look-ups, a dict per image); that was ~60% of the worker's CPU on a large UPDATE.
Here the rows body of an event (what follows the table id, flags, extra data, column count and present-columns
bitmaps, all still read by the library) goes through one compiled loop (``sluice._speedups.mysql_rows_decode``;
:func:`py_decode_rows` is the reference, and the fallback where no C compiler was available), with one decoder per
column chosen once per table map from the table map's column types and metadata (:func:`column_specs`).

The values are the library's, value for value (the unit and integration tests compare all three on real binlog
events of both servers): the stream's loaders (:mod:`.types`) take them exactly as before. Rows come back as
tuples in the table map's column order (a column missing from an image's bitmap is None, as the library gives),
one tuple per row image: an UPDATE gives before, after, before, after...

A table with a column type not decoded here (the pre-5.6 TIMESTAMP/DATETIME/TIME forms, VAR_STRING, anything
unknown), an event the library reads differently (MySQL's PARTIAL_UPDATE_ROWS_EVENT, decode errors ignored) or a
packet state this code does not expect gets ``None`` from :func:`decode_rows`: the caller then uses the library.
"""

from __future__ import annotations

import codecs
import datetime
import decimal
import struct
from collections.abc import Callable, Sequence
from typing import Any

from pymysqlreplication.constants import BINLOG, FIELD_TYPE
from pymysqlreplication.json_binary import parse_json
from pymysqlreplication.row_event import RowsEvent, UpdateRowsEvent

from sluice.worker.events import Column, TypeKind

__all__ = [
    "SPEEDUPS",
    "Spec",
    "column_specs",
    "decode_rows",
    "event_body",
    "loader_is_identity",
    "mysql_rows_decode",
    "py_decode_rows",
]

#: one column's decoder: (code, m1, m2, extra); see the ``C_*`` codes
Spec = tuple[int, int, int, Any]

# decoder codes (the same numbers in _speedups.c)
C_TINY, C_SHORT, C_INT24, C_LONG, C_LONGLONG = 1, 2, 3, 4, 5  # m1 = unsigned
C_FLOAT, C_DOUBLE = 6, 7
C_DECIMAL = 8  # m1 = precision, m2 = scale
C_STRING = 9  # m1 = length bytes (1/2/3/4), extra = encoding (None: bytes, and '' for an empty one if m2)
C_DATE, C_DATETIME2, C_TIMESTAMP2, C_TIME2 = 10, 11, 12, 13  # m1 = fsp
C_YEAR = 14
C_ENUM = 15  # m1 = bytes, extra = ("", members...) or None
C_SET = 16  # m1 = bytes, extra = members or None
C_BIT = 17  # m1 = bits, m2 = bytes
C_JSON = 18  # m1 = length bytes, extra = the JSON parser (bytes -> value)

_INT_CODES = {
    FIELD_TYPE.TINY: C_TINY,
    FIELD_TYPE.SHORT: C_SHORT,
    FIELD_TYPE.INT24: C_INT24,
    FIELD_TYPE.LONG: C_LONG,
    FIELD_TYPE.LONGLONG: C_LONGLONG,
}
_ROWS_TYPES = {
    BINLOG.WRITE_ROWS_EVENT_V1,
    BINLOG.WRITE_ROWS_EVENT_V2,
    BINLOG.UPDATE_ROWS_EVENT_V1,
    BINLOG.UPDATE_ROWS_EVENT_V2,
    BINLOG.DELETE_ROWS_EVENT_V1,
    BINLOG.DELETE_ROWS_EVENT_V2,
}
_EPOCH = datetime.datetime(1970, 1, 1)


def _json(data: bytes) -> Any:
    return parse_json(data[0], data[1:])


def _string(column: Any, length_bytes: int) -> Spec:
    """The library decodes ``column``'s strings with the codec of its charset; where Python has none (``binary``,
    a few rare charsets) it hands over the bytes, except for an empty value, which ``bytes.decode`` turns into
    ``''`` before it looks the codec up (m2 = 1 keeps that)."""
    name = column.character_set_name
    enc = RowsEvent.charset_to_encoding(name) if name is not None else "utf-8"
    try:
        info = codecs.lookup(enc)
    except LookupError:
        return (C_STRING, length_bytes, 1, None)
    return (C_STRING, length_bytes, 0, "utf-8" if info.name == "utf-8" else enc)


def _spec(column: Any) -> Spec | None:
    t = column.type
    if t in _INT_CODES:
        return (_INT_CODES[t], 1 if column.unsigned else 0, 0, None)
    if t == FIELD_TYPE.FLOAT:
        return (C_FLOAT, 0, 0, None)
    if t == FIELD_TYPE.DOUBLE:
        return (C_DOUBLE, 0, 0, None)
    if t == FIELD_TYPE.NEWDECIMAL:
        return (C_DECIMAL, column.precision, column.decimals, None)
    if t in (FIELD_TYPE.VARCHAR, FIELD_TYPE.STRING):
        return _string(column, 2 if column.max_length > 255 else 1)
    if t == FIELD_TYPE.BLOB:
        return _string(column, column.length_size)
    if t == FIELD_TYPE.GEOMETRY:
        return (C_STRING, column.length_size, 0, None)
    if t == FIELD_TYPE.DATE:
        return (C_DATE, 0, 0, None)
    if t == FIELD_TYPE.DATETIME2:
        return (C_DATETIME2, column.fsp, 0, None)
    if t == FIELD_TYPE.TIMESTAMP2:
        return (C_TIMESTAMP2, column.fsp, 0, None)
    if t == FIELD_TYPE.TIME2:
        return (C_TIME2, column.fsp, 0, None)
    if t == FIELD_TYPE.YEAR:
        return (C_YEAR, 0, 0, None)
    if t == FIELD_TYPE.ENUM:
        values = tuple(column.enum_values) if column.enum_values else None
        return (C_ENUM, column.size, 0, values)
    if t == FIELD_TYPE.SET:
        values = tuple(column.set_values) if column.set_values else None
        return (C_SET, column.size, 0, values)
    if t == FIELD_TYPE.BIT:
        return (C_BIT, column.bits, column.bytes, None)
    if t == FIELD_TYPE.JSON:
        return (C_JSON, column.length_size, 0, _json)
    return None


def column_specs(columns: Sequence[Any]) -> tuple[Spec, ...] | None:
    """One decoder per table map column (``pymysqlreplication`` ``Column`` objects), or None if one is not decoded
    here (or its metadata is not what the decoders expect)."""
    out: list[Spec] = []
    for column in columns:
        try:
            spec = _spec(column)
        except AttributeError:  # metadata the library did not read for this type
            return None
        if spec is None:
            return None
        code, m1, _, _ = spec
        if code == C_STRING and m1 not in (1, 2, 3, 4):
            return None
        if code in (C_ENUM, C_SET) and m1 not in (1, 2, 3, 4, 5, 6, 7, 8):
            return None
        if code == C_JSON and m1 not in (1, 2, 3, 4):
            return None
        if code in (C_DATETIME2, C_TIMESTAMP2, C_TIME2) and not 0 <= m1 <= 6:
            return None
        if code == C_DECIMAL and not (0 <= spec[2] <= spec[1] <= 65):
            return None
        out.append(spec)
    return tuple(out)


def loader_is_identity(spec: Spec, column: Column) -> bool:
    """Whether the stream's loader of ``column`` (:func:`.types.loader_for`) returns every value this decoder gives
    for ``spec`` as it is, so the decoder may skip calling it. Only the plain cases; anything else keeps its loader
    (a FLOAT's shortest form, zero dates of NOT NULL columns, TIMESTAMP's time zone, BINARY's padding, SET, JSON,
    BIT, booleans, and integers whose signedness in the table map differs from the schema's)."""
    code, m1, m2, extra = spec
    t = column.type
    kind = t.kind
    if kind == TypeKind.INT:
        if code == C_YEAR:
            return True
        return code in _INT_CODES.values() and bool(m1) == bool(t.unsigned)
    if kind in (TypeKind.TEXT, TypeKind.ENUM):
        return (code == C_STRING and extra is not None) or code == C_ENUM
    if kind == TypeKind.DECIMAL:
        return code == C_DECIMAL
    if kind == TypeKind.FLOAT:
        return code == C_DOUBLE
    if kind == TypeKind.INTERVAL:
        return code == C_TIME2
    if kind == TypeKind.TIMESTAMP:
        return code == C_DATETIME2 and column.nullable
    if kind == TypeKind.DATE:
        return code == C_DATE and column.nullable
    if kind == TypeKind.BYTES:
        native = (t.native or "").strip().lower()
        return code == C_STRING and extra is None and not m2 and not native.startswith("binary")
    return False


# ---------------------------------------------------------------------------------------------------- reference

_COMPRESSED = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def _be_signed(data: bytes | bytearray) -> int:
    return int.from_bytes(data, "big", signed=True)


def _fsp(buf: bytes, pos: int, fsp: int) -> tuple[int, int]:
    """The library's ``__read_fsp``: (microseconds, new pos)."""
    n = (fsp + 1) // 2
    if n == 0:
        return 0, pos
    value = _be_signed(buf[pos : pos + n])
    if fsp % 2:
        value = int(value / 10)
    return value * 10 ** (6 - fsp), pos + n


def _time2(data: bytes | bytearray, fsp: int) -> datetime.timedelta:
    """A TIME(fsp) value, read as the server reads it (``my_time_packed_from_binary``): the integer part and the
    fraction make one signed number, so ``-00:00:00.01`` stays that (the library, reading the fraction apart from
    the sign, made it ``-00:00:00.99``)."""
    intpart = int.from_bytes(data[:3], "big") - 0x800000
    if fsp >= 5:
        packed = int.from_bytes(data[:6], "big") - 0x800000000000
    else:
        frac = 0
        if fsp >= 3:
            frac = int.from_bytes(data[3:5], "big")
            if intpart < 0 and frac:
                intpart, frac = intpart + 1, frac - 0x10000
            frac *= 100
        elif fsp >= 1:
            frac = data[3]
            if intpart < 0 and frac:
                intpart, frac = intpart + 1, frac - 0x100
            frac *= 10000
        packed = (intpart << 24) + frac
    sign = -1 if packed < 0 else 1
    packed = abs(packed)
    hms, us = packed >> 24, packed & 0xFFFFFF
    hours, minutes, seconds = (hms >> 12) & 0x3FF, (hms >> 6) & 0x3F, hms & 0x3F
    return datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds, microseconds=us) * sign


def _decimal(buf: bytes, pos: int, precision: int, scale: int) -> tuple[decimal.Decimal, int]:
    integral = precision - scale
    uncomp_integral, comp_integral = divmod(integral, 9)
    uncomp_fractional, comp_fractional = divmod(scale, 9)
    size = _COMPRESSED[comp_integral] + uncomp_integral * 4 + uncomp_fractional * 4 + _COMPRESSED[comp_fractional]
    data = bytearray(buf[pos : pos + size])
    if len(data) < size:
        raise ValueError("rows event truncated")
    if data[0] & 0x80:
        res, mask = "", 0
    else:
        res, mask = "-", -1
    data[0] ^= 0x80
    p = 0
    n = _COMPRESSED[comp_integral]
    if n:
        res += str(_be_signed(data[p : p + n]) ^ mask)
        p += n
    for _ in range(uncomp_integral):
        res += f"{_be_signed(data[p : p + 4]) ^ mask:09d}"
        p += 4
    res += "."
    for _ in range(uncomp_fractional):
        res += f"{_be_signed(data[p : p + 4]) ^ mask:09d}"
        p += 4
    n = _COMPRESSED[comp_fractional]
    if n:
        res += f"{_be_signed(data[p : p + n]) ^ mask:0{comp_fractional}d}"
    return decimal.Decimal(res), pos + size


def _take(buf: bytes, pos: int, n: int, end: int) -> bytes:
    if n < 0 or pos + n > end:
        raise ValueError("rows event truncated")
    return buf[pos : pos + n]


def _value(buf: bytes, pos: int, end: int, spec: Spec) -> tuple[Any, int]:
    code, m1, m2, extra = spec
    if code <= C_LONGLONG:
        n = (0, 1, 2, 3, 4, 8)[code]
        return int.from_bytes(_take(buf, pos, n, end), "little", signed=not m1), pos + n
    if code == C_FLOAT:
        return struct.unpack("<f", _take(buf, pos, 4, end))[0], pos + 4
    if code == C_DOUBLE:
        return struct.unpack("<d", _take(buf, pos, 8, end))[0], pos + 8
    if code == C_DECIMAL:
        return _decimal(buf, pos, m1, m2)
    if code == C_STRING:
        n = int.from_bytes(_take(buf, pos, m1, end), "little")
        raw = _take(buf, pos + m1, n, end)
        if extra is None:
            return ("" if m2 and n == 0 else raw), pos + m1 + n
        return raw.decode(extra), pos + m1 + n
    if code == C_DATE:
        t = int.from_bytes(_take(buf, pos, 3, end), "little")
        year, month, day = (t >> 9) & 0x7FFF, (t >> 5) & 0xF, t & 0x1F
        if t == 0 or year == 0 or month == 0 or day == 0:
            return None, pos + 3
        return datetime.date(year, month, day), pos + 3
    if code == C_DATETIME2:
        data = int.from_bytes(_take(buf, pos, 5, end), "big")
        _take(buf, pos + 5, (m1 + 1) // 2, end)
        ym = (data >> 22) & 0x1FFFF
        try:
            value = datetime.datetime(
                ym // 13, ym % 13, (data >> 17) & 0x1F, (data >> 12) & 0x1F, (data >> 6) & 0x3F, data & 0x3F
            )
        except ValueError:
            return None, _fsp(buf, pos + 5, m1)[1]
        us, pos = _fsp(buf, pos + 5, m1)
        return (value.replace(microsecond=us) if us > 0 else value), pos
    if code == C_TIMESTAMP2:
        seconds = _be_signed(_take(buf, pos, 4, end))
        _take(buf, pos + 4, (m1 + 1) // 2, end)
        stamp = _EPOCH + datetime.timedelta(seconds=seconds)
        us, pos = _fsp(buf, pos + 4, m1)
        return (stamp.replace(microsecond=us) if us > 0 else stamp), pos
    if code == C_TIME2:
        return _time2(_take(buf, pos, 3 + (m1 + 1) // 2, end), m1), pos + 3 + (m1 + 1) // 2
    if code == C_YEAR:
        return _take(buf, pos, 1, end)[0] + 1900, pos + 1
    if code == C_ENUM:
        idx = int.from_bytes(_take(buf, pos, m1, end), "little")
        return (extra[idx] if extra else None), pos + m1
    if code == C_SET:
        mask = int.from_bytes(_take(buf, pos, m1, end), "little")
        if not extra:
            return None, pos + m1
        # an empty set is a value (''), not NULL: NULL is in the row's null bitmap (the library made it None)
        return {v for i, v in enumerate(extra) if mask & (1 << i)}, pos + m1
    if code == C_BIT:
        bits = _take(buf, pos, m2, end)
        out = []
        for i, byte in enumerate(bits):
            width = 8 if i else (m1 if m2 == 1 else (m1 % 8 or 8))
            out.append(format(byte & ((1 << width) - 1), f"0{width}b"))
        return "".join(out), pos + m2
    if code == C_JSON:
        n = int.from_bytes(_take(buf, pos, m1, end), "little")
        if n == 0:
            return None, pos + m1
        return extra(_take(buf, pos + m1, n, end)), pos + m1 + n
    raise ValueError(f"unknown column decoder {code}")


def py_decode_rows(
    buf: bytes,
    pos: int,
    end: int,
    bitmaps: Sequence[bytes],
    specs: Sequence[Spec],
    loaders: Sequence[Callable[[Any], Any] | None] | None = None,
    change: tuple[Any, Any, Any, Any, int] | None = None,
) -> list[Any]:
    """The rows of a rows event body ``buf[pos:end]``: one tuple per row image, ``len(bitmaps)`` images a row (the
    present-columns bitmap of each), values as ``mysql-replication`` decodes them (reference of the C loop); with
    ``loaders``, each value then goes through its column's loader where it has one (None: taken as it is).

    With ``change`` = ``(cls, op, table, unchanged, slot)``, one ``cls(op, table, before, after, unchanged)`` per row
    instead, its image as ``after`` (slot 0, inserts), ``before`` (slot 1, deletes), or both (slot 2, updates)."""
    if loaders is not None and len(loaders) != len(specs):
        raise ValueError("loaders must be None or one callable (or None) per column")
    if change is not None and (change[4] not in (0, 1, 2) or (change[4] == 2) != (len(bitmaps) == 2)):
        raise ValueError("change slot 2 (before and after) goes with two images, 0/1 with one")
    images = _py_images(buf, pos, end, bitmaps, specs, loaders)
    if change is None:
        return images
    cls, op, table, unchanged, slot = change
    if slot == 0:
        return [cls(op, table, None, row, unchanged) for row in images]
    if slot == 1:
        return [cls(op, table, row, None, unchanged) for row in images]
    return [cls(op, table, images[k], images[k + 1], unchanged) for k in range(0, len(images), 2)]


def _py_images(
    buf: bytes,
    pos: int,
    end: int,
    bitmaps: Sequence[bytes],
    specs: Sequence[Spec],
    loaders: Sequence[Callable[[Any], Any] | None] | None,
) -> list[tuple[Any, ...]]:
    ncols = len(specs)
    present = [[bool(bm[i >> 3] & (1 << (i & 7))) for i in range(ncols)] for bm in bitmaps]
    counts = [sum(p) for p in present]
    out: list[tuple[Any, ...]] = []
    if not any(counts):  # no column in any image: a row takes no bytes (the library would loop for ever)
        if pos < end:
            raise ValueError("rows event without columns")
        return out
    while pos < end:
        for image, cols in enumerate(present):
            nbytes = (counts[image] + 7) // 8
            nulls = _take(buf, pos, nbytes, end)
            pos += nbytes
            values: list[Any] = []
            k = 0
            for i in range(ncols):
                if not cols[i]:
                    values.append(None)
                    continue
                if nulls[k >> 3] & (1 << (k & 7)):
                    values.append(None)
                else:
                    value, pos = _value(buf, pos, end, specs[i])
                    values.append(value)
                k += 1
            if loaders is not None:
                values = [v if load is None else load(v) for load, v in zip(loaders, values, strict=True)]
            out.append(tuple(values))
    return out


try:
    from sluice._speedups import (  # type: ignore[import-not-found,unused-ignore]
        mysql_rows_decode as _c_rows_decode,
    )
except ImportError:  # built without a C compiler, or an older build
    SPEEDUPS = False
    mysql_rows_decode: Callable[..., list[Any]] = py_decode_rows
else:
    SPEEDUPS = True
    mysql_rows_decode = _c_rows_decode


# ---------------------------------------------------------------------------------------------------- the hook


def table_specs(table: Any) -> tuple[Spec, ...] | None:
    """:func:`column_specs` of a ``pymysqlreplication`` ``Table``, kept on it (a table map event makes a new one)."""
    try:
        return table._sluice_specs  # type: ignore[no-any-return]
    except AttributeError:
        pass
    specs = column_specs(table.columns)
    table._sluice_specs = specs
    return specs


def event_body(event: Any) -> tuple[bytes, int, int, tuple[bytes, ...], tuple[Spec, ...]] | None:
    """``(buf, pos, end, bitmaps, specs)`` of a ``mysql-replication`` rows event whose rows nothing has read yet,
    as :func:`mysql_rows_decode` takes them; None where the library must read this event itself."""
    if event.event_type not in _ROWS_TYPES or event._ignore_decode_errors:
        return None
    table = event.table_map.get(event.table_id)
    if table is None:
        return None
    specs = table_specs(table)
    if specs is None or len(specs) != event.number_of_columns:
        return None
    wrapper = event.packet
    if wrapper._BinLogPacketWrapper__data_buffer:  # bytes pushed back (never after the rows header): not ours
        return None
    packet = wrapper.packet
    data = packet._data
    pos = packet._position
    end = pos + (event.event_size - wrapper.read_bytes)
    if not isinstance(data, bytes) or end > len(data) or end < pos:
        return None
    if isinstance(event, UpdateRowsEvent):
        bitmaps: tuple[bytes, ...] = (event.columns_present_bitmap, event.columns_present_bitmap2)
    else:
        bitmaps = (event.columns_present_bitmap,)
    nbytes = (len(specs) + 7) // 8
    if any(len(b) != nbytes for b in bitmaps):
        return None
    return data, pos, end, bitmaps, specs


def decode_rows(
    event: Any,
    loaders: Sequence[Callable[[Any], Any] | None] | None = None,
    change: tuple[Any, Any, Any, Any, int] | None = None,
) -> list[Any] | None:
    """The row images of a ``mysql-replication`` rows event (as :func:`py_decode_rows` gives them, through
    ``loaders`` if given, as row changes with ``change``), or None where the library must read this event itself.
    Call before anything reads ``event.rows``."""
    if not event.complete:
        return []
    body = event_body(event)
    if body is None:
        return None
    if loaders is not None or change is not None:
        rows = mysql_rows_decode(*body, None if loaders is None else tuple(loaders), change)
    else:
        rows = mysql_rows_decode(*body)
    event.packet.packet._position = body[2]
    event.packet.read_bytes = event.event_size
    return rows
