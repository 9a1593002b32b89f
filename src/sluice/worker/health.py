"""Liveness and readiness of one worker, served as ``/healthz`` and ``/readyz`` beside ``/metrics``.

The StatefulSet probes them (:func:`sluice.operator.builders.statefulset`): a worker whose loop is wedged is
restarted by the kubelet, and the pod is Ready only while the worker replicates.

**What "alive" means.** The engine's loops call ``RunContext.report()`` every time they turn — the streaming
loops on every wait for the source (at most a second apart, changes or not) and on every batch, also inside a
transaction larger than one; the snapshot after every chunk; the engine before every retry back-off (at most
10 s) — and those calls reach the reporters about once a second.
:class:`Heartbeat` is one of those reporters, so a report *is* the heartbeat: it comes from the loop that waits,
not from data. A quiet source is therefore alive (its loop keeps waiting and reporting), and so is a retry back-off
(reported before it starts, and shorter than any bound). Dead is a loop that stopped turning: blocked forever on a
half-open connection, deadlocked, or a process that no longer runs at all (then ``/healthz`` does not even answer
and the probe times out).

The bound depends on the phase, because one statement may legitimately block a loop for long:

- ``start``, ``initialize`` and ``snapshot``: ``SLUICE_LIVENESS_SETUP_STALL_SECONDS`` (default 3600). Creating the
  slot waits for every open transaction on the source, a snapshot chunk reports only when it is done, and keys are
  built after the bulk load — a restart would only repeat such a statement, so the bound only catches a dead one.
- ``realtime``: ``SLUICE_LIVENESS_STALL_SECONDS`` (default 300): the loop reports at least once a second, but a
  schema change may backfill or rewrite a large table in the sink before the next turn.
- ``complete``, ``shutdown``, ``disabled`` or a failed run: always alive; nothing runs that could wedge (a finished
  scheduled run idles until the operator scales it down, and a failed run is exiting).

**What "ready" means:** connected and copying or streaming — the last report says ``snapshot`` or ``realtime``,
and the run is not waiting to retry a failure nor failed. Readiness never restarts anything; it is what
``kubectl get pods`` and the StatefulSet's ``readyReplicas`` show.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sluice.worker.status import WorkerStatus

__all__ = [
    "DEFAULT_SETUP_STALL_SECONDS",
    "DEFAULT_STALL_SECONDS",
    "Heartbeat",
    "Verdict",
]

#: default bound between two turns of the streaming loop (``SLUICE_LIVENESS_STALL_SECONDS``)
DEFAULT_STALL_SECONDS = 300.0
#: default bound before streaming starts (``SLUICE_LIVENESS_SETUP_STALL_SECONDS``)
DEFAULT_SETUP_STALL_SECONDS = 3600.0

_SETUP_STATES = frozenset({"start", "initialize", "snapshot"})
_IDLE_STATES = frozenset({"complete", "shutdown", "disabled"})
_READY_STATES = frozenset({"snapshot", "realtime"})


@dataclass(frozen=True)
class Verdict:
    """One probe's answer: ``ok`` gives HTTP 200, else 503; ``reason`` is the body, for a human."""

    ok: bool
    reason: str


class Heartbeat:
    """A status reporter that remembers when and in what state the engine last reported.

    Thread-safe: the engine's threads report, the HTTP server's threads ask. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        *,
        stall_seconds: float = DEFAULT_STALL_SECONDS,
        setup_stall_seconds: float = DEFAULT_SETUP_STALL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stall_seconds = stall_seconds
        self.setup_stall_seconds = setup_stall_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # Process start counts as the first beat: loading the connector and connecting is the setup phase.
        self._last = clock()
        self._state = "start"
        self._status = "start"

    @classmethod
    def from_env(cls) -> Heartbeat:
        """Bounds from ``SLUICE_LIVENESS_STALL_SECONDS`` and ``SLUICE_LIVENESS_SETUP_STALL_SECONDS``."""
        return cls(
            stall_seconds=float(os.environ.get("SLUICE_LIVENESS_STALL_SECONDS") or DEFAULT_STALL_SECONDS),
            setup_stall_seconds=float(
                os.environ.get("SLUICE_LIVENESS_SETUP_STALL_SECONDS") or DEFAULT_SETUP_STALL_SECONDS
            ),
        )

    def report(self, status: WorkerStatus) -> None:
        """The heartbeat: called by the engine's loops through ``RunContext.report`` (see the module docstring)."""
        with self._lock:
            self._last = self._clock()
            self._state = status.state
            self._status = status.status

    def liveness(self) -> Verdict:
        with self._lock:
            state, status, silent = self._state, self._status, self._clock() - self._last
        if state in _IDLE_STATES or status == "failed":
            return Verdict(True, f"alive: {state} ({status}), nothing left that could wedge")
        bound = self.setup_stall_seconds if state in _SETUP_STATES else self.stall_seconds
        if silent > bound:
            return Verdict(
                False, f"wedged: no turn of the worker's loop for {silent:.0f}s in state {state} (bound {bound:.0f}s)"
            )
        return Verdict(True, f"alive: {state} ({status}), last turn {silent:.1f}s ago (bound {bound:.0f}s)")

    def readiness(self) -> Verdict:
        with self._lock:
            state, status = self._state, self._status
        if state in _READY_STATES and status not in ("retry", "failed"):
            return Verdict(True, f"ready: {state}")
        return Verdict(False, f"not ready: {state} ({status})")
