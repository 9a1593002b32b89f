"""A pure decoder of the pgoutput logical replication protocol, version 2 (PostgreSQL 14+).

It turns the bytes of one ``XLogData`` payload into a small message object. It does no I/O, so it is unit-tested on
bytes the tests build by hand. The only state it keeps is whether it is inside a stream block (between Stream Start
and Stream Stop): there, every change message carries the xid of its (sub)transaction, outside it does not.

Column values stay ``bytes`` in the text output format of their type (``None`` for NULL, :data:`UNCHANGED` for an
unchanged TOAST value) because the sink writes them straight into a text ``COPY`` — decoding them to ``str`` would
only cost time.

Reference: PostgreSQL docs, "Logical Replication Message Formats".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "UNCHANGED",
    "Begin",
    "Column",
    "Commit",
    "Delete",
    "Insert",
    "LogicalMessage",
    "Message",
    "Origin",
    "PgOutputDecoder",
    "PgOutputError",
    "Relation",
    "StreamAbort",
    "StreamCommit",
    "StreamStart",
    "StreamStop",
    "Truncate",
    "TupleValue",
    "TypeMessage",
    "Update",
    "read_tuple",
]


class _Unchanged:
    """Marker for an unchanged TOAST value ('u'): the sink must keep what it has."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __reduce__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()

TupleValue = bytes | None | _Unchanged


