"""How a MySQL table is cut into primary-key ranges: ``batch_rows`` at most, smaller so every reader gets one."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from sluice.worker.events import Column, ColumnType, TableId, TableSchema, TypeKind
from sluice.worker.sources.mysql.snapshot import MIN_SPLIT_ROWS, plan_table


class KeysCursor:
    """Answers plan_table's two queries for a table whose key is 1..rows (and whose row estimate is given)."""

    def __init__(self, rows: int, estimate: int) -> None:
        self.rows, self.estimate = rows, estimate
        self.row: tuple[Any, ...] | None = None
        self.walks = 0

    def execute(self, query: str, params: Any = None) -> None:
        if "information_schema.TABLES" in query:
            self.row = (self.estimate,)
            return
        self.walks += 1
        offset = int(re.search(r"OFFSET (\d+)", query).group(1))  # type: ignore[union-attr]
        after = int(params[0]) if params else 0
        key = after + offset + 1
        self.row = (key,) if key <= self.rows else None

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.row


SCHEMA = TableSchema(TableId("db", "t"), (Column("id", ColumnType(TypeKind.INT, bits=64)),), ("id",))


def sizes(rows: int, chunks: list[Any]) -> list[int]:
    bounds = [0, *[c.bounds["hi"][0] for c in chunks if c.bounds["hi"] is not None], rows]
    return [hi - lo for lo, hi in itertools.pairwise(bounds)]


@pytest.mark.parametrize(
    ("rows", "estimate", "batch", "readers", "want"),
    [
        pytest.param(300_000, 300_000, 200_000, 4, [75_000] * 4, id="split for four readers"),
        pytest.param(300_000, 300_000, 200_000, 1, [200_000, 100_000], id="one reader: batch_rows"),
        pytest.param(300_000, 0, 200_000, 4, [200_000, 100_000], id="no estimate: batch_rows"),
        pytest.param(1_000_000, 1_000_000, 200_000, 4, [200_000] * 5, id="big table: batch_rows"),
        pytest.param(30_000, 30_000, 200_000, 4, [MIN_SPLIT_ROWS] * 3, id="not below the floor"),
        pytest.param(1000, 1000, 300, 4, [300, 300, 300, 100], id="small batches untouched"),
    ],
)
def test_ranges(rows: int, estimate: int, batch: int, readers: int, want: list[int]) -> None:
    cur = KeysCursor(rows, estimate)
    chunks = plan_table(cur, "db", SCHEMA, batch, readers)
    got = sizes(rows, chunks)
    if got and got[-1] == 0:  # a last open range past the last boundary, empty here
        got = got[:-1]
    assert got == want
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].bounds["lo"] is None and chunks[-1].bounds["hi"] is None
