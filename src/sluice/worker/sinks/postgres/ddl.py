"""Faithful sink DDL: the target schema, the source's enums and domains, and tables with the source's types and key.

Types are copied as the source's ``format_type`` text (``numeric(12,2)``, ``timestamp with time zone``,
``public.mood[]``...), so a binary ``COPY`` from the source loads into the sink unchanged. User types are created
under their source schema name (created if missing); tables go to ``target_schema`` or the source table's schema.
Foreign keys are not copied on purpose: changes are applied table by table, so they would only get in the way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from sluice.worker.drivers.postgres.catalog import SourceColumn, SourceTable, UserType

__all__ = ["SinkTable", "ensure_key", "ensure_schema", "ensure_table", "ensure_types", "sink_columns"]


@dataclass
class SinkTable:
    """A replicated table as the sink sees it; ``source`` keeps the source's view for mapping changes."""

    schema: str
    name: str
    columns: list[SourceColumn]
    key: list[str]
    source: SourceTable

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"


def ensure_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def ensure_types(conn: psycopg.Connection[Any], types: list[UserType]) -> None:
    """Create each enum/domain unless a type of that name exists (then it is trusted to match)."""
    for t in types:
        exists = conn.execute(
            "SELECT 1 FROM pg_type y JOIN pg_namespace n ON n.oid = y.typnamespace WHERE n.nspname = %s "
            "AND y.typname = %s",
            (t.schema, t.name),
        ).fetchone()
        if exists:
            continue
        ensure_schema(conn, t.schema)
        ident = sql.Identifier(t.schema, t.name)
        if t.kind == "e":
            conn.execute(
                sql.SQL("CREATE TYPE {} AS ENUM ({})").format(ident, sql.SQL(", ").join(map(sql.Literal, t.labels)))
            )
        else:
            parts = [sql.SQL("CREATE DOMAIN {} AS ").format(ident), sql.SQL(t.base_sql)]
            if t.not_null:
                parts.append(sql.SQL(" NOT NULL"))
            for check in t.constraints:
                parts.append(sql.SQL(" ") + sql.SQL(check))
            conn.execute(sql.Composed(parts))


def sink_columns(conn: psycopg.Connection[Any], schema: str, name: str) -> dict[str, tuple[str, bool]]:
    """Existing sink columns: name -> (format_type text, not null)."""
    rows = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, name),
    ).fetchall()
    return {r[0]: (r[1], bool(r[2])) for r in rows}


def ensure_table(conn: psycopg.Connection[Any], target_schema: str | None, table: SourceTable) -> SinkTable:
    """Create the sink table when missing; an existing one is used as it is."""
    schema = target_schema or table.schema
    ensure_schema(conn, schema)
    sink = SinkTable(schema=schema, name=table.name, columns=list(table.columns), key=list(table.key), source=table)
    if sink_columns(conn, schema, table.name):
        return sink
    defs = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name),
            sql.SQL(c.type_sql),
            sql.SQL(" NOT NULL" if c.not_null or c.name in sink.key else ""),
        )
        for c in table.columns
    ]
    # No key yet: the snapshot loads faster without index maintenance; ensure_key() adds it afterwards (and
    # before anything that needs it: upserts of a resumed snapshot, the change stream).
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sink.ident, sql.SQL(", ").join(defs)))
    return sink


def ensure_key(conn: psycopg.Connection[Any], table: SinkTable) -> None:
    """Add the primary key unless a primary key or unique index on exactly the key columns exists."""
    if not table.key:
        return
    found = conn.execute(
        "SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass(%s) AND (i.indisprimary OR i.indisunique) "
        "AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a "
        "     WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) = %s::text[]",
        (table.ident.as_string(conn), sorted(table.key)),
    ).fetchone()
    if found is None:
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
                table.ident, sql.SQL(", ").join(map(sql.Identifier, table.key))
            )
        )
