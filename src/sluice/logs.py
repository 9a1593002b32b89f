"""Logging set-up shared by every role.

Why one module: pods want one JSON object per line (so a log pipeline can index ``connector`` and ``level``),
people at a terminal want plain text, and every role must agree on both. ``configure()`` picks the format from
``SLUICE_LOG_FORMAT`` (``json`` or ``text``) and the level from ``SLUICE_LOG_LEVEL``.

The connector a line belongs to (``namespace/name``) is carried in a context variable, so code deep inside the
worker does not pass it around: ``bind_connector("ns/name")`` once, and every later line has it.

A last line of defence: values registered with ``register_secret`` are masked in every formatted line, in case a
library echoes a connection string. Code must still never log secrets on purpose.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime

__all__ = ["bind_connector", "configure", "register_secret"]

_connector: contextvars.ContextVar[str] = contextvars.ContextVar("sluice_connector", default="")
_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_MASK = "**redacted**"


def bind_connector(namespaced_name: str) -> None:
    """Tag every later log line of this context (thread or task) with ``namespace/name``."""
    _connector.set(namespaced_name)


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it would appear in a log line. Short values are ignored (too many false hits)."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def _mask(text: str) -> str:
    if not _secrets:
        return text
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


class _ConnectorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "connector"):
            record.connector = _connector.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, connector, message, and exception text if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _mask(record.getMessage()),
        }
        connector = getattr(record, "connector", "")
        if connector:
            out["connector"] = connector
        if record.exc_info:
            out["exception"] = _mask(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(connector_tag)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        connector = getattr(record, "connector", "")
        record.connector_tag = f"[{connector}] " if connector else ""
        return _mask(super().format(record))


def configure(level: str | None = None, fmt: str | None = None) -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    level = (level or os.environ.get("SLUICE_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("SLUICE_LOG_FORMAT") or "text").lower()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ConnectorFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_sluice", False):
            root.removeHandler(old)
    handler._sluice = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
