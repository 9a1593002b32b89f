"""MySQL text-protocol rows straight into PostgreSQL's text COPY format, for the MySQL -> PostgreSQL snapshot.

Why: decoding every value into Python (PyMySQL's converters), then into the neutral model (:mod:`.types`), then
encoding it again for COPY costs ~90% of a snapshot's CPU, while the server's text for most types is already valid
PostgreSQL input. So the rows of a chunk are read off the socket as raw packets and turned into COPY lines by one
compiled loop (``sluice._speedups.mysql_copy_rows``; :func:`py_mysql_copy_rows` is the reference and the fallback
where no C compiler was available), with one converter per column decided once from the table's schema
(:func:`column_kinds`):

=========================================== ==================================================================
MySQL column                                COPY text
=========================================== ==================================================================
integers, YEAR, DECIMAL, DOUBLE, text,      the server's text, COPY-escaped (``\\`` tab newline CR)
ENUM, SET, JSON
TINYINT(1) read as boolean                  ``f`` for 0, else ``t``
BIT(1)                                      ``t`` when any bit is set, else ``f``
BIT(n), BINARY(n)                           bytea hex of the value padded to its width (left / right)
VARBINARY, BLOBs, spatial                   bytea hex
DATE, DATETIME                              the text when it is a valid date in canonical form
TIMESTAMP                                   the same, with ``+00`` (every connection runs in UTC)
TIME                                        the text when it is 00:00:00 .. 23:59:59.999999
FLOAT, anything else                        the fallback
=========================================== ==================================================================

A value the fast form cannot take as it is (a zero date, a TIME beyond 24 hours or negative, which the neutral
path stores as days and time; a FLOAT, whose neutral form is its shortest 32-bit decimal) goes through the column's
*fallback*: PyMySQL's converter, the column's neutral loader, then the sink's own text dumper, so it is
byte-for-byte what the neutral path would have written. The integration tests compare both paths on every type.
A fallback that refuses a value (a data problem) raises :class:`ColumnValueError` naming the column, kept apart
from the ``ValueError`` of a malformed packet (a protocol problem, where the connection's state is unknown).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pymysql
from pymysql.constants import CR

from sluice.worker.events import Column, TypeKind
from sluice.worker.sources.mysql.types import BYTES_TYPES, INT_TYPES, SPATIAL_TYPES, TEXT_TYPES, ColumnInfo

__all__ = [
    "ROWS_BIG_PACKET",
    "ROWS_END",
    "ROWS_ERROR_PACKET",
    "ROWS_NEED_MORE",
    "SPEEDUPS",
    "ColumnValueError",
    "Fallback",
    "column_kinds",
    "mysql_copy_row",
    "mysql_copy_rows",
    "py_mysql_copy_row",
    "py_mysql_copy_rows",
    "read_copy_text",
]

#: raw value (the server's bytes) -> the COPY value before escaping (None for NULL)
Fallback = Callable[[bytes], bytes | None]


class ColumnValueError(Exception):
    """A column's fallback converter failed on a value: a data problem, reported with the column's name.

    Deliberately not a ``ValueError``: :func:`read_copy_text` takes those for malformed packets (a protocol error),
    and a converter's own ``ValueError`` (say, PyMySQL's on a value it cannot parse) must not pass for one."""


ROWS_NEED_MORE, ROWS_END, ROWS_BIG_PACKET, ROWS_ERROR_PACKET = 0, 1, 2, 3
_MAX_PACKET = 0xFFFFFF
#: bytes read off the socket per call (the COPY text of one read goes to the sink in one write)
READ_BYTES = 1 << 20

_TEXT_TYPES = TEXT_TYPES | {"enum", "set", "json"}
_INT_TYPES = INT_TYPES | {"year"}
_HEX_TYPES = (BYTES_TYPES - {"binary"}) | SPATIAL_TYPES  # BINARY is padded: converted on its own


def column_kinds(
    infos: Sequence[ColumnInfo], columns: Sequence[Column], keep: Sequence[bool]
) -> tuple[bytes, tuple[int, ...]]:
    """Each column's converter (a kind letter of ``mysql_copy_rows``) and pad width; ``-`` where not ``keep``."""
    kinds = bytearray()
    widths: list[int] = []
    for info, column, kept in zip(infos, columns, keep, strict=True):
        kind, width = _kind(info, column) if kept else ("-", 0)
        kinds += kind.encode()
        widths.append(width)
    return bytes(kinds), tuple(widths)


