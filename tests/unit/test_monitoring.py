"""The Grafana dashboard and the Prometheus rules name only metrics (and labels) the code really exports.

The exported names come from live registries of the two exporters (the worker's ``MetricsReporter`` and the
operator's ``OperatorMetrics``) after they recorded one report each, so a renamed metric fails this test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from sluice.operator.metrics import OperatorMetrics
from sluice.worker.metrics import MetricsReporter
from sluice.worker.status import WorkerStatus

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "sluice-dashboard.json"
RULES = MONITORING / "prometheus-rules.yaml"
#: Labels Prometheus adds from the scrape target (PodMonitor/ServiceMonitor), on every series.
TARGET_LABELS = {"namespace", "pod", "container", "instance", "job", "service", "endpoint"}
METRIC = re.compile(r"\b(sluice_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b(sluice_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")


def _samples(registry: CollectorRegistry) -> Iterator[Any]:
    for family in registry.collect():
        yield from family.samples


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every series name the exporters serve -> its label names."""
    worker = MetricsReporter()
    err = {"error": "Transient", "message": "connection reset"}
    worker.report(
        WorkerStatus("c", "r", state="realtime", status="retry", lag_bytes=1, lag_seconds=0.5, last_error=err)
    )
    operator = OperatorMetrics()
    status = {
        "state": "realtime",
        "lag_bytes": 1,
        "lag_seconds": 0.5,
        "rows_copied": 1,
        "rows_applied": 1,
        "restarts": 0,
        "wal_retained_bytes": 1,
        "wal_budget_bytes": 2,
        "conditions": [{"type": "Ready", "status": "True"}],
        "last_error": {"reason": "X"},
    }
    operator.observe("ns", "c", status)
    operator.reconciles.labels("ok").inc()
    operator.reconcile_seconds.observe(0.1)
    names: dict[str, set[str]] = {}
    for registry in (worker.registry, operator.registry):
        for sample in _samples(registry):
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"])
    return exprs


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    assert doc["kind"] == "PrometheusRule" and doc["apiVersion"] == "monitoring.coreos.com/v1"
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


def _check(expr: str, exported: dict[str, set[str]]) -> list[str]:
    problems = []
    used = set(METRIC.findall(expr))
    if not used:
        problems.append(f"{expr!r} names no sluice metric")
    for name in used - set(exported):
        problems.append(f"{name} (in {expr!r}) is not exported; exported: {sorted(exported)}")
    for name, matchers in SELECTOR.findall(expr):
        for label in MATCHER.findall(matchers):
            if label not in exported.get(name, set()) | TARGET_LABELS:
                problems.append(f"{name} has no label {label!r} (in {expr!r})")
    known = set().union(*(exported.get(n, set()) for n in used)) | TARGET_LABELS
    for group in GROUPING.findall(expr):
        for label in (g.strip() for g in group.split(",")):
            if label and label not in known:
                problems.append(f"label {label!r} in {expr!r} is on none of {sorted(used)}")
    return problems


def test_the_exporters_were_read(exported: dict[str, set[str]]) -> None:
    # The fixture must see both exporters' series, the counters' _total and the histogram's buckets included.
    assert {"sluice_worker_errors_total", "sluice_connector_ready", "sluice_operator_reconcile_seconds_bucket"} <= set(
        exported
    )
    assert _check("sluice_no_such_metric", exported) and _check('sluice_connector_ready{shard="1"}', exported)


def test_dashboard_uses_only_exported_metrics(exported: dict[str, set[str]]) -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 10
    assert [p for e in exprs for p in _check(e, exported)] == []


def test_rules_use_only_exported_metrics(exported: dict[str, set[str]]) -> None:
    assert [p for r in _rules() for p in _check(r["expr"], exported)] == []


def test_dashboard_covers_state_throughput_lag_wal_errors_and_snapshot() -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    assert all(p["gridPos"]["w"] <= 24 for p in panels)
    text = " ".join(_dashboard_exprs())
    for metric in (
        "sluice_connector_state",
        "sluice_connector_ready",
        "sluice_connector_rows_applied",
        "sluice_connector_lag_seconds",
        "sluice_connector_lag_bytes",
        "sluice_worker_errors_total",
        "sluice_connector_rows_copied",
        "sluice_connector_worker_restarts",
        "sluice_connector_wal_retained_bytes",
        "sluice_connector_wal_budget_bytes",
    ):
        assert metric in text, metric
    # Every connector panel follows the dashboard's namespace/connector selection.
    for p in panels:
        for t in p["targets"]:
            if "sluice_connector_" in t["expr"] or "sluice_worker_" in t["expr"]:
                assert "$namespace" in t["expr"] and "$connector" in t["expr"], t["expr"]


def test_rules_cover_the_failures_users_fear() -> None:
    rules = {r["alert"]: r for r in _rules()}
    assert {
        "SluiceConnectorNotReady",
        "SluiceConnectorLagHigh",
        "SluiceSlotWalRetainedHigh",
        "SluiceSlotAtRisk",
        "SluiceWorkerRestarting",
        "SluiceSnapshotStalled",
    } <= set(rules)
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
