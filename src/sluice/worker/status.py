"""How the worker tells the world what it is doing.

The engine only knows :class:`StatusReporter`; locally the reports are JSON lines (stdout or ``--status-file``),
in a pod the operator plugs in a reporter that patches the Connector's status subresource. A report is a whole
snapshot of the worker's view (not a delta), so any one line — the last one especially — is enough to know where
the connector stands.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

__all__ = ["JsonLinesReporter", "StatusReporter", "TableProgress", "WorkerStatus"]


@dataclass
class TableProgress:
    phase: str = "pending"  # pending | snapshot | copied | streaming | failed
    rows_copied: int = 0
    chunks_done: int = 0
    chunks_total: int = 0
    rows_applied: int = 0
    error: str | None = None


@dataclass
class WorkerStatus:
    """The worker's view; field names follow the REST status (``state``/``status``) and the CR status."""

    connector: str
    run_id: str
    #: start | initialize | snapshot | realtime | complete | shutdown
    state: str = "start"
    #: start | complete | failed | retry
    status: str = "start"
    tables: dict[str, TableProgress] = field(default_factory=dict)
    rows_copied: int = 0
    rows_applied: int = 0
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    #: the source position the sink holds, in the source's own notation (an LSN, a GTID set...)
    position: str | None = None
    #: the sink's delivery guarantee (exactly-once, at-least-once...)
    delivery: str | None = None
    retry_attempt: int = 0
    last_error: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ts"] = datetime.now(UTC).isoformat()
        return data


class StatusReporter(Protocol):
    def report(self, status: WorkerStatus) -> None:
        """Publish the current status; must be cheap and must never raise into the engine."""


class JsonLinesReporter:
    """One JSON object per line, flushed at once; at most one line per ``min_interval`` unless ``force``."""

    def __init__(self, path: str | None = None, *, min_interval: float = 10.0) -> None:
        self._stream: IO[str] = Path(path).open("a", encoding="utf-8") if path else sys.stdout  # noqa: SIM115
        self._min_interval = min_interval
        self._last = 0.0
        self._last_key: tuple[str, str] | None = None
        self._lock = threading.Lock()

    def report(self, status: WorkerStatus) -> None:
        now = time.monotonic()
        key = (status.state, status.status)
        with self._lock:
            if key == self._last_key and now - self._last < self._min_interval:
                return
            self._last = now
            self._last_key = key
            try:
                self._stream.write(json.dumps(status.as_dict(), default=str) + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass
