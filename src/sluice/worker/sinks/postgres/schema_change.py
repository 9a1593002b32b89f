"""Source schema changes applied to a PostgreSQL sink table under ``migration_strategy``, existing rows included.

:func:`apply_schema_change` compares the sink table with the source's new shape, refuses the kinds of change the
strategy does not allow (before changing anything), runs the DDL and keeps ``SinkTable.columns`` in step.

Rows that were in the table before an added column hold what the source gave them
(:class:`~sluice.worker.events.ExistingValues`):

- a constant (``DEFAULT 7``, ``DEFAULT now()``): ``ADD COLUMN c type DEFAULT '<value>'::type`` and then ``DROP
  DEFAULT`` — every existing sink row gets the value without a table rewrite, and later inserts carry their own;
- per row (``DEFAULT random()``, ``clock_timestamp()``): the column is added empty and the caller copies the
  source's current values with :func:`backfill` (an UPDATE by key; rows the sink does not have are never
  inserted), then calls :func:`finish_backfill`. The stream converges: any later change of those rows still
  follows. Keyless tables cannot be matched row by row: their existing rows keep NULL there (a warning says so).

Default strategy (``migration_strategy`` omitted): additive changes (Add) are applied, as PeerDB, Fivetran and
Debezium's JDBC sink do; Drop, Datatype and Nullability stop the connector until allowed. ``disable_all: true``
refuses everything; an explicit ``allowed`` list means exactly that list. Order (a column moved) needs nothing in
PostgreSQL: the sink addresses columns by name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from sluice.errors import ErrorDetail, SchemaChangeError
from sluice.models import MigrationStrategy
from sluice.worker.drivers.postgres.catalog import SourceColumn
from sluice.worker.events import Column, ExistingValues, SchemaChange, TableSchema, TypeKind
from sluice.worker.sinks.postgres.ddl import SinkTable

__all__ = [
    "DEFAULT_ALLOWED",
    "SchemaStep",
    "allowed_kinds",
    "apply_schema_change",
    "backfill",
    "canonical_type",
    "column_type_sql",
    "finish_backfill",
    "plan_schema_change",
]

log = logging.getLogger(__name__)

#: what a sink follows when ``migration_strategy`` is omitted: additive changes only
DEFAULT_ALLOWED = frozenset({"Add"})

_FIELD = ["sink", "postgres", "migration_strategy", "allowed"]
_STAGE = sql.Identifier("pg_temp", "sluice_backfill")


def allowed_kinds(strategy: MigrationStrategy | None) -> set[str]:
    """The kinds of change applied automatically: ``DEFAULT_ALLOWED`` when omitted, nothing under ``disable_all``."""
    if strategy is None:
        return set(DEFAULT_ALLOWED)
    if strategy.disable_all:
        return set()
    return {str(getattr(k, "value", k)) for k in strategy.allowed}


@dataclass(frozen=True)
class SchemaStep:
    """One difference between the sink table and the source: ``kind`` is a ``migration_strategy`` kind."""

    kind: str  # Add | Drop | Datatype | Nullability
    column: str
    description: str


def column_type_sql(col: Column) -> str:
    """The PostgreSQL type for ``col``: the source's own spelling when the source is PostgreSQL."""
    t = col.type
    if t.dialect == "postgres" and t.native:
        return t.native
    return _logical_type_sql(t.kind, t)