def _kind(info: ColumnInfo, column: Column) -> tuple[str, int]:
    dt = info.data_type.lower()
    k = column.type.kind
    if k == TypeKind.BOOL:
        return ("B", 0) if dt == "bit" else ("b", 0)
    if k == TypeKind.INT and dt in _INT_TYPES:
        return "p", 0
    if k == TypeKind.DECIMAL or (k == TypeKind.FLOAT and column.type.bits == 64):
        return "p", 0
    if k == TypeKind.BYTES:
        if dt == "bit":
            m = re.search(r"\((\d+)\)", info.column_type)
            return "L", ((int(m.group(1)) if m else 1) + 7) // 8
        if dt == "binary":
            return "R", info.length or 0
        if dt in _HEX_TYPES:
            return "x", 0
    if k == TypeKind.DATE:
        return "d", 0
    if k == TypeKind.TIMESTAMP:
        return "t", 0
    if k == TypeKind.TIMESTAMPTZ:
        return "z", 0
    if k == TypeKind.INTERVAL and dt == "time":
        return "T", 0
    if k in (TypeKind.TEXT, TypeKind.ENUM, TypeKind.JSON) and dt in _TEXT_TYPES | {"longtext"}:
        return "p", 0
    return "f", 0


# ---------------------------------------------------------------------------------------------------- reference

_DATE = re.compile(rb"(\d{4})-(\d{2})-(\d{2})")
_CLOCK = re.compile(rb"(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?")
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_ESCAPES = re.compile(rb"[\\\t\n\r]")
_ESCAPED = {b"\\": b"\\\\", b"\t": b"\\t", b"\n": b"\\n", b"\r": b"\\r"}


def _escape(value: bytes) -> bytes:
    return _ESCAPES.sub(lambda m: _ESCAPED[m.group(0)], value)


def _valid_date(v: bytes) -> bool:
    m = _DATE.fullmatch(v[:10])
    if m is None:
        return False
    y, mo, d = (int(x) for x in m.groups())
    if y < 1 or not 1 <= mo <= 12 or d < 1:
        return False
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    return d <= _DAYS[mo - 1] + (1 if mo == 2 and leap else 0)


def _valid_clock(v: bytes) -> bool:
    m = _CLOCK.fullmatch(v)
    return m is not None and int(m.group(1)) < 24 and int(m.group(2)) <= 59 and int(m.group(3)) <= 59


def _valid_datetime(v: bytes) -> bool:
    return len(v) >= 19 and _valid_date(v[:10]) and v[10:11] == b" " and _valid_clock(v[11:])


def _lenenc(payload: bytes, p: int) -> tuple[bytes | None, int]:
    if p >= len(payload):
        raise ValueError("row packet truncated or malformed")
    c = payload[p]
    if c < 0xFB:
        n, skip = c, 1
    elif c == 0xFB:
        return None, p + 1
    elif c in (0xFC, 0xFD, 0xFE):
        size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[c]
        if len(payload) - p < 1 + size:
            raise ValueError("row packet truncated or malformed")
        n, skip = int.from_bytes(payload[p + 1 : p + 1 + size], "little"), 1 + size
    else:
        raise ValueError("row packet truncated or malformed")
    if n > len(payload) - p - skip:
        raise ValueError("row packet truncated or malformed")
    return payload[p + skip : p + skip + n], p + skip + n


def _fallback(fallbacks: Sequence[Fallback | None], i: int, v: bytes) -> bytes:
    fn = fallbacks[i]
    if fn is None:
        raise ValueError(f"column {i} needs a fallback converter and has none")
    out = fn(v)
    if out is None:
        return b"\\N"
    if not isinstance(out, bytes):
        raise TypeError("a fallback converter must return bytes or None")
    return _escape(out)


