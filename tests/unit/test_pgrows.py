"""pgoutput row tuples and row changes: the compiled versions (sluice._pgrows) and the Python references must agree."""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import pytest

from sluice.worker.events import Op, RowChange, TableId
from sluice.worker.sources.postgres import decode
from sluice.worker.sources.postgres.decode import py_row_change, py_tuple_values
from sluice.worker.sources.postgres.pgoutput import PgOutputError

IMPLEMENTATIONS = [pytest.param(py_tuple_values, id="python")]
CHANGES = [pytest.param(py_row_change, id="python")]
if decode.COMPILED:
    IMPLEMENTATIONS.append(pytest.param(decode.tuple_values, id="compiled"))
    CHANGES.append(pytest.param(decode.row_change, id="compiled"))

T = TableId("public", "t")
OPS = (Op.INSERT, Op.UPDATE, Op.DELETE)
NOTHING: frozenset[int] = frozenset()


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
        pytest.param(b"\xff\xff", id="negative column count"),
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


def message(kind: bytes, *parts: tuple[bytes, list[bytes | str | None]]) -> bytes:
    return kind + struct.pack("!I", 16385) + b"".join(marker + wire(values) for marker, values in parts)


@pytest.mark.parametrize("change", CHANGES)
def test_row_changes_of_each_kind(change: Any) -> None:
    pos, load = (0, 1), loaders(2)
    got = change(message(b"I", (b"N", [b"1", "u"])), pos, load, T, RowChange, OPS, NOTHING)
    assert got == RowChange(Op.INSERT, T, None, ((0, b"1"), None), frozenset({1}))
    got = change(message(b"U", (b"K", [b"1", None]), (b"N", [b"2", b"x"])), pos, load, T, RowChange, OPS, NOTHING)
    assert got == RowChange(Op.UPDATE, T, ((0, b"1"), None), ((0, b"2"), (1, b"x")))
    assert got.unchanged is NOTHING
    got = change(message(b"U", (b"N", [b"2", b"x"])), pos, load, T, RowChange, OPS, NOTHING)
    assert got == RowChange(Op.UPDATE, T, None, ((0, b"2"), (1, b"x")))
    got = change(message(b"D", (b"O", [b"3", b"y"])), pos, load, T, RowChange, OPS, NOTHING)
    assert got == RowChange(Op.DELETE, T, ((0, b"3"), (1, b"y")), None)
    with pytest.raises(AttributeError):  # still a frozen dataclass
        got.op = Op.INSERT
    # The compiled version sets the fields as the dataclass's __init__ does, and runs nothing else: a validation
    # hook added to RowChange would be skipped there.
    assert not hasattr(RowChange, "__post_init__")


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"I\0\0", id="header cut short"),
        pytest.param(message(b"I", (b"K", [b"1"])), id="insert without N"),
        pytest.param(message(b"U", (b"K", [b"1"])), id="update without its new tuple"),
        pytest.param(message(b"U", (b"X", [b"1"])), id="update with an unknown marker"),
        pytest.param(message(b"D", (b"N", [b"1"])), id="delete without K or O"),
        pytest.param(message(b"U", (b"O", [b"1"]), (b"N", [b"2"]))[:-1], id="new tuple cut short"),
    ],
)
def test_malformed_row_changes_raise(change: Any, payload: bytes) -> None:
    with pytest.raises((decode.MalformedTuple, PgOutputError)):
        change(payload, (0,), loaders(1), T, RowChange, OPS, NOTHING)


def test_random_row_changes_agree() -> None:
    if not decode.COMPILED:
        pytest.skip("sluice._pgrows is not built")
    rng = random.Random(9)

    def values() -> list[bytes | str | None]:
        return [rng.choice([None, "u", str(rng.randint(0, 99)).encode()]) for _ in range(rng.randint(0, 5))]

    for _ in range(2000):
        kind = rng.choice([b"I", b"U", b"D"])
        parts = {b"I": [(b"N", values())], b"D": [(rng.choice([b"K", b"O"]), values())]}.get(
            kind, [(b"K", values()), (b"N", values())] if rng.random() < 0.5 else [(b"N", values())]
        )
        payload = message(kind, *parts)
        positions = tuple(rng.randint(-1, 5) for _ in range(rng.randint(0, 5)))
        args = (payload, positions, loaders(len(positions)), T, RowChange, OPS, NOTHING)
        assert decode.row_change(*args) == py_row_change(*args)


def test_ci_builds_the_compiled_version() -> None:
    if os.environ.get("CI") != "true":
        pytest.skip("only required where CI installs the package (a C compiler is part of its set-up)")
    assert decode.COMPILED, "sluice._pgrows did not build: `pip install -e .` needs gcc and the Python headers"
