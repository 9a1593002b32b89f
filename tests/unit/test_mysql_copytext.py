"""MySQL row packets into PostgreSQL text COPY lines: the compiled and the Python version must agree byte for byte,
and each converter must give what the neutral path gives for canonical values (anything else: the fallback)."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

import pymysql
import pytest

from sluice.worker.sources.mysql import copytext
from sluice.worker.sources.mysql.copytext import (
    ROWS_BIG_PACKET,
    ROWS_END,
    ROWS_ERROR_PACKET,
    ROWS_NEED_MORE,
    py_mysql_copy_row,
    py_mysql_copy_rows,
    read_copy_text,
)

ROWS = [pytest.param(py_mysql_copy_rows, id="python")]
ROW = [pytest.param(py_mysql_copy_row, id="python")]
if copytext.SPEEDUPS:
    ROWS.append(pytest.param(copytext.mysql_copy_rows, id="compiled"))
    ROW.append(pytest.param(copytext.mysql_copy_row, id="compiled"))

EOF_PACKET = b"\xfe\x00\x00\x02\x00"


def lenenc(v: bytes | None) -> bytes:
    if v is None:
        return b"\xfb"
    n = len(v)
    if n < 0xFB:
        head = bytes([n])
    elif n < 1 << 16:
        head = b"\xfc" + n.to_bytes(2, "little")
    elif n < 1 << 24:
        head = b"\xfd" + n.to_bytes(3, "little")
    else:
        head = b"\xfe" + n.to_bytes(8, "little")
    return head + v


def payload(values: list[bytes | None]) -> bytes:
    return b"".join(lenenc(v) for v in values)


def packet(body: bytes, seq: int) -> bytes:
    return len(body).to_bytes(3, "little") + bytes([seq & 0xFF]) + body


def fallback(tag: bytes) -> Callable[[bytes], bytes | None]:
    return lambda raw: None if raw == b"null-me" else tag + b"(" + raw + b")"


def convert(row: Any, values: list[bytes | None], kinds: bytes, widths: tuple[int, ...] | None = None) -> bytes:
    fbs = tuple(fallback(b"fb") for _ in kinds)
    return row(payload(values), kinds, widths or (0,) * len(kinds), fbs)  # type: ignore[no-any-return]


@pytest.mark.parametrize("row", ROW)
def test_plain_nulls_escapes_and_skipped_columns(row: Any) -> None:
    assert convert(row, [b"42", None, b"a\tb\\c\nd\re", b"", b"gone"], b"pppp-") == (b"42\t\\N\ta\\tb\\\\c\\nd\\re\t\n")
    assert convert(row, [b"x" * 300, b"y" * 70000], b"pp") == b"x" * 300 + b"\t" + b"y" * 70000 + b"\n"


@pytest.mark.parametrize("row", ROW)
def test_booleans_and_bytes(row: Any) -> None:
    assert convert(row, [b"0", b"1", b"-5", b"10"], b"bbbb") == b"f\tt\tt\tt\n"
    assert convert(row, [b"\x00", b"\x01", b"\x00\x80"], b"BBB") == b"f\tt\tt\n"
    assert convert(row, [b"\x01\x55", b"\x01", b"\x01\x02", b"", b"\xde\xad"], b"LLRxx", (2, 2, 3, 0, 0)) == (
        b"\\\\x0155\t\\\\x0001\t\\\\x010200\t\\\\x\t\\\\xdead\n"
    )


@pytest.mark.parametrize("row", ROW)
def test_dates_times_pass_when_canonical_else_fall_back(row: Any) -> None:
    assert convert(row, [b"2024-02-29", b"2023-02-29", b"0000-00-00", b"2024-13-01", b"0099-01-31"], b"ddddd") == (
        b"2024-02-29\tfb(2023-02-29)\tfb(0000-00-00)\tfb(2024-13-01)\t0099-01-31\n"
    )
    got = convert(
        row,
        [b"2024-02-29 12:34:56.789012", b"2024-02-29 12:34:56", b"0000-00-00 00:00:00", b"2024-02-29 24:00:00"],
        b"tttt",
    )
    assert got == b"2024-02-29 12:34:56.789012\t2024-02-29 12:34:56\tfb(0000-00-00 00:00:00)\tfb(2024-02-29 24:00:00)\n"
    assert convert(row, [b"2024-02-29 12:34:56.7", b"2024-02-30 00:00:00"], b"zz") == (
        b"2024-02-29 12:34:56.7+00\tfb(2024-02-30 00:00:00)\n"
    )
    assert convert(row, [b"12:34:56.50", b"00:00:00", b"-00:00:01", b"24:00:00", b"838:59:59"], b"TTTTT") == (
        b"12:34:56.50\t00:00:00\tfb(-00:00:01)\tfb(24:00:00)\tfb(838:59:59)\n"
    )


@pytest.mark.parametrize("row", ROW)
def test_fallback_results_are_escaped_and_none_is_null(row: Any) -> None:
    assert convert(row, [b"a\tb", b"null-me"], b"ff") == b"fb(a\\tb)\t\\N\n"
    with pytest.raises(TypeError):
        row(payload([b"x"]), b"f", (0,), (lambda raw: "text",))
    with pytest.raises(ValueError, match="fallback"):
        row(payload([b"0000-00-00"]), b"d", (0,), (None,))


@pytest.mark.parametrize("row", ROW)
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(payload([b"abc"])[:-1], id="value cut short"),
        pytest.param(b"\xfc\x05", id="length cut short"),
        pytest.param(b"\xff", id="bad length byte"),
        pytest.param(payload([b"a", b"b", b"c"]), id="more columns than kinds"),
        pytest.param(payload([b"a"]), id="fewer columns than kinds"),
    ],
)
def test_malformed_rows_raise(row: Any, body: bytes) -> None:
    with pytest.raises(ValueError):
        row(body, b"pp", (0, 0), (None, None))


@pytest.mark.parametrize("rows", ROWS)
def test_packets_until_eof_and_partial_data(rows: Any) -> None:
    stream = packet(payload([b"1", b"a"]), 3) + packet(payload([b"2", None]), 4) + packet(EOF_PACKET, 5)
    spec = (b"pp", (0, 0), (None, None))
    assert rows(stream, 0, 3, *spec) == (b"1\ta\n2\t\\N\n", len(stream), 2, 6, ROWS_END)
    cut = len(stream) - 3
    text, pos, n, seq, status = rows(stream[:cut], 0, 3, *spec)
    assert (text, n, seq, status) == (b"1\ta\n2\t\\N\n", 2, 5, ROWS_NEED_MORE)
    assert rows(stream[:cut] + stream[cut:], pos, seq, *spec)[1:] == (len(stream), 0, 6, ROWS_END)
    assert rows(stream[:2], 0, 3, *spec) == (b"", 0, 0, 3, ROWS_NEED_MORE)
    with pytest.raises(ValueError, match="sequence"):
        rows(stream, 0, 4, *spec)


@pytest.mark.parametrize("rows", ROWS)
def test_big_and_error_packets_stop_where_they_start(rows: Any) -> None:
    first = packet(payload([b"1"]), 0)
    big = b"\xff\xff\xff\x01" + b"\x00" * 10
    assert rows(first + big, 0, 0, b"p", (0,), (None,)) == (b"1\n", len(first), 1, 1, ROWS_BIG_PACKET)
    err = packet(b"\xff\x15\x04#28000denied", 1)
    assert rows(first + err, 0, 0, b"p", (0,), (None,)) == (b"1\n", len(first), 1, 1, ROWS_ERROR_PACKET)


@pytest.mark.skipif(not copytext.SPEEDUPS, reason="compiled speedups not built")
def test_random_rows_agree() -> None:
    rng = random.Random(11)
    alphabet = [b"0", b"1", b"-", b":", b" ", b".", b"\\", b"\t", b"\n", b"\r", b"\xc3\xa9", b"\x00", b"9"]
    canonical = [b"2024-02-29", b"2024-02-29 01:02:03.5", b"23:59:59.999999", b"-1:00:00", b"0000-00-00"]
    for _ in range(3000):
        ncols = rng.randint(1, 7)
        kinds = bytes(rng.choice(b"pbBxLRdtzTf-") for _ in range(ncols))
        widths = tuple(rng.randint(0, 4) for _ in range(ncols))
        fbs = tuple(fallback(bytes([k])) for k in kinds)
        values: list[bytes | None] = []
        for _ in range(ncols):
            r = rng.random()
            if r < 0.15:
                values.append(None)
            elif r < 0.4:
                values.append(rng.choice(canonical))
            else:
                values.append(b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))))
        stream = b"".join(packet(payload(values), i) for i in range(3)) + packet(EOF_PACKET, 3)
        want = py_mysql_copy_rows(stream, 0, 0, kinds, widths, fbs)
        assert copytext.mysql_copy_rows(stream, 0, 0, kinds, widths, fbs) == want


class FakeConnection:
    """What read_copy_text uses of a PyMySQL connection that has just read a result's column definitions."""

    def __init__(self, data: bytes, seq: int) -> None:
        self._rfile = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type,unused-ignore]
        self._next_seq_id = seq
        self._result = None
        self.encoding = "utf8"
        self.closed = False

    def _force_close(self) -> None:
        self.closed = True


