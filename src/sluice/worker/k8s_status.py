"""A :class:`~sluice.worker.status.StatusReporter` that writes the worker's progress onto its Connector's status.

The worker pod's ServiceAccount may ``patch`` exactly one object: ``connectors/status`` of its own Connector
(``resourceNames`` in its Role, rendered by ``sluice.operator.builders.role``). Reports are merge patches of the
fields the worker owns (``sluice.status_owners.WORKER_FIELDS``: ``state``, ``status``, ``tables``, rows, position,
lag, ``last_error``, ``worker`` with the run id it runs under); conditions, ``observedGeneration`` and the top-level
``run_id`` belong to the operator, which derives them from these fields on its timer.

``report()`` is called from the replication loop and must never block it or raise: it only stores the latest
snapshot; a background thread sends it, at most once per ``min_interval`` unless ``state``/``status`` changed (a
transition is sent at once). A report equal to the last one sent (the heartbeat ``worker_reported_at`` aside) is
not sent again until ``heartbeat`` seconds have passed, so an idle worker costs the apiserver one patch per
heartbeat instead of one per ``min_interval``. If the apiserver is unreachable the latest snapshot is kept and sent
when it is back — progress reporting never stalls replication.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sluice.worker.status import WorkerStatus

if TYPE_CHECKING:
    from sluice.k8s.jsonclient import JsonClient

__all__ = ["KubernetesStatusReporter", "TeeReporter", "status_patch", "with_kubernetes_reporter"]

log = logging.getLogger(__name__)

_TABLE_PHASES = {"snapshot": "snapshotting", "copied": "snapshotted"}
#: An unchanged report is sent again after this long: well inside the operator's STALE_REPORT_SECONDS (120).
HEARTBEAT_SECONDS = 30.0


def status_patch(status: WorkerStatus, *, pod: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """The Connector ``status`` fragment for a worker report (pure; unit-tested)."""
    run: dict[str, Any] = {"type": status.status}
    if status.status == "retry":
        run["attempt"] = status.retry_attempt
        run["reason"] = (status.last_error or {}).get("message", "")
    elif status.status == "failed":
        run["reason"] = (status.last_error or {}).get("message", "")
    tables = [
        {
            "name": name,
            "phase": _TABLE_PHASES.get(t.phase, t.phase),
            "rows_copied": t.rows_copied,
            "chunks_done": t.chunks_done,
            "chunks_total": t.chunks_total,
            **({"error": t.error} if t.error else {}),
        }
        for name, t in sorted(status.tables.items())
    ]
    out: dict[str, Any] = {
        "state": status.state,
        "status": run,
        "tables": tables,
        "rows_copied": status.rows_copied,
        "rows_applied": status.rows_applied,
        "lag_bytes": status.lag_bytes,
        "lag_seconds": status.lag_seconds,
        "position": status.position,
        "delivery": status.delivery,
        "worker_reported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    # ``last_error`` is the latest error: a report without one leaves the previous error visible (with its time).
    error = _error(status.last_error)
    if error is not None:
        out["last_error"] = error
    out["worker"] = {"run_id": run_id or status.run_id, **({"pod": pod} if pod else {})}
    return out


def _error(err: dict[str, Any] | None) -> dict[str, Any] | None:
    if not err:
        return None
    out = {
        "reason": str(err.get("reason") or err.get("error") or "ReplicationFailed"),
        "message": str(err.get("message", "")),
    }
    if err.get("fix"):
        out["fix"] = str(err["fix"])
    out["time"] = str(err.get("time") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return out


class KubernetesStatusReporter:
    """Patch ``connectors/<name>/status`` in ``namespace`` with each report (see module docstring)."""

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        client: JsonClient | None = None,
        min_interval: float = 2.0,
        heartbeat: float = HEARTBEAT_SECONDS,
        pod: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self._client = client
        self._min_interval = min_interval
        self._heartbeat = heartbeat
        self._last_body: dict[str, Any] | None = None  # the last patch sent, heartbeat aside
        #: reports not sent because nothing but the heartbeat changed (tests and debugging)
        self.skipped = 0
        self._pod = pod or os.environ.get("SLUICE_POD_NAME")
        # The operator names the run (pod template annotation + env), so status and REST agree on it.
        self._run_id = os.environ.get("SLUICE_RUN_ID") or None
        # The engine mutates one WorkerStatus in place, so each report is turned into its patch at once (under the
        # caller's thread) and numbered: the sender clears only what it actually sent.
        self._pending: dict[str, Any] | None = None
        self._seq = 0
        self._urgent = False
        self._last_key: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="k8s-status", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls) -> KubernetesStatusReporter | None:
        """The reporter the operator's pod template asks for (``SLUICE_STATUS_REPORTER=kubernetes``), else None."""
        if os.environ.get("SLUICE_STATUS_REPORTER") != "kubernetes":
            return None
        return cls(os.environ["SLUICE_CONNECTOR_NAMESPACE"], os.environ["SLUICE_CONNECTOR_NAME"])

    def report(self, status: WorkerStatus) -> None:
        try:
            patch = status_patch(status, pod=self._pod, run_id=self._run_id)
        except Exception as exc:  # never into the engine
            log.warning("cannot render status report: %s", exc)
            return
        with self._lock:
            self._pending = patch
            self._seq += 1
            key = (status.state, status.status)
            if key != self._last_key:
                self._urgent = True
                self._last_key = key
        self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending, then stop the thread."""
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        last_sent = 0.0
        while True:
            self._wake.wait(self._min_interval)
            self._wake.clear()
            with self._lock:
                patch, seq, urgent = self._pending, self._seq, self._urgent
            stopping = self._stopped.is_set()
            due = urgent or stopping or time.monotonic() - last_sent >= self._min_interval
            body = _without_heartbeat(patch) if patch is not None else None
            if body is not None and body == self._last_body and time.monotonic() - last_sent < self._heartbeat:
                # Nothing new: the stored status already says all of it.
                self.skipped += 1
                with self._lock:
                    if self._seq == seq:
                        self._pending = None
                        self._urgent = False
            elif patch is not None and due and self._send(patch):
                last_sent = time.monotonic()
                self._last_body = body
                with self._lock:
                    if self._seq == seq:  # nothing newer arrived while sending
                        self._pending = None
                        self._urgent = False
            if stopping:
                return

    def _send(self, patch: dict[str, Any]) -> bool:
        try:
            if self._client is None:
                # Imported here: the kubernetes package costs ~0.2 s of start-up a worker outside a pod never needs.
                from sluice.k8s.jsonclient import JsonClient

                self._client = JsonClient(timeout=5)
            from sluice.k8s.jsonclient import api_path

            self._client.merge_patch(api_path("connectors", self.namespace, self.name, "status"), {"status": patch})
            return True
        except Exception as exc:  # never into the engine: progress reporting must not stop replication
            log.warning("cannot write status of connector %s/%s: %s", self.namespace, self.name, exc)
            return False


def _without_heartbeat(patch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in patch.items() if k != "worker_reported_at"}


class TeeReporter:
    """Send every report to several reporters (JSON lines for the pod log, plus the Connector status)."""

    def __init__(self, *reporters: Any) -> None:
        self.reporters = reporters

    def report(self, status: WorkerStatus) -> None:
        for reporter in self.reporters:
            reporter.report(status)

    def close(self) -> None:
        for reporter in self.reporters:
            close = getattr(reporter, "close", None)
            if close is not None:
                close()


def with_kubernetes_reporter(primary: Any) -> Any:
    """``primary`` alone, or teed with a :class:`KubernetesStatusReporter` when the pod asks for one."""
    k8s = KubernetesStatusReporter.from_env()
    return primary if k8s is None else TeeReporter(primary, k8s)