class PgOutputError(ValueError):
    """The bytes are not a pgoutput message this decoder understands."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_ts: int  # microseconds since 2000-01-01
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: int


@dataclass(frozen=True, slots=True)
class Origin:
    commit_lsn: int
    name: str


@dataclass(frozen=True, slots=True)
class Relation:
    xid: int | None
    oid: int
    namespace: str
    name: str
    replica_identity: str  # d(efault) n(othing) f(ull) i(ndex)
    columns: tuple[Column, ...]

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_key)


@dataclass(frozen=True, slots=True)
class TypeMessage:
    xid: int | None
    oid: int
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    xid: int | None
    relation_oid: int
    new: tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Update:
    xid: int | None
    relation_oid: int
    #: 'K' (old key columns only), 'O' (whole old row, replica identity full) or None (key unchanged)
    old_kind: str | None
    old: tuple[TupleValue, ...] | None
    new: tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Delete:
    xid: int | None
    relation_oid: int
    old_kind: str  # 'K' or 'O'
    old: tuple[TupleValue, ...]


@dataclass(frozen=True, slots=True)
class Truncate:
    xid: int | None
    options: int  # 1 = CASCADE, 2 = RESTART IDENTITY
    relation_oids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    xid: int | None
    transactional: bool
    lsn: int
    prefix: str
    content: bytes


@dataclass(frozen=True, slots=True)
class StreamStart:
    xid: int
    first_segment: bool


@dataclass(frozen=True, slots=True)
class StreamStop:
    pass


@dataclass(frozen=True, slots=True)
class StreamCommit:
    xid: int
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_ts: int


@dataclass(frozen=True, slots=True)
class StreamAbort:
    xid: int
    subxid: int


Message = (
    Begin
    | Commit
    | Origin
    | Relation
    | TypeMessage
    | Insert
    | Update
    | Delete
    | Truncate
    | LogicalMessage
    | StreamStart
    | StreamStop
    | StreamCommit
    | StreamAbort
)

_I8 = struct.Struct("!B")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I64 = struct.Struct("!q")
_U64 = struct.Struct("!Q")


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes | memoryview) -> None:
        self.buf = bytes(buf)
        self.pos = 0

    def need(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise PgOutputError(f"message truncated at byte {self.pos} (need {n} more of {len(self.buf)})")

    def u8(self) -> int:
        self.need(1)
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def char(self) -> str:
        return chr(self.u8())

    def i16(self) -> int:
        self.need(2)
        (v,) = _I16.unpack_from(self.buf, self.pos)
        self.pos += 2
        return int(v)

    def i32(self) -> int:
        self.need(4)
        (v,) = _I32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(v)

    def u32(self) -> int:
        self.need(4)
        (v,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(v)

    def i64(self) -> int:
        self.need(8)
        (v,) = _I64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(v)

    def u64(self) -> int:
        self.need(8)
        (v,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(v)

    def cstring(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise PgOutputError(f"unterminated string at byte {self.pos}")
        s = self.buf[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return s

    def raw(self, n: int) -> bytes:
        self.need(n)
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return v

    def tuple_data(self) -> tuple[TupleValue, ...]:
        n = self.i16()
        buf = self.buf
        values: list[TupleValue] = []
        append = values.append
        pos = self.pos
        size = len(buf)
        for _ in range(n):
            if pos >= size:
                raise PgOutputError("tuple data truncated")
            kind = buf[pos]
            pos += 1
            if kind == 0x74 or kind == 0x62:  # 't' text, 'b' binary
                if pos + 4 > size:
                    raise PgOutputError("tuple data truncated")
                (length,) = _I32.unpack_from(buf, pos)
                pos += 4
                if pos + length > size:
                    raise PgOutputError("tuple value truncated")
                append(buf[pos : pos + length])
                pos += length
            elif kind == 0x6E:  # 'n' null
                append(None)
            elif kind == 0x75:  # 'u' unchanged toast
                append(UNCHANGED)
            else:
                raise PgOutputError(f"unknown tuple value kind {chr(kind)!r}")
        self.pos = pos
        return tuple(values)


@dataclass
class PgOutputDecoder:
    """Decodes one message at a time; remembers only whether it is inside a stream block."""

    in_stream: bool = False
    relations: dict[int, Relation] = field(default_factory=dict)

    def decode(self, payload: bytes | memoryview) -> Message:
        r = _Reader(payload)
        kind = r.char()
        if kind == "B":
            return Begin(final_lsn=r.u64(), commit_ts=r.i64(), xid=r.u32())
        if kind == "C":
            return Commit(flags=r.u8(), commit_lsn=r.u64(), end_lsn=r.u64(), commit_ts=r.i64())
        if kind == "O":
            return Origin(commit_lsn=r.u64(), name=r.cstring())
        if kind == "S":
            self.in_stream = True
            return StreamStart(xid=r.u32(), first_segment=r.u8() == 1)
        if kind == "E":
            self.in_stream = False
            return StreamStop()
        if kind == "c":
            return StreamCommit(xid=r.u32(), flags=r.u8(), commit_lsn=r.u64(), end_lsn=r.u64(), commit_ts=r.i64())
        if kind == "A":
            return StreamAbort(xid=r.u32(), subxid=r.u32())
        xid = r.u32() if self.in_stream else None
        if kind == "I":
            oid = r.u32()
            marker = r.char()
            if marker != "N":
                raise PgOutputError(f"insert: expected 'N', got {marker!r}")
            return Insert(xid=xid, relation_oid=oid, new=r.tuple_data())
        if kind == "U":
            oid = r.u32()
            marker = r.char()
            old_kind: str | None = None
            old: tuple[TupleValue, ...] | None = None
            if marker in ("K", "O"):
                old_kind = marker
                old = r.tuple_data()
                marker = r.char()
            if marker != "N":
                raise PgOutputError(f"update: expected 'N', got {marker!r}")
            return Update(xid=xid, relation_oid=oid, old_kind=old_kind, old=old, new=r.tuple_data())
        if kind == "D":
            oid = r.u32()
            marker = r.char()
            if marker not in ("K", "O"):
                raise PgOutputError(f"delete: expected 'K' or 'O', got {marker!r}")
            return Delete(xid=xid, relation_oid=oid, old_kind=marker, old=r.tuple_data())
        if kind == "R":
            oid = r.u32()
            namespace = r.cstring()
            name = r.cstring()
            identity = r.char()
            ncols = r.i16()
            cols = []
            for _ in range(ncols):
                flags = r.u8()
                cname = r.cstring()
                cols.append(Column(name=cname, type_oid=r.u32(), type_modifier=r.i32(), is_key=bool(flags & 1)))
            rel = Relation(
                xid=xid, oid=oid, namespace=namespace, name=name, replica_identity=identity, columns=tuple(cols)
            )
            self.relations[oid] = rel
            return rel
        if kind == "Y":
            return TypeMessage(xid=xid, oid=r.u32(), namespace=r.cstring(), name=r.cstring())
        if kind == "T":
            nrel = r.i32()
            options = r.u8()
            return Truncate(xid=xid, options=options, relation_oids=tuple(r.u32() for _ in range(nrel)))
        if kind == "M":
            flags = r.u8()
            lsn = r.u64()
            prefix = r.cstring()
            length = r.i32()
            return LogicalMessage(xid=xid, transactional=bool(flags & 1), lsn=lsn, prefix=prefix, content=r.raw(length))
        raise PgOutputError(f"unknown pgoutput message type {kind!r}")


# ---------------------------------------------------------------------------------------------------- hot path
#
# Insert/Update/Delete are nearly every message of a busy stream. ``decode_row_change`` parses them with a few
# struct calls and no objects beyond the value tuples, several times faster than :meth:`PgOutputDecoder.decode`.

_u32_from = _U32.unpack_from
_i32_from = _I32.unpack_from
_i16_from = _I16.unpack_from


def _tuple_at(buf: bytes, pos: int) -> tuple[tuple[TupleValue, ...], int]:
    if pos < 0:
        raise PgOutputError("tuple data truncated")
    (n,) = _i16_from(buf, pos)
    if n < 0:
        raise PgOutputError("negative column count")
    pos += 2
    values: list[TupleValue] = []
    append = values.append
    i32_from = _i32_from
    size = len(buf)
    for _ in range(n):
        kind = buf[pos]
        pos += 1
        if kind == 0x74 or kind == 0x62:
            (length,) = i32_from(buf, pos)
            pos += 4
            end = pos + length
            if end > size or length < 0:
                raise PgOutputError("tuple value truncated")
            append(buf[pos:end])
            pos = end
        elif kind == 0x6E:
            append(None)
        elif kind == 0x75:
            append(UNCHANGED)
        else:
            raise PgOutputError(f"unknown tuple value kind {chr(kind)!r}")
    return tuple(values), pos


def read_tuple(buf: bytes, pos: int) -> tuple[tuple[TupleValue, ...], int]:
    """The TupleData at ``pos`` (its column count) as a value tuple, and the byte after it."""
    try:
        return _tuple_at(buf, pos)
    except (IndexError, struct.error) as exc:
        raise PgOutputError(f"tuple data truncated: {exc}") from exc


def decode_tuple(buf: bytes, pos: int) -> tuple[TupleValue, ...]:
    """The TupleData at ``pos`` (its column count) as a value tuple."""
    return read_tuple(buf, pos)[0]


RowChange = tuple[int, int | None, int, "str | None", "tuple[TupleValue, ...] | None", "tuple[TupleValue, ...] | None"]


def decode_row_change(buf: bytes, has_xid: bool) -> RowChange:
    """(kind byte, xid, relation oid, old kind, old tuple, new tuple) of an 'I', 'U' or 'D' message."""
    try:
        kind = buf[0]
        pos = 1
        xid: int | None = None
        if has_xid:
            (xid,) = _u32_from(buf, pos)
            pos += 4
        (oid,) = _u32_from(buf, pos)
        pos += 4
        marker = buf[pos]
        pos += 1
        if kind == 0x49:  # I
            if marker != 0x4E:
                raise PgOutputError("insert: expected 'N'")
            new, _ = _tuple_at(buf, pos)
            return kind, xid, oid, None, None, new
        if kind == 0x55:  # U
            old_kind: str | None = None
            old = None
            if marker == 0x4B or marker == 0x4F:
                old_kind = chr(marker)
                old, pos = _tuple_at(buf, pos)
                marker = buf[pos]
                pos += 1
            if marker != 0x4E:
                raise PgOutputError("update: expected 'N'")
            new, _ = _tuple_at(buf, pos)
            return kind, xid, oid, old_kind, old, new
        if kind == 0x44:  # D
            if marker != 0x4B and marker != 0x4F:
                raise PgOutputError("delete: expected 'K' or 'O'")
            old, _ = _tuple_at(buf, pos)
            return kind, xid, oid, chr(marker), old, None
    except (IndexError, struct.error) as exc:
        raise PgOutputError(f"row change message truncated: {exc}") from exc
    raise PgOutputError(f"not a row change message: {chr(kind)!r}")
