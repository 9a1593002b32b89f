"""Text COPY lines straight from pgoutput tuples: the compiled and the Python version must agree byte for byte."""

from __future__ import annotations

import os
import random
import struct

import pytest

from sluice.worker.fastpath import copytext
from sluice.worker.fastpath.copytext import decode_copy_line, encode_copy_row, py_tuple_copy_line
from sluice.worker.sources.postgres.pgoutput import decode_tuple

IMPLEMENTATIONS = [pytest.param(py_tuple_copy_line, id="python")]
if copytext.SPEEDUPS:
    IMPLEMENTATIONS.append(pytest.param(copytext.tuple_copy_line, id="compiled"))


def wire(values: list[bytes | None], prefix: bytes = b"I\0\0\0\7N") -> bytes:
    out = [prefix, struct.pack("!h", len(values))]
    for v in values:
        out.append(b"n" if v is None else b"t" + struct.pack("!i", len(v)) + v)
    return b"".join(out)


@pytest.mark.parametrize("line", IMPLEMENTATIONS)
def test_plain_values_nulls_and_escapes(line: object) -> None:
    buf = wire([b"42", None, b"a\tb\\c\nd\re", b"", b"x" * 84])
    assert line(buf, 6) == b"42\t\\N\ta\\tb\\\\c\\nd\\re\t\t" + b"x" * 84 + b"\n"  # type: ignore[operator]
    assert line(wire([]), 6) == b"\n"  # type: ignore[operator]


@pytest.mark.parametrize("line", IMPLEMENTATIONS)
def test_random_tuples_match_decode_then_encode(line: object) -> None:
    rng = random.Random(7)
    alphabet = b"ab\\\t\n\r\x01\xc3\xa9 0"
    for _ in range(3000):
        values: list[bytes | None] = [
            None if rng.random() < 0.2 else bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
            for _ in range(rng.randint(0, 6))
        ]
        buf = wire(values)
        expected = encode_copy_row(decode_tuple(buf, 6)) + b"\n"
        assert line(buf, 6) == expected  # type: ignore[operator]


@pytest.mark.parametrize("line", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "buf",
    [
        pytest.param(wire([b"abc"])[:-1], id="value cut short"),
        pytest.param(wire([b"abc", b"d"])[:-6], id="length cut short"),
        pytest.param(wire([None])[:-1], id="kind missing"),
        pytest.param(b"I\0\0\0\7N\0", id="column count cut short"),
        pytest.param(b"I\0\0\0\7N\0\1u", id="unchanged toast"),
        pytest.param(b"I\0\0\0\7N\0\1b\0\0\0\1x", id="binary value"),
        pytest.param(b"I\0\0\0\7N\0\1t\xff\xff\xff\xff", id="negative length"),
        pytest.param(b"I\0\0\0\7N\xff\xff", id="negative column count"),
    ],
)
def test_malformed_tuples_raise_value_error(line: object, buf: bytes) -> None:
    with pytest.raises(ValueError, match=r"truncated|cannot become|negative"):
        line(buf, 6)  # type: ignore[operator]


def test_ci_builds_the_compiled_version() -> None:
    # The benchmark figures we publish come from the compiled path; a CI run that silently lost it must say so.
    if os.environ.get("CI") != "true":
        pytest.skip("only required where CI installs the package (a C compiler is part of its set-up)")
    assert copytext.SPEEDUPS, "sluice._speedups did not build: `pip install -e .` needs gcc and the Python headers"


def test_decode_copy_line_inverts_encode() -> None:
    rng = random.Random(11)
    alphabet = b"ab\\\t\n\rN \xc3\xa9"
    for _ in range(2000):
        values: list[bytes | None] = [
            None if rng.random() < 0.2 else bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
            for _ in range(rng.randint(1, 5))
        ]
        assert decode_copy_line(encode_copy_row(values) + b"\n") == values
    assert decode_copy_line(b"\\\\N\t\\N") == [b"\\N", None]  # a literal backslash-N is not NULL
