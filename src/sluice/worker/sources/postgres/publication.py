"""The publication the slot decodes: the user's (``publication_name``) or one Sluice creates and owns.

Sluice's own publication is named ``sluice_<id>`` and lists exactly the selected tables (the ``catalog``); it is
re-pointed at the current selection on every start (``ALTER PUBLICATION ... SET TABLE``), so a changed catalog takes
effect. With ``partitions_as_root`` it publishes via the partition root, so changes arrive under the root's name.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from sluice.errors import SourceSetupError
from sluice.worker.sources.postgres.slot import slot_name_for

__all__ = ["ensure_publication", "publication_name_for", "publication_tables"]


def publication_name_for(connector_id: str) -> str:
    return slot_name_for(connector_id)


def publication_tables(conn: psycopg.Connection[Any], name: str) -> set[tuple[str, str]] | None:
    """Tables of an existing publication (None when it does not exist)."""
    if conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone() is None:
        return None
    rows = conn.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (name,))
    return {(r[0], r[1]) for r in rows.fetchall()}


def ensure_publication(
    conn: psycopg.Connection[Any], name: str, tables: list[tuple[str, str]], *, via_root: bool
) -> None:
    """Create or re-point Sluice's own publication (autocommit connection)."""
    if not tables:
        raise SourceSetupError(
            "no table to replicate: the catalog selects none of the source's tables",
            fix="Check source.postgres.catalog (schema and table names are case-sensitive) and that tables exist.",
        )
    table_list = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)
    options = sql.SQL("WITH (publish_via_partition_root = {})").format(sql.SQL("true" if via_root else "false"))
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
    if exists is None:
        conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {} {}").format(sql.Identifier(name), table_list, options))
    else:
        conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(sql.Identifier(name), table_list))
        conn.execute(
            sql.SQL("ALTER PUBLICATION {} SET (publish_via_partition_root = {})").format(
                sql.Identifier(name), sql.SQL("true" if via_root else "false")
            )
        )
