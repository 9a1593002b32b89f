"""Checks before replication starts, each failure with what to do about it.

All problems are collected and raised together as one :class:`SourceSetupError`, so a user fixes them in one
round instead of one restart per problem.
"""

from __future__ import annotations

from typing import Any

import psycopg

from sluice.errors import ErrorDetail, SourceSetupError
from sluice.worker.sources.postgres.tables import SourceTable

__all__ = ["preflight"]


def preflight(
    conn: psycopg.Connection[Any],
    *,
    logical: bool,
    slot_name: str,
    publication_name: str | None,
    tables: list[SourceTable],
) -> None:
    problems: list[ErrorDetail] = []
    loc: list[str | int] = ["source", "postgres"]
    version = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
    if logical:
        if version < 140000:
            problems.append(
                ErrorDetail(
                    loc,
                    f"PostgreSQL {version // 10000} is too old for streaming logical replication",
                    "Use PostgreSQL 14 or newer as the source.",
                )
            )
        wal_level = conn.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
        if wal_level != "logical":
            problems.append(
                ErrorDetail(
                    loc,
                    f"wal_level is {wal_level!r}, logical replication needs 'logical'",
                    "Run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (on RDS/Cloud SQL set the "
                    "logical decoding parameter of the instance).",
                )
            )
        max_slots, used_slots, ours = conn.execute(
            "SELECT current_setting('max_replication_slots')::int, count(*), "
            "count(*) FILTER (WHERE slot_name = %s) FROM pg_replication_slots",
            (slot_name,),
        ).fetchone()  # type: ignore[misc]
        if not ours and used_slots >= max_slots:
            problems.append(
                ErrorDetail(
                    loc,
                    f"all {max_slots} replication slots are in use",
                    "Drop unused slots (SELECT pg_drop_replication_slot(name)) or raise max_replication_slots "
                    "and restart PostgreSQL.",
                )
            )
        max_senders, senders = conn.execute(
            "SELECT current_setting('max_wal_senders')::int, count(*) FROM pg_stat_replication"
        ).fetchone()  # type: ignore[misc]
        if senders >= max_senders:
            problems.append(
                ErrorDetail(
                    loc,
                    f"all {max_senders} WAL senders are busy",
                    "Raise max_wal_senders and restart PostgreSQL, or stop another replication client.",
                )
            )
        can_replicate = conn.execute(
            "SELECT rolreplication OR rolsuper OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'rds_replication' "
            "AND pg_has_role(current_user, r.oid, 'MEMBER')) FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        if not (can_replicate and can_replicate[0]):
            user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
            problems.append(
                ErrorDetail(
                    [*loc, "connection", "user"],
                    f"user {user!r} lacks the REPLICATION attribute",
                    f'Run ALTER ROLE "{user}" WITH REPLICATION; (on RDS: GRANT rds_replication TO "{user}").',
                )
            )
        if publication_name is not None:
            exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication_name,)).fetchone()
            if exists is None:
                problems.append(
                    ErrorDetail(
                        [*loc, "replication_type", "logical_replication", "publication_name"],
                        f"publication {publication_name!r} does not exist in the source database",
                        f'Create it (CREATE PUBLICATION "{publication_name}" FOR TABLE ...) or omit '
                        "publication_name to let Sluice create its own.",
                    )
                )
        missing = [t for t in tables if not t.key and t.replica_identity != "f"]
        if missing:
            names = ", ".join(t.qualified for t in missing[:20])
            problems.append(
                ErrorDetail(
                    [*loc, "catalog"],
                    f"{len(missing)} table(s) have neither a primary key nor a replica identity, so their updates "
                    f"and deletes cannot be replicated: {names}",
                    "Add a primary key, or run ALTER TABLE <table> REPLICA IDENTITY FULL; for each, or exclude "
                    "them in the catalog.",
                )
            )
    if problems:
        summary = "; ".join(p.msg for p in problems)
        raise SourceSetupError(
            f"the source is not ready for replication: {summary}",
            fix=" ".join(p.fix for p in problems),
            details=problems,
        )
