"""Prometheus metrics of the operator: per-connector gauges mirrored from status, and reconcile counters.

One registry per operator process (not the global default), so tests can create several operators in one
interpreter. Served by ``sluice operator --metrics-port``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["OperatorMetrics"]

_STATES = ("start", "initialize", "snapshot", "realtime", "scheduled", "disabled", "complete", "shutdown")


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["namespace", "connector"]
        self.reconciles = Counter(
            "sluice_operator_reconciles", "Reconcile passes by outcome.", ["outcome"], registry=self.registry
        )
        self.reconcile_seconds = Histogram(
            "sluice_operator_reconcile_seconds", "Duration of one reconcile pass.", registry=self.registry
        )
        self.writes = Counter(
            "sluice_operator_writes",
            "Writes a reconcile pass sent (written) or found needless (skipped): status, or a child by plural.",
            ["what", "outcome"],
            registry=self.registry,
        )
        self.lag_bytes = Gauge(
            "sluice_connector_lag_bytes", "WAL bytes the sink is behind.", labels, registry=self.registry
        )
        self.lag_seconds = Gauge(
            "sluice_connector_lag_seconds", "Seconds the sink is behind.", labels, registry=self.registry
        )
        self.rows_copied = Gauge(
            "sluice_connector_rows_copied", "Rows copied by the snapshot.", labels, registry=self.registry
        )
        self.rows_applied = Gauge(
            "sluice_connector_rows_applied", "Changes applied since streaming began.", labels, registry=self.registry
        )
        self.wal_retained_bytes = Gauge(
            "sluice_connector_wal_retained_bytes",
            "WAL the connector's replication slot retains on the source (pg_current_wal_lsn() - restart_lsn).",
            labels,
            registry=self.registry,
        )
        self.wal_budget_bytes = Gauge(
            "sluice_connector_wal_budget_bytes",
            "The connector's WAL budget (spec.wal_budget, else the operator's default).",
            labels,
            registry=self.registry,
        )
        self.restarts = Gauge("sluice_connector_worker_restarts", "Worker restarts.", labels, registry=self.registry)
        self.ready = Gauge(
            "sluice_connector_ready", "1 when the Ready condition is True.", labels, registry=self.registry
        )
        self.errors = Gauge(
            "sluice_connector_error", "1 while the connector reports an error.", labels, registry=self.registry
        )
        self.state = Gauge(
            "sluice_connector_state", "1 for the connector's current state.", [*labels, "state"], registry=self.registry
        )

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)

    def observe(self, namespace: str, connector: str, status: dict[str, Any]) -> None:
        key = (namespace, connector)
        for gauge, field in (
            (self.lag_bytes, "lag_bytes"),
            (self.lag_seconds, "lag_seconds"),
            (self.rows_copied, "rows_copied"),
            (self.rows_applied, "rows_applied"),
            (self.restarts, "restarts"),
            (self.wal_budget_bytes, "wal_budget_bytes"),
            (self.wal_retained_bytes, "wal_retained_bytes"),
        ):
            value = status.get(field)
            if isinstance(value, int | float):
                gauge.labels(*key).set(value)
            else:
                # Unknown or cleared (a disabled connector has no lag; a dropped or lost slot retains nothing we can
                # measure): no sample rather than a stale one — a frozen lag would keep an alert firing — or a false 0.
                with contextlib.suppress(KeyError):
                    gauge.remove(*key)
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        self.ready.labels(*key).set(1 if ready.get("status") == "True" else 0)
        self.errors.labels(*key).set(1 if status.get("last_error") else 0)
        for state in _STATES:
            self.state.labels(*key, state).set(1 if status.get("state") == state else 0)

    def forget(self, namespace: str, connector: str) -> None:
        for gauge in (
            self.lag_bytes,
            self.lag_seconds,
            self.rows_copied,
            self.rows_applied,
            self.restarts,
            self.wal_retained_bytes,
            self.wal_budget_bytes,
            self.ready,
            self.errors,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, connector)
        for state in _STATES:
            with contextlib.suppress(KeyError):
                self.state.remove(namespace, connector, state)
