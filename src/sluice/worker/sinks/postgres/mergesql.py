"""SQL pieces both merge paths share: the staged merge (``apply.py``) and the one-statement small batch (``small.py``).

Each piece names the target as ``t`` and the changes as ``s`` (a staging table or a ``VALUES`` list) with the
sink's columns plus ``_op`` and ``_u`` (the unchanged-TOAST mask), so the two paths cannot drift apart.
"""

from __future__ import annotations

from psycopg import sql

from sluice.worker.sinks.postgres.ddl import SinkTable

__all__ = ["key_match", "masked_sets", "on_conflict", "shape"]


def shape(table: SinkTable) -> tuple[object, ...]:
    """What SQL built for ``table`` depends on. A schema change edits a table's columns in place, so a cache of
    statements must be keyed by this, not by the object alone."""
    return (id(table), table.schema, table.name, tuple((c.name, c.type_sql) for c in table.columns), tuple(table.key))


def key_match(table: SinkTable) -> sql.Composed:
    """``t.k = s.k AND ...`` over the key columns."""
    return sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in table.key)


def on_conflict(table: SinkTable) -> sql.Composed:
    """``ON CONFLICT (key) DO UPDATE SET`` every other column (``DO NOTHING`` when the key is every column)."""
    ident = sql.Identifier
    non_key = [c for c in table.column_names if c not in table.key]
    action: sql.Composable = (
        sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=ident(c)) for c in non_key)
        )
        if non_key
        else sql.SQL("DO NOTHING")
    )
    return sql.SQL("ON CONFLICT ({}) {}").format(sql.SQL(", ").join(map(ident, table.key)), action)


def masked_sets(table: SinkTable) -> sql.Composed | None:
    """The SET list of a masked update: a column whose ``_u`` character is '1' keeps the sink's value."""
    cols = table.column_names
    non_key = [c for c in cols if c not in table.key]
    if not non_key:
        return None
    return sql.SQL(", ").join(
        sql.SQL("{c} = CASE WHEN substr(s._u, {i}, 1) = '1' THEN t.{c} ELSE s.{c} END").format(
            c=sql.Identifier(c), i=sql.Literal(cols.index(c) + 1)
        )
        for c in non_key
    )