def py_mysql_copy_row(
    payload: bytes, kinds: bytes, widths: Sequence[int], fallbacks: Sequence[Fallback | None]
) -> bytes:
    """One row packet's payload as one COPY line (the reference of ``sluice._speedups.mysql_copy_row``)."""
    if not len(widths) == len(fallbacks) == len(kinds):
        raise ValueError("kinds, widths and fallbacks differ in length")
    fields: list[bytes] = []
    p = 0
    for i, k in enumerate(kinds.decode()):
        v, p = _lenenc(payload, p)
        if k == "-":
            continue
        if v is None:
            fields.append(b"\\N")
        elif k == "p":
            fields.append(_escape(v))
        elif k == "b":
            fields.append(b"t" if any(0x31 <= c <= 0x39 for c in v) else b"f")
        elif k == "B":
            fields.append(b"t" if any(v) else b"f")
        elif k in "xLR":
            w = widths[i]
            padded = v.rjust(w, b"\0") if k == "L" else v.ljust(w, b"\0") if k == "R" else v
            fields.append(b"\\\\x" + padded.hex().encode())
        elif k == "d":
            fields.append(_escape(v) if len(v) == 10 and _valid_date(v) else _fallback(fallbacks, i, v))
        elif k == "t":
            fields.append(_escape(v) if _valid_datetime(v) else _fallback(fallbacks, i, v))
        elif k == "z":
            fields.append(_escape(v) + b"+00" if _valid_datetime(v) else _fallback(fallbacks, i, v))
        elif k == "T":
            fields.append(_escape(v) if _valid_clock(v) else _fallback(fallbacks, i, v))
        elif k == "f":
            fields.append(_fallback(fallbacks, i, v))
        else:
            raise ValueError(f"unknown column kind {k!r}")
    if p != len(payload):
        raise ValueError("row packet has more columns than the result")
    return b"\t".join(fields) + b"\n"


def py_mysql_copy_rows(
    buf: bytes, pos: int, seq: int, kinds: bytes, widths: Sequence[int], fallbacks: Sequence[Fallback | None]
) -> tuple[bytes, int, int, int, int]:
    """Row packets from ``pos`` as COPY lines: (text, pos, rows, seq, status); see ``mysql_copy_rows``."""
    out: list[bytes] = []
    rows = 0
    status = ROWS_NEED_MORE
    if not 0 <= pos <= len(buf):
        raise ValueError("position outside the buffer")
    while len(buf) - pos >= 4:
        n = int.from_bytes(buf[pos : pos + 3], "little")
        if buf[pos + 3] != seq:
            raise ValueError(f"packet sequence number wrong - got {buf[pos + 3]} expected {seq}")
        if n == _MAX_PACKET:
            status = ROWS_BIG_PACKET
            break
        if len(buf) - pos - 4 < n:
            break
        payload = bytes(buf[pos + 4 : pos + 4 + n])
        if n > 0 and payload[0] == 0xFF:
            status = ROWS_ERROR_PACKET
            break
        if 0 < n < 9 and payload[0] == 0xFE:
            pos += 4 + n
            seq = (seq + 1) & 0xFF
            status = ROWS_END
            break
        out.append(py_mysql_copy_row(payload, kinds, widths, fallbacks))
        rows += 1
        pos += 4 + n
        seq = (seq + 1) & 0xFF
    return b"".join(out), pos, rows, seq, status


try:
    from sluice._speedups import (  # type: ignore[import-not-found,unused-ignore]
        mysql_copy_row as _c_copy_row,
    )
    from sluice._speedups import (  # type: ignore[import-not-found,unused-ignore]
        mysql_copy_rows as _c_copy_rows,
    )
except ImportError:  # built without a C compiler, or an older build
    SPEEDUPS = False
    mysql_copy_rows: Callable[..., tuple[bytes, int, int, int, int]] = py_mysql_copy_rows
    mysql_copy_row: Callable[..., bytes] = py_mysql_copy_row
else:
    SPEEDUPS = True
    mysql_copy_rows = _c_copy_rows
    mysql_copy_row = _c_copy_row


# ---------------------------------------------------------------------------------------------------- the reader


