"""The pgoutput v2 decoder on bytes built by hand, one message kind at a time (layouts from the PostgreSQL docs)."""

from __future__ import annotations

import struct

import pytest

from sluice.worker.positions import format_lsn, parse_lsn
from sluice.worker.sources.postgres import pgoutput as po


def i8(v: int) -> bytes:
    return struct.pack("!B", v)


def i16(v: int) -> bytes:
    return struct.pack("!h", v)


def i32(v: int) -> bytes:
    return struct.pack("!I", v)


def s32(v: int) -> bytes:
    return struct.pack("!i", v)


def i64(v: int) -> bytes:
    return struct.pack("!Q", v)


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def tuple_data(*values: bytes | str | None) -> bytes:
    out = i16(len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v == "u":
            out += b"u"
        elif isinstance(v, bytes):
            out += b"t" + s32(len(v)) + v
    return out


def relation(oid: int = 16385, xid: int | None = None) -> bytes:
    body = b"R" + (i32(xid) if xid is not None else b"") + i32(oid) + cstr("public") + cstr("accounts") + b"d"
    body += i16(3)
    body += i8(1) + cstr("id") + i32(20) + s32(-1)
    body += i8(0) + cstr("amount") + i32(1700) + s32((12 << 16 | 2) + 4)
    body += i8(0) + cstr("note") + i32(25) + s32(-1)
    return body


def test_begin_commit() -> None:
    d = po.PgOutputDecoder()
    msg = d.decode(b"B" + i64(0x16B374D848) + i64(123456) + i32(777))
    assert msg == po.Begin(final_lsn=0x16B374D848, commit_ts=123456, xid=777)
    msg = d.decode(b"C" + i8(0) + i64(100) + i64(180) + i64(99))
    assert msg == po.Commit(flags=0, commit_lsn=100, end_lsn=180, commit_ts=99)


def test_relation_and_key_columns() -> None:
    d = po.PgOutputDecoder()
    rel = d.decode(relation())
    assert isinstance(rel, po.Relation)
    assert (rel.namespace, rel.name, rel.replica_identity) == ("public", "accounts", "d")
    assert [c.name for c in rel.columns] == ["id", "amount", "note"]
    assert rel.key_names == ("id",)
    assert rel.columns[1].type_oid == 1700
    assert d.relations[16385] is rel


def test_insert_with_null_and_text() -> None:
    d = po.PgOutputDecoder()
    msg = d.decode(b"I" + i32(16385) + b"N" + tuple_data(b"1", None, b"tab\there"))
    assert msg == po.Insert(xid=None, relation_oid=16385, new=(b"1", None, b"tab\there"))


def test_update_with_old_key_and_unchanged_toast() -> None:
    d = po.PgOutputDecoder()
    msg = d.decode(b"U" + i32(16385) + b"K" + tuple_data(b"1", None, None) + b"N" + tuple_data(b"2", b"3.50", "u"))
    assert isinstance(msg, po.Update)
    assert msg.old_kind == "K"
    assert msg.old == (b"1", None, None)
    assert msg.new == (b"2", b"3.50", po.UNCHANGED)
    plain = d.decode(b"U" + i32(16385) + b"N" + tuple_data(b"2", b"1", b"x"))
    assert isinstance(plain, po.Update) and plain.old is None and plain.old_kind is None


def test_update_with_full_old_row() -> None:
    d = po.PgOutputDecoder()
    msg = d.decode(b"U" + i32(5) + b"O" + tuple_data(b"a", b"b") + b"N" + tuple_data(b"a", b"c"))
    assert isinstance(msg, po.Update) and msg.old_kind == "O" and msg.old == (b"a", b"b")


def test_delete_key_and_full() -> None:
    d = po.PgOutputDecoder()
    assert d.decode(b"D" + i32(9) + b"K" + tuple_data(b"7", None)) == po.Delete(None, 9, "K", (b"7", None))
    assert d.decode(b"D" + i32(9) + b"O" + tuple_data(b"7", b"x")) == po.Delete(None, 9, "O", (b"7", b"x"))


def test_truncate() -> None:
    d = po.PgOutputDecoder()
    msg = d.decode(b"T" + i32(2) + i8(3) + i32(10) + i32(11))
    assert msg == po.Truncate(xid=None, options=3, relation_oids=(10, 11))


def test_type_origin_message() -> None:
    d = po.PgOutputDecoder()
    assert d.decode(b"Y" + i32(16400) + cstr("public") + cstr("mood")) == po.TypeMessage(None, 16400, "public", "mood")
    assert d.decode(b"O" + i64(55) + cstr("node_a")) == po.Origin(commit_lsn=55, name="node_a")
    msg = d.decode(b"M" + i8(1) + i64(66) + cstr("pfx") + s32(3) + b"abc")
    assert msg == po.LogicalMessage(xid=None, transactional=True, lsn=66, prefix="pfx", content=b"abc")


def test_stream_block_changes_carry_xid() -> None:
    d = po.PgOutputDecoder()
    assert d.decode(b"S" + i32(900) + i8(1)) == po.StreamStart(xid=900, first_segment=True)
    assert d.in_stream
    rel = d.decode(relation(xid=900))
    assert isinstance(rel, po.Relation) and rel.xid == 900
    ins = d.decode(b"I" + i32(901) + i32(16385) + b"N" + tuple_data(b"1", b"2", b"3"))
    assert ins == po.Insert(xid=901, relation_oid=16385, new=(b"1", b"2", b"3"))
    upd = d.decode(b"U" + i32(900) + i32(16385) + b"N" + tuple_data(b"1", b"2", "u"))
    assert isinstance(upd, po.Update) and upd.xid == 900
    dele = d.decode(b"D" + i32(900) + i32(16385) + b"K" + tuple_data(b"1", None, None))
    assert isinstance(dele, po.Delete) and dele.xid == 900
    tr = d.decode(b"T" + i32(900) + i32(1) + i8(0) + i32(16385))
    assert tr == po.Truncate(xid=900, options=0, relation_oids=(16385,))
    msg = d.decode(b"M" + i32(900) + i8(0) + i64(1) + cstr("p") + s32(0))
    assert isinstance(msg, po.LogicalMessage) and msg.xid == 900 and not msg.transactional
    assert d.decode(b"E") == po.StreamStop()
    assert not d.in_stream
    # Outside the block the xid is gone again.
    assert d.decode(b"I" + i32(16385) + b"N" + tuple_data(b"1")) == po.Insert(None, 16385, (b"1",))


def test_stream_commit_and_abort() -> None:
    d = po.PgOutputDecoder()
    assert d.decode(b"c" + i32(900) + i8(0) + i64(10) + i64(20) + i64(30)) == po.StreamCommit(900, 0, 10, 20, 30)
    assert d.decode(b"A" + i32(900) + i32(905)) == po.StreamAbort(xid=900, subxid=905)


@pytest.mark.parametrize(
    "payload",
    [
        b"Z",  # unknown type
        b"B" + i64(1),  # truncated
        b"I" + i32(1) + b"X" + tuple_data(b"1"),  # bad marker
        b"I" + i32(1) + b"N" + i16(1) + b"t" + s32(10) + b"abc",  # value shorter than its length
        b"I" + i32(1) + b"N" + i16(1) + b"q",  # unknown value kind
        b"R" + i32(1) + b"public",  # unterminated string
    ],
)
def test_malformed_messages_raise(payload: bytes) -> None:
    with pytest.raises(po.PgOutputError):
        po.PgOutputDecoder().decode(payload)


def test_binary_values_are_kept() -> None:
    d = po.PgOutputDecoder()
    msg = d.decode(b"I" + i32(1) + b"N" + i16(1) + b"b" + s32(2) + b"\x00\x01")
    assert isinstance(msg, po.Insert) and msg.new == (b"\x00\x01",)


def test_lsn_round_trip() -> None:
    assert parse_lsn("16/B374D848") == 0x16B374D848
    assert format_lsn(0x16B374D848) == "16/B374D848"
    assert parse_lsn(None) == 0
    assert format_lsn(0) == "0/0"
