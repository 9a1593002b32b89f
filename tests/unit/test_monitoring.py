"""The Grafana dashboard and the Prometheus rules name only metrics (and labels) the code really exports, and the
alerts fire when they should and only then.

The exported names come from live registries of the two exporters (the worker's ``MetricsReporter`` and the
operator's ``OperatorMetrics``) after they recorded one report each, so a renamed metric fails this test.

The alerts are run by a real promtool (hack/build-promtool.sh): ``promtool check rules``, the hand-written unit tests
of deploy/monitoring/tests/prometheus-rules.test.yaml (on the file and on the rules the Helm chart renders), and a
scenario whose series are scraped from the real exporters while the operator's own status logic
(``derive_status``) turns pod and slot facts into status, minute by minute. Without promtool (or helm) those tests
skip locally and fail under CI (``CI=true``), like the chart tests.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sluice.operator.conditions import Observed, SlotInfo, derive_status
from sluice.operator.metrics import OperatorMetrics
from sluice.worker.k8s_status import status_patch
from sluice.worker.metrics import MetricsReporter
from sluice.worker.status import WorkerStatus

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "sluice-dashboard.json"
RULES = MONITORING / "prometheus-rules.yaml"
RULE_TESTS = MONITORING / "tests" / "prometheus-rules.test.yaml"
CHART = ROOT / "charts" / "sluice"
PROMTOOL_VERSION = "v0.316.0"  # hack/build-promtool.sh
HELM_VERSION = "v4.3.2"  # hack/build-helm.sh
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


# -- promtool: the rules load, and each alert fires where it should and only there ---------------------------------


def _tool(name: str, version: str, script: str) -> str:
    """The binary hack/<script> builds (else one on PATH); skip without it, but fail under CI."""
    cache = Path(os.environ.get("SLUICE_CACHE", Path.home() / ".cache" / "sluice"))
    built = cache / name / version / "bin" / name
    found = str(built) if built.exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} not found ({built} or PATH); run: bash hack/{script}"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"required under CI: {message}", pytrace=False)
    pytest.skip(message)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [_tool("promtool", PROMTOOL_VERSION, "build-promtool.sh"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def _spec() -> dict[str, Any]:
    """The rule groups of the PrometheusRule: what promtool (and Prometheus) read."""
    spec: dict[str, Any] = yaml.safe_load(RULES.read_text())["spec"]
    return spec


def _rule_tests() -> dict[str, Any]:
    suite: dict[str, Any] = yaml.safe_load(RULE_TESTS.read_text())
    # The suite names the file it tests; promtool cannot read a PrometheusRule, so it is handed the groups instead.
    assert suite["rule_files"] == ["../prometheus-rules.yaml"]
    return suite


def _write_groups(groups: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(groups, sort_keys=False))
    return path


def _test_rules(groups: dict[str, Any], suite: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    rules = _write_groups(groups, tmp_path / "prometheus-rules.yaml")
    test_file = tmp_path / "prometheus-rules.test.yaml"
    test_file.write_text(yaml.safe_dump({**suite, "rule_files": [str(rules)]}, sort_keys=False))
    return promtool("test", "rules", str(test_file))


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    out = promtool("check", "rules", str(_write_groups(_spec(), tmp_path / "rules.yaml")))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in out.stdout, out.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_stays_silent() -> None:
    evals: dict[str, list[list[Any]]] = {}
    for case in _rule_tests()["tests"]:
        for t in case.get("alert_rule_test", []):
            evals.setdefault(t["alertname"], []).append(t["exp_alerts"])
    for alert in (r["alert"] for r in _rules()):
        assert any(evals.get(alert, [])), f"{alert}: no test case where it fires"
        assert any(not e for e in evals.get(alert, [])), f"{alert}: no test case where it stays silent"
    assert set(evals) <= {r["alert"] for r in _rules()}


def test_promtool_rule_tests_pass(tmp_path: Path) -> None:
    out = _test_rules(_spec(), _rule_tests(), tmp_path)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_promtool_rule_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    # Without its exception for disabled connectors, SluiceConnectorNotReady fires for staging/orders too.
    broken = copy.deepcopy(_spec())
    rule = next(r for g in broken["groups"] for r in g["rules"] if r["alert"] == "SluiceConnectorNotReady")
    rule["expr"] = "sluice_connector_ready == 0"
    out = _test_rules(broken, _rule_tests(), tmp_path)
    report = out.stdout + out.stderr  # promtool prints the failed cases on stderr
    assert out.returncode != 0, report
    assert "alertname: SluiceConnectorNotReady" in report and 'namespace="staging"' in report, report


def test_the_chart_renders_the_tested_rules(tmp_path: Path) -> None:
    argv = [_tool("helm", HELM_VERSION, "build-helm.sh"), "template", "sluice", str(CHART)]
    argv += ["--namespace", "sluice-system", "--set", "metrics.prometheusRule.enabled=true"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    (rendered,) = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "PrometheusRule"]
    groups = rendered["spec"]
    assert groups == _spec()
    check = promtool("check", "rules", str(_write_groups(groups, tmp_path / "chart-rules.yaml")))
    assert check.returncode == 0, check.stdout + check.stderr
    tested = _test_rules(groups, _rule_tests(), tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


# -- the series the rule tests use are the ones the exporters serve ------------------------------------------------

SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}$")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def _parse_series(text: str) -> tuple[str, dict[str, str]]:
    match = SERIES.match(text.strip())
    assert match, text
    labels = dict(LABEL.findall(match.group(2)))
    assert len(labels) == match.group(2).count("="), text
    return match.group(1), labels


def test_rule_test_series_are_ones_the_exporters_serve(exported: dict[str, set[str]]) -> None:
    operator = OperatorMetrics()
    operator.observe("ns", "c", {"state": "realtime", "conditions": []})
    states = {s.labels["state"] for s in _samples(operator.registry) if s.name == "sluice_connector_state"}
    series = [s["series"] for case in _rule_tests()["tests"] for s in case["input_series"]]
    assert len(series) >= 30
    for text in series:
        name, labels = _parse_series(text)
        assert name in exported, f"{name} is not exported; exported: {sorted(exported)}"
        # The exporter's own labels, all of them, plus only labels a scrape target adds.
        assert exported[name] <= set(labels), f"{text}: lacks {sorted(exported[name] - set(labels))}"
        assert set(labels) - exported[name] <= TARGET_LABELS, f"{text}: labels the exporter does not serve"
        if "state" in labels:
            assert labels["state"] in states, text
    with pytest.raises(AssertionError):
        _parse_series('sluice_connector_ready{namespace="a", connector=b}')


# -- a scenario scraped from the real exporters --------------------------------------------------------------------

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GI = 1 << 30
PG = {"host": "db", "user": "replicator", "database": "app"}
PG_SPEC: dict[str, Any] = {
    "source": {"postgres": {"connection": PG, "replication_type": {"logical_replication": {}}}},
    "sink": {"postgres": {"connection": PG}},
}
#: What the scrape target adds: the operator runs in sluice-system; each worker in its connector's namespace.
OPERATOR_TARGET = {"job": "sluice-system/sluice", "pod": "sluice-operator-0"}
MINUTES = 25


def _worker_pod(minute: int, *, crash_looping: bool = False) -> dict[str, Any]:
    if crash_looping:
        restarts = minute // 4  # a crash every 4 minutes
        state: dict[str, Any] = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting"}}
        finished = (T0 + timedelta(minutes=minute, seconds=-30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        last = {"terminated": {"exitCode": 1, "finishedAt": finished}} if restarts else {}
    else:
        restarts, state, last = 0, {"running": {"startedAt": "2026-11-26T11:00:00Z"}}, {}
    return {
        "metadata": {"uid": "pod-uid"},
        "status": {
            "conditions": [{"type": "Ready", "status": "False" if crash_looping else "True"}],
            "containerStatuses": [{"name": "worker", "state": state, "restartCount": restarts, "lastState": last}],
        },
    }


def _facts(
    name: str, minute: int
) -> tuple[dict[str, Any], dict[str, Any] | None, WorkerStatus | None, SlotInfo | None]:
    """(spec, worker pod, the worker's report this minute, the slot as the operator measured it)."""
    if name == "orders":  # streams, Ready, drains its slot; the sink is flaky: one retried error a minute
        report = WorkerStatus(
            "orders",
            "r1",
            state="realtime",
            status="retry",
            rows_applied=1000 * minute,
            lag_bytes=4096,
            lag_seconds=0.5,
            retry_attempt=1,
            last_error={"error": "Transient", "message": f"connection reset ({minute})"},
        )
        return PG_SPEC, _worker_pod(minute), report, SlotInfo("sluice_orders", True, True, 3 << 20)
    if name == "items":  # snapshots 2000 rows a minute
        report = WorkerStatus("items", "r1", state="snapshot", rows_copied=2000 * minute)
        return PG_SPEC, _worker_pod(minute), report, SlotInfo("sluice_items", True, True, 512 << 20)
    if name == "archive":  # disabled; its slot keeps 5 GiB against a 1 GiB budget
        spec = {**PG_SPEC, "disabled": True, "wal_budget": "1Gi"}
        return spec, None, None, SlotInfo("sluice_archive", True, False, 5 * GI, wal_status="reserved")
    assert name == "users"  # its worker crashes on start, again and again
    report = WorkerStatus(
        "users", "r1", state="initialize", status="failed", last_error={"error": "SourceUnreachable", "message": "no"}
    )
    return PG_SPEC, _worker_pod(minute, crash_looping=True), report, None


def _scrape(registry: CollectorRegistry, target: dict[str, str]) -> dict[str, float]:
    """The registry as Prometheus stores a scrape of it: series (target labels added) -> value."""
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels = {**sample.labels, **target}  # honorLabels: the exporter's namespace wins over the target's
            body = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            out[f"{sample.name}{{{body}}}"] = float(sample.value)
    return out


def _scenario_series() -> list[dict[str, str]]:
    operator = OperatorMetrics()
    workers = {name: MetricsReporter() for name in ("orders", "items", "users")}
    statuses: dict[str, dict[str, Any]] = {}
    scrapes: list[dict[str, float]] = []
    for minute in range(MINUTES + 1):
        now = T0 + timedelta(minutes=minute)
        scrape: dict[str, float] = {}
        for name in ("orders", "items", "archive", "users"):
            spec, pod, report, slot = _facts(name, minute)
            status = dict(statuses.get(name, {}))
            if report is not None:
                # The worker's own status write, and its /metrics.
                status.update(status_patch(report))
                status["worker_reported_at"] = (now - timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
                workers[name].report(report)
                pod_name = f"{name}-worker-0"
                scrape.update(
                    _scrape(workers[name].registry, {"job": "shop/sluice", "namespace": "shop", "pod": pod_name})
                )
            meta = {"name": name, "namespace": "shop", "generation": 1, "creationTimestamp": "2026-11-26T11:00:00Z"}
            cr = {"metadata": meta, "spec": spec, "status": status}
            replicas = 0 if spec.get("disabled") else 1
            patch = derive_status(Observed(cr=cr, pod=pod, desired_replicas=replicas, now=now, slot=slot))
            if replicas == 0:
                patch["lag_seconds"] = None  # as the reconcile pass does for a stopped worker
            statuses[name] = {**status, **patch}
            operator.observe("shop", name, statuses[name])  # what the reconcile pass hands the gauges
        operator.reconciles.labels("ok").inc(4)
        scrape.update(_scrape(operator.registry, OPERATOR_TARGET))
        scrapes.append(scrape)
    keys = sorted({k for s in scrapes for k in s})
    return [{"series": k, "values": " ".join(repr(s[k]) if k in s else "_" for s in scrapes)} for k in keys]


def test_alerts_on_a_scenario_scraped_from_the_real_exporters(tmp_path: Path) -> None:
    """Four connectors in shop, as the operator's status logic and both exporters really report them for 25 minutes:
    orders streams (a flaky sink retries once a minute), items snapshots, archive is disabled with its slot past its
    budget, users crash-loops. Exactly the alerts a person would expect fire at minute 20."""
    series = _scenario_series()
    names = {s["series"].split("{")[0] for s in series}
    used = set(METRIC.findall(" ".join(r["expr"] for r in _rules())))
    assert used <= names | {"sluice_operator_reconciles_total"}, sorted(used - names)
    # The annotations are the hand-written suite's concern; here only which alerts fire, with which labels.
    groups = copy.deepcopy(_spec())
    severity = {}
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
            severity[rule["alert"]] = rule["labels"]["severity"]
    connector = {"namespace": "shop", **OPERATOR_TARGET}
    firing: dict[str, list[dict[str, str]]] = {
        "SluiceConnectorNotReady": [{**connector, "connector": "users"}],
        "SluiceSlotAtRisk": [{**connector, "connector": "archive"}],
        "SluiceWorkerRestarting": [{**connector, "connector": "users"}],
        "SluiceWorkerErrors": [{"namespace": "shop", "connector": "orders", "reason": "Transient"}],
    }
    evals = [
        {
            "eval_time": "20m",
            "alertname": alert,
            "exp_alerts": [{"exp_labels": {"severity": severity[alert], **labels}} for labels in firing.get(alert, [])],
        }
        for alert in severity
    ]
    suite = {
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": evals}],
    }
    out = _test_rules(groups, suite, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_cleared_status_field_leaves_no_stale_sample() -> None:
    """A connector disabled at 900 s of lag has its lag cleared by the reconcile pass; a gauge that kept 900 would
    keep SluiceConnectorLagHigh firing for as long as it stays disabled."""
    metrics = OperatorMetrics()
    running = {"state": "realtime", "lag_seconds": 900.0, "lag_bytes": 4096, "wal_retained_bytes": 8192}
    metrics.observe("ns", "orders", running)
    sample = metrics.registry.get_sample_value
    assert sample("sluice_connector_lag_seconds", {"namespace": "ns", "connector": "orders"}) == 900.0
    metrics.observe("ns", "orders", {**running, "state": "disabled", "lag_seconds": None, "lag_bytes": None})
    assert sample("sluice_connector_lag_seconds", {"namespace": "ns", "connector": "orders"}) is None
    assert sample("sluice_connector_lag_bytes", {"namespace": "ns", "connector": "orders"}) is None
    assert sample("sluice_connector_wal_retained_bytes", {"namespace": "ns", "connector": "orders"}) == 8192
