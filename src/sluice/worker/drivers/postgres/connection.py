"""libpq connection parameters from a ``PostgresConnection`` (shared by the source and the sink).

The spec's ``ssl_mode`` names are Sluice's; libpq has its own. TLS material given inline in the spec (PEM text)
is written to private files, because libpq only reads certificates and keys from files: each distinct PEM once per
process (named by a hash of its content, mode 0600), in the worker's spill directory (``SLUICE_SPILL_DIR``, the
pod's writable volume; the root filesystem is read-only) or else tempfile's default directory, and removed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from sluice.errors import ConfigError
from sluice.worker.spill import spill_dir

__all__ = ["SSL_MODES", "conninfo_kwargs", "lock_timeout_ms"]

#: spec value -> libpq sslmode
SSL_MODES: dict[str, str] = {
    "Disable": "disable",
    "Prefer": "prefer",
    "Require": "require",
    "VerifyCa": "verify-ca",
    "VerifyFull": "verify-full",
}

#: sha256 of an inline PEM -> the file holding it (written once per process)
_pem_files: dict[str, Path] = {}
_pem_lock = threading.Lock()


def _cleanup() -> None:
    """Remove every PEM file this process wrote (at exit; tests call it too)."""
    with _pem_lock:
        for path in _pem_files.values():
            with contextlib.suppress(OSError):
                path.unlink()
        _pem_files.clear()


atexit.register(_cleanup)


def _pem_or_path(value: str, what: str) -> str:
    """A value that looks like PEM text becomes a 0600 file, one per distinct content; anything else is a path."""
    if "-----BEGIN" not in value:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()
    with _pem_lock:
        known = _pem_files.get(digest)
        if known is not None and known.exists():
            return str(known)
        fd, name = tempfile.mkstemp(prefix=f"sluice-{what}-{digest[:12]}-", suffix=".pem", dir=spill_dir())
        with os.fdopen(fd, "w") as fh:  # mkstemp creates the file with mode 0600
            fh.write(value)
        _pem_files[digest] = Path(name)
        return name


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "get_secret_value"):
        return str(value.get_secret_value())
    return str(value)


#: Session settings that make text values unambiguous between servers (the sink parses what the source printed).
PORTABLE_SETTINGS = ("DateStyle=ISO", "IntervalStyle=postgres", "TimeZone=UTC", "extra_float_digits=3")


def conninfo_kwargs(conn: Any, *, application_name: str = "sluice", portable: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``psycopg.connect`` / ``psycopg2.connect`` (never logged: they hold the password)."""
    mode = _enum_value(conn.ssl_mode)
    if mode not in SSL_MODES:
        raise ConfigError(f"unknown ssl_mode {mode!r}; use one of {', '.join(SSL_MODES)}")
    kwargs: dict[str, Any] = {
        "host": conn.host,
        "port": int(conn.port),
        "user": conn.user,
        "dbname": conn.database,
        "sslmode": SSL_MODES[mode],
        "application_name": application_name,
        "connect_timeout": 10,
        # Dead peers are noticed within ~30 s instead of the kernel's two hours.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    password = _secret(conn.password)
    if password is None and getattr(conn, "password_secret_ref", None) is not None:
        raise ConfigError(
            "password_secret_ref was not resolved to a value",
            fix="Mount the Secret for the worker (SLUICE_SECRETS_DIR/<name>/<key>) or give the password inline.",
        )
    if password is not None:
        kwargs["password"] = password
    if conn.ssl_root_cert:
        kwargs["sslrootcert"] = _pem_or_path(conn.ssl_root_cert, "root")
    if conn.ssl_cert:
        kwargs["sslcert"] = _pem_or_path(conn.ssl_cert, "cert")
    key = _secret(conn.ssl_key)
    if key:
        kwargs["sslkey"] = _pem_or_path(key, "key")
    if mode in ("VerifyCa", "VerifyFull") and not conn.ssl_root_cert:
        raise ConfigError(
            f"ssl_mode {mode} needs ssl_root_cert to verify the server",
            fix="Set connection.ssl_root_cert to the CA certificate (PEM) or use ssl_mode Require.",
        )
    options = [f"-c {setting}" for setting in PORTABLE_SETTINGS] if portable else []
    lock_ms = lock_timeout_ms(conn)
    if lock_ms:
        options.append(f"-c lock_timeout={lock_ms}")
    if options:
        kwargs["options"] = " ".join(options)
    return kwargs


def lock_timeout_ms(conn: Any) -> int:
    """``operation_lock_timeout_seconds`` as milliseconds (0 = off)."""
    return int(getattr(conn, "operation_lock_timeout_seconds", 0) or 0) * 1000


def pool_size(conn: Any, default: int) -> int:
    """``max_pool_size`` (0 = the worker's default)."""
    size = int(getattr(conn, "max_pool_size", 0) or 0)
    return size if size > 0 else default