def _lost(exc: BaseException | None = None) -> pymysql.err.OperationalError:
    detail = f" ({exc})" if exc is not None else ""
    return pymysql.err.OperationalError(CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query{detail}")


def _named(name: str, fn: Fallback) -> Fallback:
    """``fn`` whose failures are :class:`ColumnValueError` naming column ``name``."""

    def fallback(raw: bytes) -> bytes | None:
        try:
            return fn(raw)
        except Exception as exc:
            raise ColumnValueError(f"column {name}: cannot convert a value: {type(exc).__name__}: {exc}") from exc

    return fallback


def read_copy_text(
    conn: Any,
    kinds: bytes,
    widths: tuple[int, ...],
    fallbacks: tuple[Fallback | None, ...],
    names: Sequence[str] | None = None,
) -> Iterator[tuple[bytes, int]]:
    """The rows of the unbuffered result just started on ``conn`` (PyMySQL, ``SSCursor.execute`` returned) as
    blocks of COPY text with their row counts, read straight off the connection's socket.

    PyMySQL has read the result's column definitions; the packets after them are rows until an EOF packet (PyMySQL
    does not ask for ``CLIENT_DEPRECATE_EOF``) or an error packet. At the end the connection is left as PyMySQL
    leaves a finished unbuffered result, so it can run the next query. An error packet raises PyMySQL's error; a
    malformed packet ``InternalError``; a fallback's failure :class:`ColumnValueError` with the column's name
    (``names``, one per column; else its position). After an error the connection is closed: rows are left unread.
    """
    fallbacks = tuple(
        _named(repr(names[i]) if names is not None else f"#{i}", fn) if fn is not None else None
        for i, fn in enumerate(fallbacks)
    )
    rfile = conn._rfile
    seq = conn._next_seq_id
    result = conn._result
    rest = b""
    try:
        while True:
            data = rfile.read1(READ_BYTES)
            if not data:
                raise _lost()
            buf = rest + data if rest else data
            text, pos, rows, seq, status = mysql_copy_rows(buf, 0, seq, kinds, widths, fallbacks)
            if rows:
                yield text, rows
            if status == ROWS_END:
                if pos != len(buf):
                    raise pymysql.err.InternalError("unexpected data after the end of a result")
                break
            rest = buf[pos:]
            if status == ROWS_NEED_MORE:
                continue
            payload, seq = _whole_packet(rfile, rest, seq)
            rest = b""
            if status == ROWS_ERROR_PACKET:
                if result is not None:
                    result.unbuffered_active = False
                pymysql.protocol.MysqlPacket(payload, conn.encoding).raise_for_error()
                raise pymysql.err.InternalError("an error packet without an error")
            yield mysql_copy_row(payload, kinds, widths, fallbacks), 1
    except OSError as exc:
        conn._force_close()
        raise _lost(exc) from exc
    except ColumnValueError:  # a data problem: the rest of the result is unread
        conn._force_close()
        raise
    except ValueError as exc:  # a malformed packet, from the loop or _whole_packet: the connection's state is unknown
        conn._force_close()
        raise pymysql.err.InternalError(str(exc)) from exc
    conn._next_seq_id = seq
    if result is not None:
        result.unbuffered_active = False
        result.connection = None
        result.rows = None


def _whole_packet(rfile: Any, rest: bytes, seq: int) -> tuple[bytes, int]:
    """The packet at the start of ``rest`` (read on from ``rfile``), joined when it spans 16 MiB packets."""
    parts: list[bytes] = []
    buf = rest
    while True:
        while len(buf) < 4:
            more = rfile.read(4 - len(buf))
            if not more:
                raise _lost()
            buf += more
        n = int.from_bytes(buf[:3], "little")
        if buf[3] != seq:
            raise ValueError(f"packet sequence number wrong - got {buf[3]} expected {seq}")
        seq = (seq + 1) & 0xFF
        body = buf[4 : 4 + n]
        if len(body) < n:
            more = rfile.read(n - len(body))
            if more is None or len(more) < n - len(body):
                raise _lost()
            body += more
        parts.append(body)
        buf = buf[4 + n :]
        if n < _MAX_PACKET:
            if buf:
                raise ValueError("data after a packet that should end what was read")
            return b"".join(parts), seq