def refuse(raw: bytes) -> bytes | None:
    """A converter that cannot take the value (as PyMySQL's int() on a malformed number)."""
    return str(int(raw)).encode()


def big_row(value: bytes) -> bytes:
    """A row of one value whose payload spans two packets (16 MiB and the rest), sequence numbers from 1."""
    body = payload([value])
    return packet(body[:0xFFFFFF], 1) + packet(body[0xFFFFFF:], 2)


#: (mysql_copy_rows, mysql_copy_row) pairs: the Python reference, and the compiled loop where built
LOOPS = [pytest.param((r.values[0], w.values[0]), id=r.id) for r, w in zip(ROWS, ROW, strict=True)]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("big", [False, True], ids=["row packet", "row of several packets"])
def test_a_converter_error_names_its_column_and_is_no_protocol_error(
    monkeypatch: pytest.MonkeyPatch, loop: Any, big: bool
) -> None:
    monkeypatch.setattr(copytext, "mysql_copy_rows", loop[0])
    monkeypatch.setattr(copytext, "mysql_copy_row", loop[1])
    bad = big_row(b"x" * 0xFFFFFF) if big else packet(payload([b"x"]), 1)
    conn = FakeConnection(bad + packet(EOF_PACKET, 3 if big else 2), 1)
    blocks = read_copy_text(conn, b"f", (0,), (refuse,), ["amount"])
    with pytest.raises(copytext.ColumnValueError, match=r"^column 'amount': .*ValueError: invalid literal") as info:
        list(blocks)
    assert not isinstance(info.value, ValueError | pymysql.err.MySQLError)
    assert isinstance(info.value.__cause__, ValueError)
    assert conn.closed  # the rest of the result is unread


@pytest.mark.parametrize("loop", LOOPS)
def test_a_malformed_packet_is_a_protocol_error(monkeypatch: pytest.MonkeyPatch, loop: Any) -> None:
    monkeypatch.setattr(copytext, "mysql_copy_rows", loop[0])
    monkeypatch.setattr(copytext, "mysql_copy_row", loop[1])
    conn = FakeConnection(packet(payload([b"1", b"2"]), 7), 1)  # sequence number 7 where 1 is due
    with pytest.raises(pymysql.err.InternalError, match="sequence"):
        list(read_copy_text(conn, b"pf", (0, 0), (None, refuse), ["id", "amount"]))
    assert conn.closed


def test_a_converter_taking_the_value_passes_its_result_through() -> None:
    """The column-naming wrapper changes nothing for values the converter takes."""
    conn = FakeConnection(packet(payload([b"1", b"42"]), 1) + packet(EOF_PACKET, 2), 1)
    assert list(read_copy_text(conn, b"pf", (0, 0), (None, refuse), ["id", "amount"])) == [(b"1\t42\n", 1)]
    assert not conn.closed and conn._next_seq_id == 3
