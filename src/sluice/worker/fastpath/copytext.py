"""Rows as lines of PostgreSQL's text ``COPY`` format, from decoded values or straight from a pgoutput tuple.

Bulk inserts are the one place where the worker touches every column of every row, so :func:`tuple_copy_line`
goes from the wire bytes of an Insert to the sink's COPY line without building a value tuple in between. It uses
the compiled ``sluice._speedups`` when it is built (``pip install`` builds it where a C compiler exists) and this
module's Python version otherwise; both give the same bytes, which the unit tests check on random tuples.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence

from sluice.worker.sources.postgres.pgoutput import UNCHANGED, PgOutputError, TupleValue

__all__ = ["SPEEDUPS", "decode_copy_line", "encode_copy_row", "py_tuple_copy_line", "tuple_copy_line"]

_NEEDS_ESCAPE = re.compile(rb"[\\\t\n\r]").search
_NULL = b"\\N"
_i16_from = struct.Struct("!h").unpack_from
_i32_from = struct.Struct("!i").unpack_from


def _escape(v: bytes) -> bytes:
    return v.replace(b"\\", b"\\\\").replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def encode_copy_row(values: Sequence[TupleValue]) -> bytes:
    """One line of text COPY (no newline); NULL and unchanged-TOAST both become ``\\N``."""
    if None not in values and UNCHANGED not in values:
        # Common case: PostgreSQL text never contains NUL, so join on it, check once, then turn NULs into tabs.
        raw = b"\0".join(values)  # type: ignore[arg-type]
        if not _NEEDS_ESCAPE(raw):
            return raw.replace(b"\0", b"\t")
    out: list[bytes] = []
    for v in values:
        if v.__class__ is bytes:
            out.append(_escape(v) if _NEEDS_ESCAPE(v) else v)  # type: ignore[arg-type,unused-ignore]
        else:
            out.append(_NULL)
    return b"\t".join(out)


_UNESCAPE = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r"}
_ESCAPED = re.compile(rb"\\(.)")


def _unescape_one(match: re.Match[bytes]) -> bytes:
    return _UNESCAPE[match.group(1)]


def decode_copy_line(line: bytes) -> list[bytes | None]:
    """The values of a line :func:`encode_copy_row` wrote (newline optional): the inverse, for small batches."""
    out: list[bytes | None] = []
    for value in line.rstrip(b"\n").split(b"\t"):
        if value == _NULL:
            out.append(None)
        elif b"\\" in value:
            out.append(_ESCAPED.sub(_unescape_one, value))
        else:
            out.append(value)
    return out


def py_tuple_copy_line(buf: bytes, pos: int) -> bytes:
    """The pgoutput TupleData at ``pos`` (its column count) as a text COPY line, newline included.

    Only text ('t') and NULL ('n') values can appear in an Insert of a text-format stream; anything else is
    refused rather than guessed.
    """
    try:
        (n,) = _i16_from(buf, pos)
        if n < 0:
            raise PgOutputError("negative column count")
        pos += 2
        size = len(buf)
        values: list[bytes | None] = []
        append = values.append
        for _ in range(n):
            kind = buf[pos]
            if kind == 0x74:  # 't'
                (length,) = _i32_from(buf, pos + 1)
                start = pos + 5
                pos = start + length
                if length < 0 or pos > size:
                    raise PgOutputError("tuple value truncated")
                append(buf[start:pos])
            elif kind == 0x6E:  # 'n'
                append(None)
                pos += 1
            else:
                raise PgOutputError(f"tuple value kind {chr(kind)!r} cannot become a COPY line")
    except (IndexError, struct.error) as exc:
        raise PgOutputError(f"tuple data truncated: {exc}") from exc
    return encode_copy_row(values) + b"\n"


def _load_compiled() -> Callable[[bytes, int], bytes] | None:
    try:
        from sluice._speedups import tuple_copy_line  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # depends on whether a compiler was there at install time
        return None
    return tuple_copy_line  # type: ignore[no-any-return,unused-ignore]


_compiled = _load_compiled()

#: whether the compiled version is in use
SPEEDUPS = _compiled is not None
tuple_copy_line: Callable[[bytes, int], bytes] = _compiled if _compiled is not None else py_tuple_copy_line
