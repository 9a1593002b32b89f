"""Slot safety (issue 13) on the real control plane, operator and PostgreSQL: ``spec.wal_budget``,
``status.wal_retained_bytes``, the SlotAtRisk condition and its events, and the operator's WAL gauges."""

from __future__ import annotations

import json
import re
import secrets
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.e2e.test_operator import TABLES, _condition, _describe, _seed, _status, _wait_streaming, _worker_pod
from tests.support.cluster import poll
from tests.support.operator import (
    OperatorProcess,
    apply,
    connector_resource,
    operator_namespace,
    secret_resource,
)
from tests.support.pg import PgDatabase, wait_tables_equal

pytestmark = pytest.mark.e2e

MI = 1 << 20


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the test operator watches (``op-*``)."""
    yield from operator_namespace(control_plane, request)


def _events(control_plane: ControlPlane, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    out = control_plane.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"reason={reason}", "-o", "json"
    ).stdout
    return [e for e in json.loads(out)["items"] if e["involvedObject"]["name"] == name]


def _gauge(op: OperatorProcess, metric: str, namespace: str, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    pattern = rf'^{metric}\{{(?=[^}}]*namespace="{namespace}")(?=[^}}]*connector="{name}")[^}}]*\}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


def _patch_disabled(control_plane: ControlPlane, namespace: str, name: str, disabled: bool) -> None:
    body = json.dumps({"spec": {"disabled": disabled}})
    control_plane.kubectl("patch", "connector", name, "-n", namespace, "--type=merge", "-p", body)


def test_a_stopped_connector_past_its_wal_budget_is_at_risk_until_it_drains(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = f"slot-{secrets.token_hex(3)}"
    _seed(source_db)
    resource = connector_resource(name, source_db, sink_db, f"{name}-creds")
    resource["spec"]["wal_budget"] = "1Mi"
    apply(control_plane, namespace, secret_resource(f"{name}-creds", source_db, sink_db), resource)

    def describe() -> str:
        return _describe(control_plane, process_node, sluice_operator, namespace, name)

    streaming = _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    assert streaming["wal_budget_bytes"] == MI
    assert _condition(streaming, "SlotAtRisk")["status"] == "False"

    _patch_disabled(control_plane, namespace, name, True)
    poll(lambda: _worker_pod(control_plane, namespace, name) is None, timeout=60, message="worker pod gone")
    # A few MB of WAL on the source that nothing consumes: rows of the replicated table, then a segment switch.
    before = source_db.scalar("SELECT pg_current_wal_lsn()::text")
    source_db.execute("INSERT INTO orders SELECT g, repeat('w', 200) || g, 1 FROM generate_series(1001, 21000) g")
    source_db.execute("SELECT pg_switch_wal()")
    written = int(source_db.scalar("SELECT pg_current_wal_lsn() - %s::pg_lsn", (before,)))
    assert written > 4 * MI

    def at_risk() -> dict[str, Any] | None:
        status = _status(control_plane, namespace, name)
        risk = _condition(status, "SlotAtRisk")
        retained = status.get("wal_retained_bytes")
        ok = risk.get("status") == "True" and isinstance(retained, int) and retained >= written
        return status if ok else None

    # The operator looks at a stopped connector's slot every 30 s: allow two periods and the refresh.
    status = poll(at_risk, timeout=120, message="SlotAtRisk=True with the WAL written retained", describe=describe)
    risk = _condition(status, "SlotAtRisk")
    assert risk["reason"] == "WalBudgetExceeded"
    slot = f"sluice_{name.replace('-', '_')}"
    assert slot in risk["message"] and "budget 1.0 MiB" in risk["message"]
    assert "spec.disabled: false" in risk["message"] and "spec.wal_budget" in risk["message"]
    # What the slot really holds on the source, and what the operator reported, agree.
    on_source = source_db.scalar(
        "SELECT (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    )
    assert on_source >= status["wal_retained_bytes"] >= written
    warnings = poll(
        lambda: _events(control_plane, namespace, name, "WalBudgetExceeded"),
        timeout=30,
        message="a WalBudgetExceeded event",
    )
    assert warnings[0]["type"] == "Warning" and "budget 1.0 MiB" in warnings[0]["message"]

    def gauges() -> tuple[float, float | None] | None:
        retained = _gauge(sluice_operator, "sluice_connector_wal_retained_bytes", namespace, name)
        if retained is None or retained < written:
            return None
        return retained, _gauge(sluice_operator, "sluice_connector_wal_budget_bytes", namespace, name)

    assert poll(gauges, timeout=30, message="the operator's WAL gauges")[1] == MI

    # Resumed: the worker applies what piled up, drains the slot, and the risk is over.
    _patch_disabled(control_plane, namespace, name, False)
    wait_tables_equal(source_db, sink_db, TABLES, timeout=180)
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)

    def safe() -> dict[str, Any] | None:
        status = _status(control_plane, namespace, name)
        return status if _condition(status, "SlotAtRisk").get("status") == "False" else None

    status = poll(safe, timeout=60, message="SlotAtRisk=False once the worker streams again", describe=describe)
    assert _condition(status, "SlotAtRisk")["reason"] in ("Draining", "WithinBudget")
    assert poll(lambda: _events(control_plane, namespace, name, "SlotSafe"), timeout=30, message="a SlotSafe event")

    # The slot is measured while the worker streams too (every 60 s): the drained slot shows.
    def drained() -> dict[str, Any] | None:
        status = _status(control_plane, namespace, name)
        retained = status.get("wal_retained_bytes")
        return status if isinstance(retained, int) and retained < written else None

    status = poll(
        drained,
        timeout=150,
        message="wal_retained_bytes measured below what piled up, while streaming",
        describe=describe,
    )
    assert _condition(status, "SlotAtRisk")["status"] == "False"
    assert sink_db.scalar("SELECT count(*) FROM orders") == 20100


@pytest.mark.parametrize(
    ("budget", "word"), [("10GB", "should match"), ("1.5Gi", "should match"), ("0Gi", "greater than zero")]
)
def test_apiserver_refuses_a_budget_that_is_not_a_byte_quantity(
    control_plane: ControlPlane,
    crd_installed: str,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
    budget: str,
    word: str,
) -> None:
    resource = connector_resource(f"bad-{secrets.token_hex(3)}", source_db, sink_db, "creds")
    resource["spec"]["wal_budget"] = budget
    result = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(resource), check=False
    )
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert "spec.wal_budget" in result.stderr and word in result.stderr, result.stderr
    resource["spec"]["wal_budget"] = "512Mi"
    control_plane.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(resource))
