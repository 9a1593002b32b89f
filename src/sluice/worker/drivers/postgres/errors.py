"""PostgreSQL errors (psycopg 3 and psycopg2) as Sluice errors, classified by SQLSTATE, never by message text.

The server translates its messages (``lc_messages``), so the text says nothing reliable; the SQLSTATE (five
characters, the same in every language) does. :func:`classify` looks the code up, exact code first, then its
two-character class; each row says the Sluice class (and so whether it is retried) and a one-line fix that names
the field to change (``{side}.postgres.connection.*``, side being "source" or "sink")::

    SQLSTATE / class           meaning                                     class            retried
    ─────────────────────────  ──────────────────────────────────────────  ───────────────  ───────
    28P01                      password refused                            ConfigError      no
    28000                      pg_hba.conf refuses the login (no entry,    ConfigError      no
                               TLS required, client certificate, role)
    3D000                      database does not exist                     ConfigError      no
    42501                      privilege missing                           ConfigError      no
    42P01 42703 3F000          table / column / schema vanished            ConfigError      no
    42704  raised in slot.c    replication slot does not exist             ReplicationError no  (ReIntialize)
    42704  in pg_publication.c publication does not exist                  SourceSetupError no
    42704  otherwise           type, role, ... does not exist              ConfigError      no
    55006                      object in use (slot active elsewhere)       TransientError   yes
    23505  on pg_catalog       two sessions created one catalog object     TransientError   yes
    08xxx                      connection exception                        TransientError   yes
    53xxx                      insufficient resources (connections, ...)   TransientError   yes
    57xxx                      operator intervention (57P01 admin          TransientError   yes
                               shutdown, 57P03 starting up, 57014 cancel)
    40xxx                      serialization failure, deadlock             TransientError   yes
    any other code             the server refused a statement              ReplicationError no
    ─────────────────────────  ──────────────────────────────────────────  ───────────────  ───────
    no SQLSTATE: libpq TLS     certificate verify failed, host name,       ConfigError      no
      client messages          no SSL on the server, unreadable cert/key
    no SQLSTATE: otherwise     connection refused, timeout, host unknown,  TransientError   yes
                               connection lost
    not a driver error         a bug or an unexpected state                ReplicationError no

42704 ("undefined object") covers every kind of named object, so for it the row is chosen by the server's own
source file (the ``F`` diagnostic field, a file name that is never translated): ``slot.c`` raises it for a missing
replication slot. A 23505 is a catalog race when the violated index is in ``pg_catalog`` (the ``s`` field).

Errors without a SQLSTATE. libpq hands out a SQLSTATE only with a query result, so a *failed connection attempt*
has none — not even when the server answered (wrong password, unknown database, pg_hba.conf): both drivers give
just libpq's text. :func:`classify` therefore dials once more with libpq's error verbosity set to ``sqlstate``,
which makes libpq write the server's code in place of its translated message (``... failed: FATAL:  28P01``),
and classifies that code like any other. When no server answers at all (refused, timeout, unknown host, broken
TLS set-up), the failure happened on the client, where no SQLSTATE exists: only there a few of libpq's own fixed
client messages are matched — those of a TLS set-up that retrying cannot cure — and everything else is a
connection failure, retried.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import re
import selectors
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import psycopg2
import psycopg2.extras
from psycopg import pq
from psycopg.conninfo import make_conninfo

from sluice.errors import ConfigError, ReplicationError, SluiceError, SourceSetupError, TransientError

__all__ = ["SIDES", "classify", "sqlstate_of"]

#: the values of ``side``: which connection of the connector the error came from
SIDES = ("source", "sink")


@dataclass(frozen=True)
class _Rule:
    error: type[SluiceError]
    #: one line; ``{conn}`` becomes ``<side>.postgres.connection``, ``{side}`` the side
    fix: str


_VANISHED = {
    "source": "A table, column or schema was dropped or renamed at the source while the connector used it: "
    "restore it, or remove it from source.postgres.catalog, then restart the connector.",
    "sink": "A table, column or schema the connector writes was dropped or renamed in the sink: restore it, or "
    "re-initialize the connector (command ReIntialize) so that it creates and copies it again.",
}

_PRIVILEGE = {
    "source": "Grant {conn}.user the privilege the message names (SELECT on the replicated tables, USAGE on their "
    "schemas, ownership of the publication), then restart the connector.",
    "sink": "Grant {conn}.user the privilege the message names (CREATE on the sink database and target schema, "
    "ownership of the target tables), then restart the connector.",
}

_HBA = (
    "The server's pg_hba.conf refuses {conn}.user for this database and client address (or the role does not "
    "exist, or its entry wants TLS or a client certificate): ask the server's administrator for a pg_hba.conf "
    "entry, or set {conn}.ssl_mode, ssl_cert and ssl_key as the entry requires."
)
_HBA_NO_TLS = (
    "The server's pg_hba.conf refuses this login without TLS: set {conn}.ssl_mode to Require, VerifyCa or "
    "VerifyFull (or ask the server's administrator for a pg_hba.conf entry for {conn}.user without TLS)."
)

_SLOT_MISSING = _Rule(
    ReplicationError,
    "The connector's replication slot was dropped, so the changes since its last position cannot be read any "
    "more: re-initialize the connector (command ReIntialize, or annotation sluice.dev/command=ReIntialize) to take "
    "a new snapshot.",
)
_PUBLICATION_MISSING = _Rule(
    SourceSetupError,
    "The publication in source.postgres.replication_type.logical_replication.publication_name does not exist: "
    "create it, or leave publication_name unset so that Sluice manages its own, then restart the connector.",
)
_OBJECT_MISSING = _Rule(
    ConfigError,
    "An object the message names (a type, role, publication or replication slot) does not exist on the {side} "
    "server: create it or correct the connector spec, then restart the connector.",
)
_CATALOG_RACE = _Rule(
    TransientError, "Two sessions created the same catalog object at once (workers sharing a database); retried."
)
_REFUSED_STATEMENT = _Rule(
    ReplicationError, "See the worker log for the statement that failed on the {side} server (SQLSTATE above)."
)
_UNREACHABLE = _Rule(
    TransientError,
    "Retried within retry_window_seconds; if it lasts, check that {conn}.host and port are right and the server "
    "is up and reachable from the worker.",
)
_UNEXPECTED = _Rule(ReplicationError, "See the worker log for the statement that failed.")

#: exact SQLSTATEs (side-dependent fixes are resolved in :func:`_rule`)
_BY_CODE: dict[str, _Rule] = {
    "28P01": _Rule(
        ConfigError,
        "The server refused the password of {conn}.user: correct {conn}.password (or the Secret that "
        "password_secret_ref names) or {conn}.user.",
    ),
    "28000": _Rule(ConfigError, _HBA),
    "3D000": _Rule(
        ConfigError, "The database {conn}.database does not exist on that server: create it or correct the field."
    ),
    "55006": _Rule(
        TransientError,
        "Another session holds the object (usually a worker still streaming from this connector's replication "
        "slot); retried until it is free. If it never is, stop the other worker.",
    ),
}

#: SQLSTATE classes (first two characters)
_BY_CLASS: dict[str, _Rule] = {
    "08": _Rule(
        TransientError,
        "The connection to the {side} server broke; retried within retry_window_seconds. If it lasts, check the "
        "network path to {conn}.host.",
    ),
    "53": _Rule(
        TransientError,
        "The {side} server is out of a resource (connections, memory or disk; the message says which): free some "
        "or raise the server's limit. Retried meanwhile.",
    ),
    "57": _Rule(
        TransientError,
        "The {side} server was shut down, restarted or cancelled the statement; retried until it is back.",
    ),
    "40": _Rule(TransientError, "A serialization failure or deadlock with another session; retried."),
}

#: libpq's own, untranslated client messages of TLS set-ups that retrying cannot cure (no SQLSTATE exists for
#: them: the server never answered). Checked in order: first match wins.
_TLS_FIXES: tuple[tuple[str, str], ...] = (
    (
        "certificate verify failed",
        "The server's certificate is not signed by {conn}.ssl_root_cert: set it to the CA that issued the server "
        "certificate (PEM), or use ssl_mode Require to encrypt without verifying.",
    ),
    (
        "does not match host name",
        "ssl_mode VerifyFull checks that {conn}.host is named in the server's certificate: connect by a name the "
        "certificate lists, or use ssl_mode VerifyCa.",
    ),
    (
        "server does not support SSL",
        "The server has TLS turned off: set {conn}.ssl_mode to Prefer or Disable, or enable ssl on the server.",
    ),
    (
        "root certificate file",
        "{conn}.ssl_root_cert names a file the worker cannot read: give the CA certificate inline (PEM) or a "
        "readable path.",
    ),
    (
        "certificate present, but not private key",
        "{conn}.ssl_cert is set without its key: set {conn}.ssl_key (or ssl_key_secret_ref) too.",
    ),
    (
        "private key file",
        "{conn}.ssl_key cannot be used (unreadable, or not the key of ssl_cert): give the PEM key inline or via "
        "ssl_key_secret_ref.",
    ),
    (
        "certificate file",
        "{conn}.ssl_cert names a file the worker cannot read: give the client certificate inline (PEM) or a "
        "readable path.",
    ),
    (
        "alert unknown ca",
        "The server does not trust the client certificate in {conn}.ssl_cert: use one signed by a CA in the "
        "server's ssl_ca_file.",
    ),
    (
        "alert certificate required",
        "The server asks for a client certificate: set {conn}.ssl_cert and ssl_key (the certificate's CN must be "
        "the user name).",
    ),
)

#: transport failures: no server answered, so dialling again to learn a SQLSTATE would only wait once more
_NO_SERVER = ("Connection refused", "timeout expired", "could not translate host name", "No route to host")

#: "FATAL:  28P01" at the end of libpq's message when its verbosity is PQERRORS_SQLSTATE
_VERBOSE_CODE = re.compile(r":\s+([0-9A-Z]{5})\s*$")
_PQERRORS_SQLSTATE = 3
_PROBE_TIMEOUT = 5.0


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE a psycopg 3 (``sqlstate``) or psycopg2 (``pgcode``) error carries, if any."""
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return str(code) if code else None


