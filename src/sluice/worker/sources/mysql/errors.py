"""MySQL / MariaDB errors as Sluice errors, by the server's (or the client's) error number, never by message text.

=================================================== ==================== =================================
error numbers                                       class                fix
=================================================== ==================== =================================
1045 access denied (user/password)                  ConfigError          check user and password
1049 unknown database                               ConfigError          check connection.database
1044, 1142, 1143, 1227, 1370 missing privilege      SourceSetupError     GRANT the privilege named
1236 binlog position not readable (purged...)       ReplicationError     re-initialize (new snapshot)
1040, 1053, 1205, 1213, 1317, 1927, 2002, 2003,     TransientError       retried
2006, 2013, 2055, 3024, 4031 connection/locks
anything else from the server                       ReplicationError     see the worker log
=================================================== ==================== =================================
"""

from __future__ import annotations

from typing import Any

import pymysql

from sluice.errors import ConfigError, ReplicationError, SluiceError, SourceSetupError, TransientError

__all__ = ["REINIT_FIX", "classify", "error_number"]

REINIT_FIX = (
    "Re-initialize the connector (ReIntialize command / sluice.dev/command annotation) to take a new snapshot; "
    "keep binlogs longer (binlog_expire_logs_seconds) so a stopped connector can resume."
)

_TRANSIENT = {1040, 1053, 1205, 1213, 1317, 1927, 2002, 2003, 2006, 2013, 2055, 3024, 4031}
_PRIVILEGE = {1044, 1142, 1143, 1227, 1370}
_FIELD = ["source", "mysql", "connection"]


def error_number(exc: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL error (None for anything else)."""
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return int(exc.args[0])
    return None


def classify(exc: BaseException, doing: str = "", conninfo: dict[str, Any] | None = None) -> SluiceError:
    """``exc`` as a Sluice error whose message starts with ``doing`` (never holds the password)."""
    if isinstance(exc, SluiceError):
        return exc
    code = error_number(exc)
    text = str(exc.args[1]) if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) > 1 else str(exc)
    where = f"{conninfo.get('host')}:{conninfo.get('port')}" if conninfo else "the source"
    message = f"{doing}: MySQL error {code}: {text}" if doing else f"MySQL error {code}: {text}"
    if code == 1045:
        return ConfigError(
            message,
            fix=f"Check source.mysql.connection.user and password for {where}.",
        )
    if code == 1049:
        return ConfigError(message, fix="Check source.mysql.connection.database: the database must exist.")
    if code in _PRIVILEGE:
        return SourceSetupError(
            message,
            fix="GRANT the user SELECT on the database and REPLICATION SLAVE, REPLICATION CLIENT and RELOAD "
            "ON *.* (RELOAD only for the snapshot's short global read lock).",
        )
    if code == 1236:
        return ReplicationError(message, fix=REINIT_FIX)
    if code in _TRANSIENT or isinstance(exc, ConnectionError | TimeoutError):
        return TransientError(message, fix=f"Check that the MySQL server {where} is running and reachable.")
    if isinstance(exc, pymysql.err.OperationalError) and code is not None and code >= 2000:
        return TransientError(message, fix=f"Check that the MySQL server {where} is running and reachable.")
    return ReplicationError(message, fix="See the worker log for the statement that failed.")
