"""A minimal schema-change applier for the PostgreSQL sink, used until ``schema_change`` exists.

Same signature as ``sluice.worker.sinks.postgres.schema_change.apply_schema_change``: compare the new
:class:`~sluice.worker.events.TableSchema` with the previous one (or, without one, with the sink table's columns)
and run ``ALTER TABLE`` for each difference, refusing kinds that ``migration_strategy.allowed`` does not list:

- Add: ``ADD COLUMN`` (rows that existed get the source's constant value when ``existing`` gives one; per-row
  values arrive later from the source as updates);
- Drop: ``DROP COLUMN``;
- Datatype: ``ALTER COLUMN ... TYPE ... USING col::type``;
- Nullability: ``SET``/``DROP NOT NULL`` (key columns stay NOT NULL);
- Order: PostgreSQL cannot reorder columns; rows are written by column name, so nothing is done.

Without a ``migration_strategy`` only Add is applied; ``disable_all`` refuses every change. Nothing is applied
when any difference is refused, so the table is never left half-changed.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from sluice.errors import SchemaChangeError
from sluice.models.migration import MigrationKind, MigrationStrategy
from sluice.worker.events import Column, SchemaChange
from sluice.worker.sinks.postgres.ddl import SinkTable, ensure_types
from sluice.worker.sinks.postgres.types import resolve_type, user_enums

__all__ = ["allowed_kinds", "apply_schema_change"]

_FIELD = "sink.postgres.migration_strategy.allowed"


def allowed_kinds(strategy: MigrationStrategy | None) -> set[MigrationKind]:
    if strategy is None:
        return {MigrationKind.ADD}
    if strategy.disable_all:
        return set()
    return set(strategy.allowed)


def apply_schema_change(
    conn: psycopg.Connection[Any], table: SinkTable, change: SchemaChange, strategy: MigrationStrategy | None
) -> None:
    """Bring ``table`` to ``change.schema`` in the caller's transaction; SchemaChangeError if a kind is refused."""
    new = {c.name: c for c in change.schema.columns}
    if change.previous is not None:
        old_types: dict[str, Any] = {c.name: c for c in change.previous.columns}
    else:
        old_types = {c.name: None for c in table.columns}
    sink_not_null = {c.name: c.not_null for c in table.columns}
    key = set(change.schema.key)

    steps: list[tuple[MigrationKind, str, sql.Composed, list[Any]]] = []
    ident = table.ident
    for name, col in new.items():
        if name not in old_types:
            steps.extend(_add(conn, table, col, change, key))
            continue
        before = old_types[name]
        if isinstance(before, Column) and before.type != col.type and name in sink_not_null:
            type_sql = _type(conn, col)
            steps.append(
                (
                    MigrationKind.DATATYPE,
                    f"column {name} changes type to {type_sql}",
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}::{}").format(
                        ident, sql.Identifier(name), sql.SQL(type_sql), sql.Identifier(name), sql.SQL(type_sql)
                    ),
                    [],
                )
            )
        want_not_null = not col.nullable or name in key
        if name in sink_not_null and sink_not_null[name] != want_not_null:
            verb = "SET" if want_not_null else "DROP"
            steps.append(
                (
                    MigrationKind.NULLABILITY,
                    f"column {name} becomes {'NOT NULL' if want_not_null else 'nullable'}",
                    sql.SQL("ALTER TABLE {} ALTER COLUMN {} {} NOT NULL").format(
                        ident, sql.Identifier(name), sql.SQL(verb)
                    ),
                    [],
                )
            )
    for name in old_types:
        if name not in new and name in sink_not_null:
            steps.append(
                (
                    MigrationKind.DROP,
                    f"column {name} is dropped",
                    sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(ident, sql.Identifier(name)),
                    [],
                )
            )

    allowed = allowed_kinds(strategy)
    refused = [(kind, what) for kind, what, _, _ in steps if kind not in allowed]
    if refused:
        kinds = sorted({k.value for k, _ in refused})
        raise SchemaChangeError(
            f"{table.label}: "
            + "; ".join(what for _, what in refused)
            + f" ({', '.join(kinds)} not allowed by {_FIELD})",
            fix=f"Add {', '.join(kinds)} to {_FIELD}, or change the sink table {table.label} by hand to match the "
            "source, then restart the connector.",
        )
    for _, _, statement, params in steps:
        conn.execute(statement, params or None)


def _type(conn: psycopg.Connection[Any], col: Column) -> str:
    enums = user_enums(col.type)
    if enums:
        ensure_types(conn, enums)
    return resolve_type(conn, col.type)


def _add(
    conn: psycopg.Connection[Any], table: SinkTable, col: Column, change: SchemaChange, key: set[str]
) -> list[tuple[MigrationKind, str, sql.Composed, list[Any]]]:
    type_sql = _type(conn, col)
    name = sql.Identifier(col.name)
    out: list[tuple[MigrationKind, str, sql.Composed, list[Any]]] = [
        (
            MigrationKind.ADD,
            f"column {col.name} {type_sql} is added",
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(table.ident, name, sql.SQL(type_sql)),
            [],
        )
    ]
    existing = change.existing.get(col.name)
    if existing is not None and not existing.per_row and existing.constant is not None:
        out.append(
            (
                MigrationKind.ADD,
                f"column {col.name} is filled",
                sql.SQL("UPDATE {} SET {} = %s::{}").format(table.ident, name, sql.SQL(type_sql)),
                [existing.constant],
            )
        )
    filled = existing is not None and not existing.per_row and existing.constant is not None
    if (not col.nullable or col.name in key) and filled:
        # Only when every existing row got a value; per-row values arrive later, NULL until then.
        out.append(
            (
                MigrationKind.ADD,
                f"column {col.name} is NOT NULL",
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(table.ident, name),
                [],
            )
        )
    return out
