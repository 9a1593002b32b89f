"""pgoutput row tuples as schema values: the compiled ``tuple_values`` and the Python reference must agree."""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import pytest

from sluice.worker.sources.postgres import decode
from sluice.worker.sources.postgres.decode import py_tuple_values
from sluice.worker.sources.postgres.pgoutput import PgOutputError

IMPLEMENTATIONS = [pytest.param(py_tuple_values, id="python")]
if decode.COMPILED:
    IMPLEMENTATIONS.append(pytest.param(decode.tuple_values, id="compiled"))


def wire(values: list[bytes | str | None]) -> bytes:
    """A TupleData: None is NULL, "u" an unchanged TOAST value, "b:..." a binary value."""
    out = [struct.pack("!h", len(values))]
    for v in values:
        if v is None:
            out.append(b"n")
        elif v == "u":
            out.append(b"u")
        elif isinstance(v, str):
            data = v[2:].encode()
            out.append(b"b" + struct.pack("!i", len(data)) + data)
        else:
            out.append(b"t" + struct.pack("!i", len(v)) + v)
    return b"".join(out)


def loaders(n: int) -> tuple[Any, ...]:
    # Distinct loaders per column, so a value loaded by the wrong column's loader shows.
    return tuple((lambda raw, i=i: (i, bytes(raw))) for i in range(n))


@pytest.mark.parametrize("values", IMPLEMENTATIONS)
def test_values_in_schema_order_with_nulls_absent_and_unchanged(values: Any) -> None:
    buf = b"PREFIX" + wire([b"42", None, "u", b"", "b:\x00\x01"]) + b"TAIL"
    # schema: tuple columns 4, 0, (absent), 2, 1, 3, and one beyond the tuple
    got, unchanged, end = values(buf, 6, (4, 0, -1, 2, 1, 3, 9), loaders(7))
    assert got == ((0, b"\x00\x01"), (1, b"42"), None, None, None, (5, b""), None)
    assert unchanged == (3,)
    assert buf[end:] == b"TAIL"
    got, unchanged, end = values(wire([b"1"]), 0, (0,), loaders(1))
    assert (got, unchanged) == (((0, b"1"),), None)
    assert values(wire([]), 0, (), ()) == ((), None, 2)


@pytest.mark.parametrize("values", IMPLEMENTATIONS)
def test_wide_tuples(values: Any) -> None:
    # More columns than the compiled version keeps on its stack.
    raw: list[bytes | str | None] = [str(i).encode() if i % 7 else None for i in range(300)]
    got, unchanged, _ = values(wire(raw), 0, tuple(range(299, -1, -1)), loaders(300))
    assert got == tuple(None if v is None else (i, v) for i, v in enumerate(reversed(raw)))
    assert unchanged is None


def test_random_tuples_agree() -> None:
    if not decode.COMPILED:
        pytest.skip("sluice._pgrows is not built")
    rng = random.Random(5)
    for _ in range(3000):
        n = rng.randint(0, 9)
        raw: list[bytes | str | None] = [
            rng.choice([None, "u", bytes(rng.randrange(256) for _ in range(rng.randint(0, 6)))]) for _ in range(n)
        ]
        positions = tuple(rng.randint(-1, n + 1) for _ in range(rng.randint(0, 9)))
        buf = wire(raw)
        args = (buf, 0, positions, loaders(len(positions)))
        assert decode.tuple_values(*args) == py_tuple_values(*args)


@pytest.mark.parametrize("values", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "buf",
    [
        pytest.param(wire([b"abc"])[:-1], id="value cut short"),
        pytest.param(wire([b"abc", b"d"])[:-6], id="length cut short"),
        pytest.param(wire([None])[:-1], id="kind missing"),
        pytest.param(b"\0", id="column count cut short"),
        pytest.param(b"\0\1x", id="unknown kind"),
        pytest.param(b"\0\1t\xff\xff\xff\xff", id="negative length"),
    ],
)
def test_malformed_tuples_raise_before_any_loader_runs(values: Any, buf: bytes) -> None:
    called: list[bytes] = []
    with pytest.raises((decode.MalformedTuple, PgOutputError)):
        values(buf, 0, (0, 1), (called.append, called.append))
    assert called == []


@pytest.mark.parametrize("values", IMPLEMENTATIONS)
def test_a_loader_error_propagates_unchanged(values: Any) -> None:
    class RefusedError(Exception):
        pass

    def refuse(raw: bytes) -> None:
        raise RefusedError(raw)

    with pytest.raises(RefusedError):
        values(wire([b"x"]), 0, (0,), (refuse,))


def test_ci_builds_the_compiled_version() -> None:
    if os.environ.get("CI") != "true":
        pytest.skip("only required where CI installs the package (a C compiler is part of its set-up)")
    assert decode.COMPILED, "sluice._pgrows did not build: `pip install -e .` needs gcc and the Python headers"
