"""What rows that existed before an ``ALTER TABLE ... ADD COLUMN`` hold in the new column, read from the source.

pgoutput announces a changed table with a Relation message but sends no row for the rows that were already there,
although PostgreSQL gave each of them a value: the default evaluated once (``DEFAULT 7``, ``DEFAULT now()``) or
once per row (``DEFAULT random()``, ``clock_timestamp()``, which rewrite the table). A sink that only adds the
column would hold NULL where the source does not. :func:`existing_values` tells the sink which case it is:

- ``pg_attribute.atthasmissing``: the rows hold the one "missing value" PostgreSQL stored at ``ADD COLUMN``
  (``attmissingval``): :class:`ExistingValues` ``constant`` = its text;
- a default but no missing value: the default was volatile (or the table was rewritten since, which materialises
  the values): ``per_row`` — the values are read by key with :func:`backfill_rows`;
- neither: the rows hold NULL (``constant`` None).

Values are PostgreSQL's **text** form (``str``, None for NULL), read with ``DateStyle = ISO``, ``IntervalStyle =
postgres`` and ``extra_float_digits = 3``, so a PostgreSQL sink casts them back to the column's type losslessly
(``'<text>'::type``), whatever either server's own settings are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from sluice.worker.events import ExistingValues

__all__ = ["backfill_rows", "existing_values"]

log = logging.getLogger(__name__)

#: output settings that make text values portable between servers (read back by any DateStyle/locale)
_PORTABLE_TEXT = (
    "SET LOCAL DateStyle = ISO",
    "SET LOCAL IntervalStyle = postgres",
    "SET LOCAL extra_float_digits = 3",
)

_COLUMNS = """
SELECT a.attname, a.atthasmissing, d.adbin IS NOT NULL
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY(%s)
"""

# attmissingval is a one-element array of the column's type (anyarray); its text form parsed as text[] gives the
# element's own text form, also for array, composite and enum columns.
_MISSING = """
SELECT (a.attmissingval::text::text[])[1]
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s AND a.atthasmissing
"""


def existing_values(
    conn: psycopg.Connection[Any], schema: str, table: str, added: list[str]
) -> dict[str, ExistingValues]:
    """For each added column of ``schema.table``: what the rows that were there before hold in it.

    A column that no longer exists at the source (dropped again since) is reported as ``constant`` None: a later
    Relation message drops it at the sink.
    """
    if not added:
        return {}
    with conn.transaction():
        for stmt in _PORTABLE_TEXT:
            conn.execute(stmt)
        rows = conn.execute(_COLUMNS, (schema, table, list(added))).fetchall()
        found = {name: (bool(missing), bool(has_default)) for name, missing, has_default in rows}
        out: dict[str, ExistingValues] = {}
        for name in added:
            missing, has_default = found.get(name, (False, False))
            if missing:
                value = _missing_value(conn, schema, table, name)
                out[name] = ExistingValues(per_row=True) if value is _UNREADABLE else ExistingValues(constant=value)
            elif has_default:
                out[name] = ExistingValues(per_row=True)
            else:
                out[name] = ExistingValues(constant=None)
    return out


_UNREADABLE = object()


def _missing_value(conn: psycopg.Connection[Any], schema: str, table: str, column: str) -> Any:
    """The stored missing value as text; ``_UNREADABLE`` when its array text does not parse as text[]."""
    try:
        with conn.transaction():  # a savepoint: a parse error leaves the outer transaction usable
            row = conn.execute(_MISSING, (schema, table, column)).fetchone()
    except psycopg.DataError:
        # Types with another array delimiter (box uses ';'): the rows' own values are read instead.
        log.info("missing value of %s.%s.%s is not readable as text; reading it row by row", schema, table, column)
        return _UNREADABLE
    return None if row is None else row[0]


def backfill_rows(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    key: list[str],
    columns: list[str],
    batch_rows: int,
) -> Iterator[list[tuple[str | None, ...]]]:
    """Every current row of ``schema.table`` as ``(key..., columns...)`` in text form, ``batch_rows`` at a time.

    Read through a server-side cursor in one source transaction (one consistent view, memory bounded by the batch).
    A column in ``columns`` that the source no longer has is read as NULL. Needs a key: keyless tables cannot be
    matched row by row and yield nothing.
    """
    if not key:
        return
    with conn.transaction():
        for stmt in _PORTABLE_TEXT:
            conn.execute(stmt)
        present = {r[0] for r in conn.execute(_COLUMNS, (schema, table, list(columns))).fetchall()}
        exprs: list[sql.Composable] = [sql.SQL("{}::text").format(sql.Identifier(k)) for k in key]
        exprs += [sql.SQL("{}::text").format(sql.Identifier(c)) if c in present else sql.SQL("NULL") for c in columns]
        query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(exprs), sql.Identifier(schema, table))
        with conn.cursor(name="sluice_backfill") as cur:
            cur.itersize = max(1, batch_rows)
            cur.execute(query)
            while True:
                batch = cur.fetchmany(max(1, batch_rows))
                if not batch:
                    break
                yield [tuple(r) for r in batch]