def _logical_type_sql(kind: TypeKind, t: Any) -> str:
    if kind == TypeKind.INT:
        return (
            {8: "smallint", 16: "smallint", 32: "integer"}.get(t.bits or 64, "bigint")
            if not t.unsigned
            else ({8: "smallint", 16: "integer", 32: "bigint"}.get(t.bits or 64, "numeric(20,0)"))
        )
    if kind == TypeKind.DECIMAL:
        if t.precision is not None and 0 < t.precision <= 1000:
            return f"numeric({t.precision},{t.scale or 0})"
        return "numeric"
    if kind == TypeKind.FLOAT:
        return "real" if t.bits == 32 else "double precision"
    if kind == TypeKind.TEXT:
        return f"character varying({t.length})" if t.length else "text"
    if kind == TypeKind.ARRAY and t.element is not None:
        return _logical_type_sql(t.element.kind, t.element) + "[]"
    return {
        TypeKind.BOOL: "boolean",
        TypeKind.BYTES: "bytea",
        TypeKind.DATE: "date",
        TypeKind.TIME: "time without time zone",
        TypeKind.TIMETZ: "time with time zone",
        TypeKind.TIMESTAMP: "timestamp without time zone",
        TypeKind.TIMESTAMPTZ: "timestamp with time zone",
        TypeKind.INTERVAL: "interval",
        TypeKind.UUID: "uuid",
        TypeKind.JSON: "jsonb",
    }.get(kind, "text")


#: short names PostgreSQL accepts, spelled as ``format_type`` (which describes sink columns) spells them
_CANONICAL = {
    "int": "integer",
    "int4": "integer",
    "int2": "smallint",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "varchar": "character varying",
    "char": "character",
    "decimal": "numeric",
    "time": "time without time zone",
    "timetz": "time with time zone",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
}


_TYPE_RE = re.compile(r"^(?P<base>[^()]+?)\s*\((?P<mods>[^)]*)\)\s*(?P<tail>[^()]*)$")


def canonical_type(type_sql: str) -> str:
    """``type_sql`` as ``format_type`` writes it (``varchar(5)`` -> ``character varying(5)``), for comparing."""
    text = " ".join(type_sql.split())
    if text.endswith("[]"):
        return canonical_type(text[:-2]) + "[]"
    if "(" not in text:
        return _CANONICAL.get(text.lower(), text)
    m = _TYPE_RE.match(text)
    if m is None:
        return text
    name = " ".join(p for p in (m["base"], m["tail"]) if p)
    name = _CANONICAL.get(name.lower(), name)
    mods = m["mods"].replace(" ", "")
    if name == "numeric" and "," not in mods:
        mods += ",0"
    head, _, tail = name.partition(" ")
    if head in ("time", "timestamp") and tail:  # the precision goes after the first word
        return f"{head}({mods}) {tail}"
    return f"{name}({mods})"


def _nullness(not_null: bool) -> str:
    return "NOT NULL" if not_null else "NULL"


def plan_schema_change(table: SinkTable, schema: TableSchema) -> list[SchemaStep]:
    """The differences between ``table`` as the sink has it and the source's ``schema`` (empty: nothing to do)."""
    have = {c.name: c for c in table.columns}
    steps: list[SchemaStep] = []
    for col in schema.columns:
        type_sql = column_type_sql(col)
        old = have.get(col.name)
        if old is None:
            steps.append(SchemaStep("Add", col.name, f"column {col.name} {type_sql} added"))
            continue
        if canonical_type(old.type_sql) != canonical_type(type_sql):
            steps.append(SchemaStep("Datatype", col.name, f"column {col.name} type {old.type_sql} -> {type_sql}"))
        not_null = not col.nullable
        if not_null != old.not_null and col.name not in table.key:
            steps.append(
                SchemaStep(
                    "Nullability",
                    col.name,
                    f"column {col.name} {_nullness(not_null)} (was {_nullness(old.not_null)})",
                )
            )
    wanted = {c.name for c in schema.columns}
    steps += [SchemaStep("Drop", name, f"column {name} dropped") for name in have if name not in wanted]
    return steps


def _refusal(
    table: SinkTable, source_label: str, refused: list[SchemaStep], strategy: MigrationStrategy | None
) -> SchemaChangeError:
    what = "; ".join(s.description for s in refused)
    kinds = ", ".join(sorted({s.kind for s in refused}))
    if strategy is None:
        how = (
            f"migration_strategy is not set, so only {', '.join(sorted(DEFAULT_ALLOWED))} is applied: set "
            f"sink.postgres.migration_strategy.allowed to include {kinds}"
        )
    elif strategy.disable_all:
        how = f"Set sink.postgres.migration_strategy.disable_all to false and add {kinds} to its allowed list"
    else:
        how = f"Add {kinds} to sink.postgres.migration_strategy.allowed"
    return SchemaChangeError(
        f"source table {source_label} changed: {what}; migration_strategy does not allow {kinds}",
        fix=f"{how}, or change sink table {table.label} by hand to match, then restart the connector; nothing "
        "after the last applied transaction is lost.",
        details=[ErrorDetail(list(_FIELD), what)],
    )