def classify(exc: BaseException, *, side: str, conninfo: Mapping[str, Any] | None = None) -> SluiceError:
    """The :class:`SluiceError` for ``exc`` raised on the ``side`` ("source" or "sink") connection.

    A :class:`SluiceError` is returned as it is. ``conninfo`` (the keyword arguments the failed connection was
    opened with) is needed only to learn the SQLSTATE of a psycopg2 connection attempt that failed; psycopg 3
    errors of a connection attempt carry their connection parameters themselves. Never puts a secret in a message.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {side!r}")
    if isinstance(exc, SluiceError):
        return exc
    text = _first_line(exc)
    code = sqlstate_of(exc)
    params = _attempt_params(exc, conninfo)
    if code is None and params is not None and not _client_side(text):
        code = _server_sqlstate(params)
    if code is not None:
        rule = _rule(code, exc, side, params)
        return _make(rule, f"{side} PostgreSQL: {text} (SQLSTATE {code})", side)
    if not _is_connection_failure(exc):
        return _make(_UNEXPECTED, text, side)
    for hint, fix in _TLS_FIXES:
        if hint in text:
            return _make(_Rule(ConfigError, fix), f"{side} PostgreSQL: {text}", side)
    return _make(_UNREACHABLE, f"{side} PostgreSQL: {text}", side)


def _make(rule: _Rule, message: str, side: str) -> SluiceError:
    return rule.error(message, fix=rule.fix.format(side=side, conn=f"{side}.postgres.connection"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _diag(exc: BaseException, name: str) -> str | None:
    diag = getattr(exc, "diag", None)
    value = getattr(diag, name, None) if diag is not None else None
    return str(value) if value else None


def _rule(code: str, exc: BaseException, side: str, params: Mapping[str, str] | None) -> _Rule:
    if code in ("42P01", "42703", "3F000"):
        return _Rule(ConfigError, _VANISHED[side])
    if code == "42501":
        return _Rule(ConfigError, _PRIVILEGE[side])
    if code == "42704":
        origin = _diag(exc, "source_file")
        if origin == "slot.c" or (origin is None and _on_replication_cursor(exc)):
            return _SLOT_MISSING
        if origin == "pg_publication.c" and side == "source":
            return _PUBLICATION_MISSING
        return _OBJECT_MISSING
    if code == "23505":
        return _CATALOG_RACE if _diag(exc, "schema_name") == "pg_catalog" else _REFUSED_STATEMENT
    if code == "28000" and params is not None and params.get("sslmode") == "disable":
        return _Rule(ConfigError, _HBA_NO_TLS)
    return _BY_CODE.get(code) or _BY_CLASS.get(code[:2]) or _REFUSED_STATEMENT


def _on_replication_cursor(exc: BaseException) -> bool:
    return isinstance(getattr(exc, "cursor", None), psycopg2.extras.ReplicationCursor)


def _is_connection_failure(exc: BaseException) -> bool:
    """Driver errors without a SQLSTATE: the connection could not be made or was lost (or OS-level I/O)."""
    if isinstance(exc, psycopg.OperationalError | psycopg2.OperationalError | psycopg2.InterfaceError | OSError):
        return True
    # psycopg2's client-side errors of a replication connection that died under it ("no COPY in progress").
    return isinstance(exc, psycopg2.DatabaseError)


def _client_side(text: str) -> bool:
    """libpq's fixed messages for failures where no server answered (so no SQLSTATE can be had)."""
    return any(hint in text for hint in _NO_SERVER) or any(hint in text for hint, _ in _TLS_FIXES)


