"""The compiled binlog rows decoder against its Python reference, on hand-made and random event bodies.

The comparison with ``mysql-replication`` itself, on real events of both servers, is in
tests/integration/test_mysql_rowdecode.py.
"""

from __future__ import annotations

import datetime
import random
import struct
from decimal import Decimal
from typing import Any

import pytest

from sluice.worker.events import Op, RowChange, TableId
from sluice.worker.sources.mysql import rowdecode as rd

c_decode = pytest.importorskip("sluice._speedups").mysql_rows_decode

SPECS: list[rd.Spec] = [
    (rd.C_TINY, 0, 0, None),
    (rd.C_TINY, 1, 0, None),
    (rd.C_SHORT, 0, 0, None),
    (rd.C_SHORT, 1, 0, None),
    (rd.C_INT24, 0, 0, None),
    (rd.C_INT24, 1, 0, None),
    (rd.C_LONG, 0, 0, None),
    (rd.C_LONG, 1, 0, None),
    (rd.C_LONGLONG, 0, 0, None),
    (rd.C_LONGLONG, 1, 0, None),
    (rd.C_FLOAT, 0, 0, None),
    (rd.C_DOUBLE, 0, 0, None),
    (rd.C_DECIMAL, 12, 3, None),
    (rd.C_DECIMAL, 65, 30, None),
    (rd.C_DECIMAL, 4, 4, None),
    (rd.C_DECIMAL, 10, 0, None),
    (rd.C_STRING, 1, 0, "utf-8"),
    (rd.C_STRING, 2, 0, "cp1252"),
    (rd.C_STRING, 3, 0, None),
    (rd.C_STRING, 4, 1, None),
    (rd.C_DATE, 0, 0, None),
    (rd.C_DATETIME2, 0, 0, None),
    (rd.C_DATETIME2, 3, 0, None),
    (rd.C_DATETIME2, 6, 0, None),
    (rd.C_TIMESTAMP2, 0, 0, None),
    (rd.C_TIMESTAMP2, 5, 0, None),
    (rd.C_TIME2, 0, 0, None),
    (rd.C_TIME2, 1, 0, None),
    (rd.C_TIME2, 6, 0, None),
    (rd.C_YEAR, 0, 0, None),
    (rd.C_ENUM, 1, 0, ("", "a", "b")),
    (rd.C_ENUM, 2, 0, None),
    (rd.C_SET, 1, 0, ("x", "y", "z")),
    (rd.C_SET, 8, 0, tuple(f"m{i}" for i in range(64))),
    (rd.C_BIT, 1, 1, None),
    (rd.C_BIT, 9, 2, None),
    (rd.C_BIT, 64, 8, None),
    (rd.C_JSON, 4, 0, bytes.hex),
]


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", [tuple((type(v).__name__, repr(v)) for v in row) for row in fn(*args)])
    except Exception as exc:  # the class is what must agree (messages differ)
        return ("error", type(exc).__name__)


def both(buf: bytes, bitmaps: tuple[bytes, ...], specs: list[rd.Spec]) -> Any:
    args = (buf, 0, len(buf), bitmaps, tuple(specs))
    ours, reference = outcome(c_decode, *args), outcome(rd.py_decode_rows, *args)
    assert ours == reference
    return ours


