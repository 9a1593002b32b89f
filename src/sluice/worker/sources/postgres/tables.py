"""Which source tables replicate, and what they look like (columns with faithful types, keys, user types).

Types are read with ``format_type(atttypid, atttypmod)`` under ``search_path = pg_catalog`` so every user type
comes back schema-qualified (``public.mood``) and the sink can create it under the same name.
"""

from __future__ import annotations

from typing import Any

import psycopg

from sluice.errors import ErrorDetail, SourceSetupError
from sluice.worker.catalog import action, excluded_columns, is_selected
from sluice.worker.drivers.postgres.catalog import FIRST_NORMAL_OID, SourceColumn, SourceTable, UserType

__all__ = [
    "SourceColumn",
    "SourceTable",
    "UserType",
    "discover_tables",
    "excluded_columns",
    "is_selected",
    "load_user_types",
]


_TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident, c.relispartition,
       COALESCE(pn.nspname, n.nspname), COALESCE(pc.relname, c.relname)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class pc ON c.relispartition AND pc.oid = pg_partition_root(c.oid)
LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'sluice')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT c.relpersistence = 't'
ORDER BY n.nspname, c.relname
"""

_COLUMNS_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.attnotnull,
       t.typtype, COALESCE(e.oid, 0), COALESCE(e.typtype, ''),
       EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
               WHERE am.amname = 'btree' AND oc.opcdefault
                 AND oc.opcintype IN (a.atttypid, COALESCE(NULLIF(t.typbasetype, 0), a.atttypid)))
         OR t.typcategory IN ('A', 'E')
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY a.attnum
"""


def _table_columns(conn: psycopg.Connection[Any], oid: int, excluded: set[str]) -> tuple[list[SourceColumn], set[int]]:
    cols: list[SourceColumn] = []
    user_oids: set[int] = set()
    for name, type_sql, type_oid, not_null, typtype, elem_oid, elem_typtype, has_eq in conn.execute(
        _COLUMNS_SQL, (oid,)
    ).fetchall():
        if name in excluded:
            continue
        builtin = type_oid < FIRST_NORMAL_OID and (elem_oid == 0 or elem_oid < FIRST_NORMAL_OID)
        if type_oid >= FIRST_NORMAL_OID:
            user_oids.add(type_oid)
        if elem_oid >= FIRST_NORMAL_OID:
            user_oids.add(elem_oid)
        binary_safe = builtin or (typtype == "e")
        cols.append(
            SourceColumn(
                name=name,
                type_sql=type_sql,
                type_oid=type_oid,
                not_null=bool(not_null),
                binary_safe=binary_safe,
                text_compare=not has_eq,
            )
        )
        del elem_typtype
    return cols, user_oids


def discover_tables(
    conn: psycopg.Connection[Any],
    *,
    catalog: Any,
    partitions_as_root: bool,
    publication_tables: set[tuple[str, str]] | None = None,
) -> list[SourceTable]:
    """The replicated tables, in a stable order. ``publication_tables`` limits them to a user's publication."""
    conn.execute("SET search_path = pg_catalog")
    rows = conn.execute(_TABLES_SQL).fetchall()
    _check_named_tables_exist(catalog, {(r[1], r[2]) for r in rows})
    tables: list[SourceTable] = []
    leaves_of: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for oid, schema, name, relkind, _ident, is_partition, root_schema, root_name in rows:
        if relkind == "r" and is_partition:
            leaves_of.setdefault((root_schema, root_name), []).append((oid, schema, name))
    for oid, schema, name, relkind, ident, is_partition, root_schema, root_name in rows:
        if partitions_as_root:
            if is_partition:
                continue
        elif relkind == "p":
            continue
        selected = is_selected(catalog, schema, name) or (
            is_partition
            and not partitions_as_root
            and is_selected(catalog, root_schema, root_name)
            and catalog is not None
            and _explicitly_named(catalog, root_schema, root_name)
        )
        if not selected:
            continue
        if publication_tables is not None and (schema, name) not in publication_tables:
            continue
        excluded = excluded_columns(catalog, schema, name)
        cols, user_oids = _table_columns(conn, oid, excluded)
        key = _primary_or_identity(conn, oid, ident)
        if any(k not in {c.name for c in cols} for k in key):
            key = []  # a key column was excluded by the catalog: match on all columns instead
        leaves = leaves_of.get((schema, name), []) if relkind == "p" else [(oid, schema, name)]
        tables.append(
            SourceTable(
                oid=oid,
                schema=schema,
                name=name,
                relkind=relkind,
                replica_identity=ident,
                columns=cols,
                key=key,
                leaves=leaves,
                user_type_oids=user_oids,
            )
        )
    return tables