def apply_schema_change(
    conn: psycopg.Connection[Any], table: SinkTable, change: SchemaChange, strategy: MigrationStrategy | None
) -> None:
    """Bring the sink table to ``change.schema`` in the open transaction of ``conn``, or raise SchemaChangeError.

    Added columns get ``change.existing[c].constant`` on every existing row; ``per_row`` columns are left for
    :func:`backfill` + :func:`finish_backfill`. Nothing is changed when any step is refused.
    """
    steps = plan_schema_change(table, change.schema)
    if not steps:
        return
    allowed = allowed_kinds(strategy)
    refused = [s for s in steps if s.kind not in allowed]
    if refused:
        raise _refusal(table, change.schema.table.label, refused, strategy)
    wanted = {c.name: c for c in change.schema.columns}
    have = {c.name: c for c in table.columns}
    t = table.ident
    not_null: dict[str, bool] = {c.name: c.not_null for c in table.columns}
    for step in steps:
        log.info("applying schema change to %s: %s", table.label, step.description)
        ident = sql.Identifier(step.column)
        if step.kind == "Drop":
            conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(t, ident))
            continue
        col = wanted[step.column]
        type_sql = sql.SQL(column_type_sql(col))
        if step.kind == "Add":
            not_null[col.name] = _add_column(conn, table, col, change.existing.get(col.name, ExistingValues()))
        elif step.kind == "Datatype":
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}::{}").format(
                    t, ident, type_sql, ident, type_sql
                )
            )
        elif step.kind == "Nullability":
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} {} NOT NULL").format(
                    t, ident, sql.SQL("DROP" if col.nullable else "SET")
                )
            )
            not_null[col.name] = not col.nullable
    columns: list[SourceColumn] = []
    for col in change.schema.columns:
        type_text = column_type_sql(col)
        old = have.get(col.name)
        nn = not_null[col.name]
        same_type = old is not None and canonical_type(old.type_sql) == canonical_type(type_text)
        if old is not None and same_type and old.not_null == nn:
            columns.append(old)
        elif old is not None and same_type:
            columns.append(SourceColumn(old.name, old.type_sql, old.type_oid, nn, old.binary_safe, old.text_compare))
        else:
            # New or retyped: no source OID known here (the caller may fill it in); text compare is always safe.
            columns.append(SourceColumn(col.name, type_text, 0, nn, False, True))
    table.columns = columns


def _add_column(conn: psycopg.Connection[Any], table: SinkTable, col: Column, existing: ExistingValues) -> bool:
    """Add ``col``, existing rows holding ``existing.constant``; whether the sink column is NOT NULL now."""
    t, ident, type_sql = table.ident, sql.Identifier(col.name), sql.SQL(column_type_sql(col))
    if existing.constant is not None and not existing.per_row:
        # A default fills every existing row (no rewrite for a constant); dropping it keeps those values.
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}{} DEFAULT {}::{}").format(
                t,
                ident,
                type_sql,
                sql.SQL("" if col.nullable else " NOT NULL"),
                sql.Literal(str(existing.constant)),
                type_sql,
            )
        )
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(t, ident))
        return not col.nullable
    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(t, ident, type_sql))
    if existing.per_row:
        if not table.key:
            log.warning(
                "column %s added to keyless table %s has a volatile default: rows that existed before keep NULL in "
                "the sink (they cannot be matched to the source's rows without a key; give the table a primary key "
                "to avoid this)",
                col.name,
                table.label,
            )
        return False  # NOT NULL, if wanted, once the values are there (finish_backfill)
    return False if col.nullable else _set_not_null(conn, table, col.name)


