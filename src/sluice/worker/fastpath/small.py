"""Small batches applied as one statement with parameters: no staging table, one round trip.

Through staging, a single-row transaction costs four round trips to the sink (COPY start, COPY data, merge, empty
the stage), and on an otherwise idle sink each one wakes a sleeping backend: that was most of its commit→visible
latency. A batch of up to :data:`SMALL_BATCH` changes goes instead as a ``VALUES`` list inside one statement whose
data-modifying CTEs do what the staged merge does — delete, masked update (unchanged TOAST), upsert. The batch is
folded, so each key appears once; the CTEs share one snapshot and never touch the same row twice. A run of
inserts that came first (see ``apply.py``) is one ``INSERT ... VALUES ... ON CONFLICT`` before it: the masked
update of a key inserted in the same batch must see that row.

Statement texts depend only on the table's shape and the number of rows, so psycopg prepares the frequent ones.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from sluice.worker.fastpath.copytext import decode_copy_line
from sluice.worker.sinks.postgres.ddl import SinkTable
from sluice.worker.sinks.postgres.mergesql import key_match, masked_sets, on_conflict, shape
from sluice.worker.sources.postgres.pgoutput import UNCHANGED, TupleValue

__all__ = ["SMALL_BATCH", "apply_small"]

#: batches of at most this many changes take this path
SMALL_BATCH = 32

_CACHE: dict[tuple[object, ...], sql.Composed] = {}


def _text(v: TupleValue) -> str | None:
    return v.decode() if isinstance(v, bytes) else None


def _values(table: SinkTable, rows: int, extra: int) -> sql.Composed:
    casts: list[sql.Composable] = [sql.SQL("%s::" + c.type_sql) for c in table.columns]
    one = sql.SQL("({})").format(sql.SQL(", ").join(casts + [sql.SQL("%s::text")] * extra))
    return sql.SQL(", ").join([one] * rows)


def _insert_statement(table: SinkTable, rows: int) -> sql.Composed:
    key = (*shape(table), "insert", rows, 0)
    stmt = _CACHE.get(key)
    if stmt is None:
        stmt = sql.SQL("INSERT INTO {t} ({c}) VALUES {v} {a}").format(
            t=table.ident,
            c=sql.SQL(", ").join(map(sql.Identifier, table.column_names)),
            v=_values(table, rows, 0),
            a=on_conflict(table),
        )
        _CACHE[key] = stmt
    return stmt


_DELETE, _MASKED, _UPSERT = 1, 2, 4


def _merge_statement(table: SinkTable, rows: int, parts: int) -> sql.Composed:
    key = (*shape(table), "merge", rows, parts)
    stmt = _CACHE.get(key)
    if stmt is not None:
        return stmt
    ident = sql.Identifier
    cols = table.column_names
    col_list = sql.SQL(", ").join(map(ident, cols))
    match = key_match(table)
    ctes = [sql.SQL("s ({c}, _op, _u) AS (VALUES {v})").format(c=col_list, v=_values(table, rows, 2))]
    if parts & _DELETE:
        ctes.append(
            sql.SQL("d AS (DELETE FROM {t} t USING s WHERE s._op = 'D' AND {m})").format(t=table.ident, m=match)
        )
    sets = masked_sets(table)
    if parts & _MASKED and sets is not None:
        ctes.append(
            sql.SQL("m AS (UPDATE {t} t SET {s} FROM s WHERE s._op <> 'D' AND s._u IS NOT NULL AND {m})").format(
                t=table.ident, s=sets, m=match
            )
        )
    if parts & _UPSERT:
        ctes.append(
            sql.SQL("u AS (INSERT INTO {t} ({c}) SELECT {c} FROM s WHERE s._op <> 'D' AND s._u IS NULL {a})").format(
                t=table.ident, c=col_list, a=on_conflict(table)
            )
        )
    stmt = sql.SQL("WITH {} SELECT 1").format(sql.SQL(", ").join(ctes))
    _CACHE[key] = stmt
    return stmt


def apply_small(conn: psycopg.Connection[Any], table: SinkTable, direct: list[bytes], keyed: Any) -> None:
    """Apply a keyed table's few pending changes: ``direct`` COPY lines of leading inserts, then the fold."""
    if direct:
        params: list[str | None] = []
        for line in direct:
            params.extend(v.decode() if v is not None else None for v in decode_copy_line(line))
        conn.execute(_insert_statement(table, len(direct)), params)
    if not keyed:
        return
    parts = 0
    params = []
    for op, row in keyed.values():
        if op == b"D":
            parts |= _DELETE
            mask = None
        elif UNCHANGED in row:
            parts |= _MASKED
            mask = "".join("1" if v is UNCHANGED else "0" for v in row)
        else:
            parts |= _UPSERT
            mask = None
        params.extend(_text(v) for v in row)
        params.append(op.decode())
        params.append(mask)
    conn.execute(_merge_statement(table, len(keyed), parts), params)