def _check_named_tables_exist(catalog: Any, existing: set[tuple[str, str]]) -> None:
    """Refuse a catalog that includes a table by name which the source does not have.

    Why not skip it silently: a typo in a table name would otherwise give a connector that reports Ready while
    replicating nothing of what the user asked for.
    """
    if catalog is None:
        return
    problems: list[ErrorDetail] = []
    for i, s in enumerate(catalog.schemas):
        for j, t in enumerate(s.tables):
            if action(t.action) == "Include" and (s.name, t.name) not in existing:
                problems.append(
                    ErrorDetail(
                        ["source", "postgres", "catalog", "schemas", i, "tables", j, "name"],
                        f"table {s.name}.{t.name} is included by the catalog but does not exist in the source database",
                        f"Create the table {s.name}.{t.name} in the source, or correct or remove its entry in "
                        "source.postgres.catalog (names are case-sensitive).",
                    )
                )
    if problems:
        raise SourceSetupError(
            "; ".join(p.msg for p in problems), fix=" ".join(p.fix for p in problems), details=problems
        )


def _explicitly_named(catalog: Any, schema: str, table: str) -> bool:
    return any(s.name == schema and any(t.name == table for t in s.tables) for s in catalog.schemas)


def _primary_or_identity(conn: psycopg.Connection[Any], oid: int, ident: str) -> list[str]:
    pk = [
        r[0]
        for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)",
            (oid,),
        ).fetchall()
    ]
    if pk:
        return pk
    if ident == "i":
        return [
            r[0]
            for r in conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisreplident "
                "ORDER BY array_position(i.indkey::int2[], a.attnum)",
                (oid,),
            ).fetchall()
        ]
    return []


def load_user_types(conn: psycopg.Connection[Any], oids: set[int]) -> list[UserType]:
    """Enums and domains the tables use (domains' base types first), for the sink to create."""
    conn.execute("SET search_path = pg_catalog")
    out: dict[int, UserType] = {}
    pending = set(oids)
    while pending:
        oid = pending.pop()
        if oid in out or oid < FIRST_NORMAL_OID:
            continue
        row = conn.execute(
            "SELECT n.nspname, t.typname, t.typtype, t.typbasetype, format_type(t.typbasetype, t.typtypmod), "
            "t.typnotnull, t.typelem, t.typcategory FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE t.oid = %s",
            (oid,),
        ).fetchone()
        if row is None:
            continue
        schema, name, typtype, base, base_sql, notnull, elem, category = row
        if category == "A" and elem:
            pending.add(elem)
            continue
        if typtype == "e":
            labels = tuple(
                r[0]
                for r in conn.execute(
                    "SELECT enumlabel FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder", (oid,)
                ).fetchall()
            )
            out[oid] = UserType(oid=oid, schema=schema, name=name, kind="e", labels=labels)
        elif typtype == "d":
            checks = tuple(
                r[0]
                for r in conn.execute(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contypid = %s AND contype = 'c' "
                    "ORDER BY conname",
                    (oid,),
                ).fetchall()
            )
            out[oid] = UserType(
                oid=oid, schema=schema, name=name, kind="d", base_sql=base_sql, constraints=checks, not_null=notnull
            )
            pending.add(base)
    # Domains over user types need those first: enums before domains, then by oid.
    return sorted(out.values(), key=lambda t: (t.kind != "e", t.oid))
