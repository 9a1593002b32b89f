"""Checks before replication starts, each failure with what to do about it.

:func:`source_checks` runs every check and returns them all (the REST validate endpoint and
:meth:`PostgresSource.checks <sluice.worker.sources.postgres.source.PostgresSource.checks>` show them, passed or
not); :func:`preflight` raises one :class:`SourceSetupError` naming every failed one, so a user fixes them in one
round instead of one restart per problem. There is one implementation of each check: this module.
"""

from __future__ import annotations

from typing import Any

import psycopg

from sluice.errors import ErrorDetail, SourceSetupError
from sluice.worker.sources.base import Check
from sluice.worker.sources.postgres.tables import SourceTable

__all__ = ["preflight", "raise_failed", "source_checks"]

_LOC = ("source", "postgres")


def source_checks(
    conn: psycopg.Connection[Any],
    *,
    logical: bool,
    slot_name: str,
    publication_name: str | None,
    tables: list[SourceTable] | None,
) -> list[Check]:
    """Every check of the server, the user and (when given) the tables; passed ones too."""
    checks: list[Check] = []
    if not logical:
        return checks
    version = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
    checks.append(
        Check("server_version", True, f"PostgreSQL {version // 10000}", field=_LOC)
        if version >= 140000
        else Check(
            "server_version",
            False,
            f"PostgreSQL {version // 10000} is too old for streaming logical replication",
            "Use PostgreSQL 14 or newer as the source.",
            _LOC,
        )
    )
    wal_level = conn.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
    checks.append(
        Check("wal_level", True, "wal_level is 'logical'", field=_LOC)
        if wal_level == "logical"
        else Check(
            "wal_level",
            False,
            f"wal_level is {wal_level!r}, logical replication needs 'logical'",
            "Run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (on RDS/Cloud SQL set the "
            "logical decoding parameter of the instance).",
            _LOC,
        )
    )
    max_slots, used_slots, ours = conn.execute(
        "SELECT current_setting('max_replication_slots')::int, count(*), "
        "count(*) FILTER (WHERE slot_name = %s) FROM pg_replication_slots",
        (slot_name,),
    ).fetchone()  # type: ignore[misc]
    checks.append(
        Check(
            "replication_slots",
            False,
            f"all {max_slots} replication slots are in use",
            "Drop unused slots (SELECT pg_drop_replication_slot(name)) or raise max_replication_slots "
            "and restart PostgreSQL.",
            _LOC,
        )
        if not ours and used_slots >= max_slots
        else Check(
            "replication_slots",
            True,
            f"slot {slot_name} exists" if ours else f"{used_slots} of {max_slots} replication slots in use",
            field=_LOC,
        )
    )
    max_senders, senders = conn.execute(
        "SELECT current_setting('max_wal_senders')::int, count(*) FROM pg_stat_replication"
    ).fetchone()  # type: ignore[misc]
    checks.append(
        Check(
            "wal_senders",
            False,
            f"all {max_senders} WAL senders are busy",
            "Raise max_wal_senders and restart PostgreSQL, or stop another replication client.",
            _LOC,
        )
        if senders >= max_senders
        else Check("wal_senders", True, f"{senders} of {max_senders} WAL senders busy", field=_LOC)
    )
    can_replicate = conn.execute(
        "SELECT rolreplication OR rolsuper OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'rds_replication' "
        "AND pg_has_role(current_user, r.oid, 'MEMBER')) FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    user = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    user_loc = (*_LOC, "connection", "user")
    checks.append(
        Check("replication_privilege", True, f"user {user!r} may replicate", field=user_loc)
        if can_replicate and can_replicate[0]
        else Check(
            "replication_privilege",
            False,
            f"user {user!r} lacks the REPLICATION attribute",
            f'Run ALTER ROLE "{user}" WITH REPLICATION; (on RDS: GRANT rds_replication TO "{user}").',
            user_loc,
        )
    )
    if publication_name is not None:
        pub_loc = (*_LOC, "replication_type", "logical_replication", "publication_name")
        exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication_name,)).fetchone()
        checks.append(
            Check("publication", True, f"publication {publication_name!r} exists", field=pub_loc)
            if exists is not None
            else Check(
                "publication",
                False,
                f"publication {publication_name!r} does not exist in the source database",
                f'Create it (CREATE PUBLICATION "{publication_name}" FOR TABLE ...) or omit '
                "publication_name to let Sluice create its own.",
                pub_loc,
            )
        )
    if tables is not None:
        missing = [t for t in tables if not t.key and t.replica_identity != "f"]
        checks.append(
            Check(
                "replica_identity",
                False,
                f"{len(missing)} table(s) have neither a primary key nor a replica identity, so their updates "
                f"and deletes cannot be replicated: {', '.join(t.qualified for t in missing[:20])}",
                "Add a primary key, or run ALTER TABLE <table> REPLICA IDENTITY FULL; for each, or exclude "
                "them in the catalog.",
                (*_LOC, "catalog"),
            )
            if missing
            else Check("replica_identity", True, f"all {len(tables)} table(s) have a key or replica identity")
        )
    return checks


def raise_failed(checks: list[Check]) -> None:
    """One :class:`SourceSetupError` naming every failed check and its fix; nothing when all passed."""
    failed = [c for c in checks if not c.ok]
    if not failed:
        return
    problems = [ErrorDetail(list(c.field), c.message, c.fix) for c in failed]
    raise SourceSetupError(
        f"the source is not ready for replication: {'; '.join(p.msg for p in problems)}",
        fix=" ".join(p.fix for p in problems),
        details=problems,
    )


def preflight(
    conn: psycopg.Connection[Any],
    *,
    logical: bool,
    slot_name: str,
    publication_name: str | None,
    tables: list[SourceTable],
) -> None:
    """Raise :class:`SourceSetupError` naming every failed check of :func:`source_checks`."""
    raise_failed(
        source_checks(conn, logical=logical, slot_name=slot_name, publication_name=publication_name, tables=tables)
    )
