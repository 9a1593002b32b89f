"""Preflight of a MySQL / MariaDB source: every setting and privilege the binlog stream needs, one fix each.

Checked: ``log_bin``, ``binlog_format=ROW``, ``binlog_row_image=FULL``, ``binlog_row_metadata=FULL`` (where the
server has it: MySQL 8.0.14+, MariaDB 10.5+; the stream needs column names in the binlog), GTID mode (MySQL: ON is
used, OFF falls back to file+position; the transitional modes are refused), binlog retention (at least a day, or
no automatic purge), privileges (REPLICATION SLAVE, REPLICATION CLIENT / BINLOG MONITOR, SELECT on the database,
RELOAD for the snapshot's brief global read lock), and that no other replica uses the worker's server id.

Privileges are read from ``SHOW GRANTS`` (direct grants; privileges that arrive only through MySQL 8 roles are not
seen, so grant them directly).
"""

from __future__ import annotations

import re
from typing import Any

from sluice.errors import ErrorDetail, SourceSetupError
from sluice.worker.sources.base import Check

__all__ = ["grants_of", "raise_failed", "server_checks"]

_FIELD = ("source", "mysql", "connection")
#: binlog retention below which a stopped connector soon cannot resume
MIN_RETENTION_S = 24 * 3600


def _var(cur: Any, name: str) -> str | None:
    cur.execute("SHOW GLOBAL VARIABLES LIKE %s", (name,))
    row = cur.fetchone()
    return None if row is None else str(row[1])


_GRANT = re.compile(r"^GRANT (?P<privs>.+?) ON (?P<on>\S+) TO ", re.IGNORECASE)


def grants_of(cur: Any) -> dict[str, set[str]]:
    """``SHOW GRANTS`` as {object (``*.*``, ```db`.*``): privileges (upper case)}."""
    cur.execute("SHOW GRANTS")
    out: dict[str, set[str]] = {}
    for (line,) in cur.fetchall():
        m = _GRANT.match(str(line))
        if m is None:
            continue
        on = m["on"].replace("`", "")
        privs = {p.strip().upper() for p in m["privs"].split(",")}
        out.setdefault(on, set()).update(privs)
    return out


def server_checks(cur: Any, *, mariadb: bool, database: str, server_id: int, needs_reload: bool) -> list[Check]:
    """Every check but the connection's (``cur``: a cursor of an open connection)."""
    out: list[Check] = []

    def add(name: str, ok: bool, message: str, fix: str = "", field: tuple[str, ...] = _FIELD) -> None:
        out.append(Check(name, ok, message, "" if ok else fix, field))

    server = "MariaDB" if mariadb else "MySQL"
    log_bin = (_var(cur, "log_bin") or "OFF").upper()
    add("log_bin", log_bin == "ON", f"log_bin is {log_bin}", f"Start the {server} server with log_bin (--log-bin).")
    fmt = (_var(cur, "binlog_format") or "").upper()
    add(
        "binlog_format",
        fmt == "ROW",
        f"binlog_format is {fmt or 'unknown'}",
        "SET GLOBAL binlog_format = 'ROW' (and binlog_format=ROW in the server's configuration).",
    )
    image = (_var(cur, "binlog_row_image") or "FULL").upper()
    add(
        "binlog_row_image",
        image == "FULL",
        f"binlog_row_image is {image}",
        "SET GLOBAL binlog_row_image = 'FULL' (and in the server's configuration).",
    )
    metadata = _var(cur, "binlog_row_metadata")
    if metadata is None:
        add(
            "binlog_row_metadata",
            False,
            f"this {server} version has no binlog_row_metadata (column names are not in the binlog)",
            "Use MySQL 8.0.14+ or MariaDB 10.5+.",
        )
    else:
        add(
            "binlog_row_metadata",
            metadata.upper() == "FULL",
            f"binlog_row_metadata is {metadata.upper()}",
            "SET GLOBAL binlog_row_metadata = 'FULL' (and in the server's configuration).",
        )
    if mariadb:
        add("gtid", True, "MariaDB GTIDs (domain-server-seq) are used for the position")
    else:
        mode = (_var(cur, "gtid_mode") or "OFF").upper()
        add(
            "gtid_mode",
            mode in ("ON", "OFF"),
            f"gtid_mode is {mode}: " + ("positions are GTID sets" if mode == "ON" else "positions are file+offset"),
            "Finish the GTID transition: SET GLOBAL gtid_mode to ON (recommended) or OFF.",
        )
    seconds = _var(cur, "binlog_expire_logs_seconds")
    days = _var(cur, "expire_logs_days")
    retention = int(float(seconds)) if seconds not in (None, "", "0") else int(float(days or 0)) * 86400
    add(
        "binlog_retention",
        retention == 0 or retention >= MIN_RETENTION_S,
        "binlogs are never purged automatically" if retention == 0 else f"binlogs are purged after {retention} s",
        f"Keep binlogs at least a day so a stopped connector can resume: SET GLOBAL binlog_expire_logs_seconds = "
        f"{7 * 86400}.",
    )
    grants = grants_of(cur)
    global_privs = grants.get("*.*", set())
    db_privs = grants.get(f"{database}.*", set())
    allp = "ALL PRIVILEGES" in global_privs or "ALL" in global_privs

    def has(priv: str, *alts: str) -> bool:
        return allp or any(p in global_privs for p in (priv, *alts))

    user = "the connector's user"
    add(
        "privilege_replication_slave",
        has("REPLICATION SLAVE", "REPLICA"),
        "REPLICATION SLAVE " + ("granted" if has("REPLICATION SLAVE", "REPLICA") else "missing"),
        f"GRANT REPLICATION SLAVE ON *.* TO {user} (it reads the binlog).",
    )
    add(
        "privilege_replication_client",
        has("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"),
        "REPLICATION CLIENT " + ("granted" if has("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER") else "missing"),
        f"GRANT REPLICATION CLIENT ON *.* TO {user} (it reads the binlog position).",
    )
    select_ok = has("SELECT") or "SELECT" in db_privs or "ALL PRIVILEGES" in db_privs
    add(
        "privilege_select",
        select_ok,
        f"SELECT on {database} " + ("granted" if select_ok else "missing"),
        f"GRANT SELECT ON `{database}`.* TO {user} (the snapshot reads the tables).",
    )
    if needs_reload:
        add(
            "privilege_reload",
            has("RELOAD"),
            "RELOAD " + ("granted" if has("RELOAD") else "missing"),
            f"GRANT RELOAD ON *.* TO {user} (the snapshot holds FLUSH TABLES WITH READ LOCK for the moment it "
            "takes to read the binlog position), or set skip_snapshot.",
        )
    cur.execute("SELECT @@server_id")
    own = cur.fetchone()
    clash = own is not None and int(own[0]) == server_id
    for statement in ("SHOW SLAVE HOSTS", "SHOW REPLICAS"):  # MySQL 8.4 knows only the second
        try:
            cur.execute(statement)
        except Exception:  # noqa: S112 (needs REPLICATION SLAVE, reported above)
            continue
        clash = clash or any(int(row[0]) == server_id for row in cur.fetchall())
        break
    add(
        "server_id",
        not clash,
        f"server id {server_id} of this connector is " + ("in use by another server or replica" if clash else "free"),
        "Another replica uses this connector's server id: recreate the connector under another id.",
    )
    return out


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