def test_known_values() -> None:
    specs = [
        (rd.C_LONG, 0, 0, None),
        (rd.C_DECIMAL, 6, 2, None),
        (rd.C_STRING, 1, 0, "utf-8"),
        (rd.C_TIME2, 0, 0, None),
    ]
    # decimal(6,2) -12.5: 4 integral digits (2 bytes) + 2 fractional (1 byte), sign bit flipped, negative inverted
    dec = bytearray((1250 // 100).to_bytes(2, "big") + (50).to_bytes(1, "big"))
    dec[0] |= 0x80
    dec = bytearray(b ^ 0xFF for b in dec)
    time2 = (0x800000 + ((1 << 12) | (2 << 6) | 3)).to_bytes(3, "big")  # 01:02:03
    body = b"\x00" + struct.pack("<i", -7) + bytes(dec) + b"\x03h\xc3\xa9" + time2
    body += b"\x0e" + struct.pack("<i", 9)  # second row: columns 1-3 NULL
    rows = c_decode(body, 0, len(body), (b"\x0f",), tuple(specs))
    assert rows == [
        (-7, Decimal("-12.50"), "hé", datetime.timedelta(hours=1, minutes=2, seconds=3)),
        (9, None, None, None),
    ]
    assert rows == rd.py_decode_rows(body, 0, len(body), (b"\x0f",), tuple(specs))


def test_absent_columns_and_two_images() -> None:
    specs = [(rd.C_TINY, 0, 0, None), (rd.C_TINY, 0, 0, None), (rd.C_TINY, 0, 0, None)]
    body = b"\x00\x01\x03" + b"\x00\x04"  # before: columns 0 and 2; after: column 1 only
    got = both(body, (b"\x05", b"\x02"), specs)
    assert got == (
        "ok",
        [
            (("int", "1"), ("NoneType", "None"), ("int", "3")),
            (("NoneType", "None"), ("int", "4"), ("NoneType", "None")),
        ],
    )


def test_empty_value_of_a_codec_python_lacks_is_an_empty_str() -> None:
    assert both(b"\x00\x00", (b"\x01",), [(rd.C_STRING, 1, 1, None)]) == ("ok", [(("str", "''"),)])
    assert both(b"\x00\x00", (b"\x01",), [(rd.C_STRING, 1, 0, None)]) == ("ok", [(("bytes", "b''"),)])


def test_truncation_is_a_value_error() -> None:
    for spec in SPECS:
        good = bytes([0]) + b"\x01" * 64
        for cut in range(1, 12):
            got = both(good[:cut], (b"\x01",), [spec])
            assert got[0] == "ok" or got[1] in ("ValueError", "UnicodeDecodeError", "InvalidOperation", "IndexError")


@pytest.mark.parametrize("seed", range(40))
def test_random_bodies_agree(seed: int) -> None:
    rng = random.Random(seed)
    specs = rng.sample(SPECS, rng.randint(1, 8))
    nbytes = (len(specs) + 7) // 8
    bitmaps = tuple(bytes(rng.randint(0, 255) for _ in range(nbytes)) for _ in range(rng.randint(1, 2)))
    body = bytearray()
    for _ in range(rng.randint(1, 5)):
        body += bytes(rng.choice([0, 0, 255, rng.randint(0, 255)]) for _ in range(rng.randint(1, 40)))
    both(bytes(body), bitmaps, specs)


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        c_decode(b"\x00\x01", 0, 5, (b"\x01",), ((rd.C_TINY, 0, 0, None),))
    with pytest.raises(ValueError):
        c_decode(b"\x00\x01", 0, 2, (b"",), ((rd.C_TINY, 0, 0, None),))
    with pytest.raises(ValueError):
        c_decode(b"\x00\x01", 0, 2, (b"\x01",), ((99, 0, 0, None),))


def test_unsupported_column_types_fall_back() -> None:
    class Col:
        type = 7  # the pre-5.6 TIMESTAMP

    assert rd.column_specs([Col()]) is None


def test_row_changes() -> None:
    specs = ((rd.C_TINY, 0, 0, None), (rd.C_STRING, 1, 0, "utf-8"))
    table = TableId("db", "t")
    body = b"\x00\x01\x01a" + b"\x02\x02"  # (1, 'a'), then (2, NULL)
    loaders = (lambda v: v * 10, None)
    for slot, op in ((0, Op.INSERT), (1, Op.DELETE)):
        change: tuple[Any, ...] = (RowChange, op, table, frozenset(), slot)
        got = c_decode(body, 0, len(body), (b"\x03",), specs, loaders, change)
        assert got == rd.py_decode_rows(body, 0, len(body), (b"\x03",), specs, loaders, change)
        rows = [(10, "a"), (20, None)]
        want = [RowChange(op, table, None, r) if slot == 0 else RowChange(op, table, r, None) for r in rows]
        assert got == want
        assert all(type(c) is RowChange and c.unchanged == frozenset() for c in got)
    change = (RowChange, Op.UPDATE, table, frozenset(), 2)
    got = c_decode(body, 0, len(body), (b"\x03", b"\x03"), specs, None, change)
    assert got == [RowChange(Op.UPDATE, table, (1, "a"), (2, None))]
    assert got == rd.py_decode_rows(body, 0, len(body), (b"\x03", b"\x03"), specs, None, change)
    with pytest.raises(ValueError):  # two images go with slot 2 only
        c_decode(body, 0, len(body), (b"\x03",), specs, None, change)
    with pytest.raises(ValueError):  # a before image without its after image
        c_decode(body[:4], 0, 4, (b"\x03", b"\x03"), specs, None, change)