def _set_not_null(conn: psycopg.Connection[Any], table: SinkTable, column: str) -> bool:
    """SET NOT NULL unless a sink row holds NULL (e.g. a row the source deleted, its delete still to come)."""
    try:
        with conn.transaction():  # a savepoint inside the open sink transaction
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(table.ident, sql.Identifier(column))
            )
    except psycopg.errors.NotNullViolation:
        log.warning(
            "column %s of %s stays nullable in the sink: some sink rows hold NULL there (rows without a source "
            "value, e.g. deleted at the source since)",
            column,
            table.label,
        )
        return False
    return True


def backfill(
    conn: psycopg.Connection[Any], table: SinkTable, columns: list[str], rows: Iterable[Sequence[str | None]]
) -> int:
    """Set ``columns`` of existing sink rows by key from ``rows`` = ``(key..., columns...)`` in PostgreSQL text form.

    Set-based: the rows are copied into a temporary table, then one UPDATE joins it by key. Rows the sink does not
    have are left out (never inserted). Returns the number of sink rows updated; keyless tables: 0, with a warning.
    """
    if not table.key:
        log.warning("%s has no key: existing rows cannot be matched to fill %s", table.label, ", ".join(columns))
        return 0
    batch = list(rows)
    if not batch or not columns:
        return 0
    types = {c.name: c.type_sql for c in table.columns}
    names = list(table.key) + list(columns)
    slots = [sql.Identifier(f"v{i}") for i in range(len(names))]
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_STAGE))
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} ({})").format(
            sql.Identifier("sluice_backfill"), sql.SQL(", ").join(sql.SQL("{} text").format(s) for s in slots)
        )
    )
    with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(_STAGE)) as copy:
        for row in batch:
            copy.write_row(row)
    nkey = len(table.key)
    sets = [
        sql.SQL("{} = s.{}::{}").format(sql.Identifier(c), slots[nkey + i], sql.SQL(types[c]))
        for i, c in enumerate(columns)
    ]
    match = [
        sql.SQL("t.{} = s.{}::{}").format(sql.Identifier(k), slots[i], sql.SQL(types[k]))
        for i, k in enumerate(table.key)
    ]
    cur = conn.execute(
        sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE {}").format(
            table.ident, sql.SQL(", ").join(sets), _STAGE, sql.SQL(" AND ").join(match)
        )
    )
    conn.execute(sql.SQL("DROP TABLE {}").format(_STAGE))
    return cur.rowcount


def finish_backfill(conn: psycopg.Connection[Any], table: SinkTable, change: SchemaChange) -> None:
    """After :func:`backfill`: added columns the source has NOT NULL become NOT NULL in the sink too.

    Sink rows the backfill found no source row for are rows the source deleted (or re-keyed) after the change;
    their delete is still to come in the stream. They get a placeholder (a value another row holds) so the
    constraint can be set now; the stream removes them.
    """
    wanted = {c.name: c for c in change.schema.columns}
    columns = []
    for c in table.columns:
        src = wanted.get(c.name)
        ev = change.existing.get(c.name)
        if src is not None and ev is not None and ev.per_row and not src.nullable and not c.not_null:
            ident = sql.Identifier(c.name)
            cur = conn.execute(
                sql.SQL(
                    "UPDATE {t} SET {c} = (SELECT {c} FROM {t} WHERE {c} IS NOT NULL LIMIT 1) WHERE {c} IS NULL"
                ).format(t=table.ident, c=ident)
            )
            if cur.rowcount:
                log.info(
                    "%s: %d rows the source no longer has hold a placeholder in %s until their delete arrives",
                    table.label,
                    cur.rowcount,
                    c.name,
                )
            if _set_not_null(conn, table, c.name):
                c = SourceColumn(c.name, c.type_sql, c.type_oid, True, c.binary_safe, c.text_compare)
        columns.append(c)
    table.columns = columns