def _attempt_params(exc: BaseException, conninfo: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The parameters of a failed connection *attempt*, or None when ``exc`` is not one."""
    pgconn = getattr(exc, "pgconn", None)
    if isinstance(exc, psycopg.OperationalError) and pgconn is not None:
        with contextlib.suppress(Exception):
            return {o.keyword.decode(): o.val.decode() for o in pgconn.info if o.val is not None}
        return None
    if isinstance(exc, psycopg2.OperationalError) and getattr(exc, "cursor", None) is None and conninfo:
        return {k: str(v) for k, v in conninfo.items() if isinstance(v, str | int) and not isinstance(v, bool)}
    return None


@functools.cache
def _set_verbosity() -> Any:
    """libpq's ``PQsetErrorVerbosity`` from the very library psycopg uses (None where it cannot be found)."""
    path: str | None = None
    if pq.__impl__ == "binary":
        # psycopg-binary bundles its own libpq; psycopg2-binary may have loaded another one into this process.
        with contextlib.suppress(OSError), Path("/proc/self/maps").open() as maps:
            for line in maps:
                name = line.rsplit(None, 1)[-1]
                if "psycopg_binary" in name and "/libpq" in name:
                    path = name
                    break
    else:
        path = ctypes.util.find_library("pq")
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        if lib.PQlibVersion() != pq.version():
            return None  # another libpq than psycopg's: its PGconn layout may differ
        func = lib.PQsetErrorVerbosity
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_void_p, ctypes.c_int]
    func.restype = ctypes.c_int
    return func


