"""Prometheus metrics of one worker, served on ``SLUICE_METRICS_PORT`` (the operator sets it on the pod), with the
worker's health beside them on the same port: ``/metrics`` (also any other path, as before), ``/healthz``
(liveness) and ``/readyz`` (readiness), as :mod:`sluice.worker.health` defines them. One port because the pod's
probes and the scraper then need one declared ``containerPort``, and a worker whose metrics are off has no
probes either (the operator renders none).

Why a status reporter: the engine already publishes everything worth measuring through the reporter interface
(rows, lag, errors), so metrics are one more subscriber and the replication code knows nothing about Prometheus.
Restarts are counted by the operator, which sees every worker incarnation; a worker only knows its own life.
"""

from __future__ import annotations

import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from sluice.worker.health import Heartbeat, Verdict
from sluice.worker.status import WorkerStatus

__all__ = ["MetricsReporter", "serve", "with_metrics_reporter"]

log = logging.getLogger(__name__)

_STATES = ("start", "initialize", "snapshot", "realtime", "complete", "shutdown", "disabled")


class MetricsReporter:
    """Turns status reports into gauges and counters labelled with the connector id."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ["connector"]
        self.rows_copied = Gauge(
            "sluice_worker_rows_copied", "Rows copied by the snapshot", labels, registry=self.registry
        )
        self.rows_applied = Gauge(
            "sluice_worker_rows_applied",
            "Changes applied to the sink since the stream started",
            labels,
            registry=self.registry,
        )
        self.lag_bytes = Gauge(
            "sluice_worker_lag_bytes",
            "WAL bytes between the source's position and the sink's",
            labels,
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "sluice_worker_lag_seconds", "Seconds between a source commit and its apply", labels, registry=self.registry
        )
        self.errors = Counter(
            "sluice_worker_errors",
            "Errors reported (failed or retried steps)",
            [*labels, "reason"],
            registry=self.registry,
        )
        self.state = Gauge(
            "sluice_worker_state", "1 for the current lifecycle state", [*labels, "state"], registry=self.registry
        )
        self._last_error: tuple[str, int] | None = None

    def report(self, status: WorkerStatus) -> None:
        c = status.connector
        self.rows_copied.labels(c).set(status.rows_copied)
        self.rows_applied.labels(c).set(status.rows_applied)
        if status.lag_bytes is not None:
            self.lag_bytes.labels(c).set(status.lag_bytes)
        if status.lag_seconds is not None:
            self.lag_seconds.labels(c).set(status.lag_seconds)
        for state in _STATES:
            self.state.labels(c, state).set(1 if status.state == state else 0)
        if status.status in ("failed", "retry") and status.last_error:
            # Count each error once, however often the same status is reported.
            key = (str(status.last_error.get("message", "")), status.retry_attempt)
            if key != self._last_error:
                self._last_error = key
                self.errors.labels(c, str(status.last_error.get("error", "Unknown"))).inc()


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry
    heartbeat: Heartbeat

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/healthz", "/readyz"):
            verdict: Verdict = self.heartbeat.liveness() if path == "/healthz" else self.heartbeat.readiness()
            self._send(200 if verdict.ok else 503, "text/plain; charset=utf-8", (verdict.reason + "\n").encode())
        else:
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.registry))

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the worker log."""


def serve(port: int, registry: CollectorRegistry, heartbeat: Heartbeat, addr: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104
    """Serve metrics and health on ``addr:port`` from a daemon thread; the server is returned (``server_port``
    is the port bound when ``port`` is 0)."""
    handler = type("Handler", (_Handler,), {"registry": registry, "heartbeat": heartbeat})
    server = ThreadingHTTPServer((addr, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def with_metrics_reporter(primary: Any) -> Any:
    """``primary`` alone, or teed with a :class:`~sluice.worker.health.Heartbeat` and a :class:`MetricsReporter`,
    both served over HTTP, when ``SLUICE_METRICS_PORT`` is a port number other than 0."""
    port = int(os.environ.get("SLUICE_METRICS_PORT") or 0)
    if not port:
        return primary
    from sluice.worker.k8s_status import TeeReporter

    metrics = MetricsReporter()
    heartbeat = Heartbeat.from_env()
    try:
        serve(port, metrics.registry, heartbeat, os.environ.get("SLUICE_METRICS_ADDR", "0.0.0.0"))  # noqa: S104
    except OSError as exc:
        # Metrics are worth a warning, never a stopped replication (and without the port no probe reaches us).
        log.warning("metrics and health endpoints not served on port %d: %s", port, exc)
        return primary
    # The heartbeat first: a slow reporter after it does not delay the beat.
    return TeeReporter(heartbeat, primary, metrics)