def _server_sqlstate(params: Mapping[str, str]) -> str | None:
    """Dial once more with libpq's error verbosity at ``sqlstate`` and read the code the server refused with.

    None when no server answered, when the attempt now succeeds (the failure was passing), or when libpq's
    ``PQsetErrorVerbosity`` cannot be reached from here.
    """
    set_verbosity = _set_verbosity()
    if set_verbosity is None:
        return None
    probe = dict(params)
    with contextlib.suppress(ValueError):
        probe["connect_timeout"] = str(min(int(probe.get("connect_timeout") or _PROBE_TIMEOUT), int(_PROBE_TIMEOUT)))
    try:
        conn = pq.PGconn.connect_start(make_conninfo(**probe).encode())
    except Exception:
        return None
    try:
        set_verbosity(getattr(conn, "pgconn_ptr", None), _PQERRORS_SQLSTATE)
        deadline = time.monotonic() + _PROBE_TIMEOUT + 1
        status: int = pq.PollingStatus.WRITING
        while conn.status != pq.ConnStatus.BAD:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            event = selectors.EVENT_READ if status == pq.PollingStatus.READING else selectors.EVENT_WRITE
            with selectors.DefaultSelector() as sel:
                sel.register(conn.socket, event)
                sel.select(remaining)
            status = conn.connect_poll()
            if status == pq.PollingStatus.OK:
                return None
            if status == pq.PollingStatus.FAILED:
                break
        found = _VERBOSE_CODE.search(conn.error_message.decode(errors="replace"))
        return found.group(1) if found else None
    except Exception:
        return None
    finally:
        conn.finish()
