"""Slot safety (issue 13): the ``wal_budget`` spec field, the SlotAtRisk condition and the WAL gauges."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from sluice import kubectl_plugin
from sluice.models import ConnectorSpec
from sluice.models.quantity import parse_byte_quantity
from sluice.operator.conditions import Observed, SlotInfo, derive_status, wal_budget_bytes
from sluice.operator.metrics import OperatorMetrics
from sluice.worker.k8s_status import status_patch
from sluice.worker.status import WorkerStatus

PG = {"host": "db", "user": "replicator", "database": "app"}
SPEC: dict[str, Any] = {
    "source": {"postgres": {"connection": PG, "replication_type": {"logical_replication": {}}}},
    "sink": {"postgres": {"connection": PG}},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10Gi", 10 << 30), ("512Mi", 512 << 20), ("1Mi", 1 << 20), ("1G", 10**9), ("4096", 4096), ("3k", 3000)],
)
def test_byte_quantities(text: str, expected: int) -> None:
    assert parse_byte_quantity(text) == expected
    assert ConnectorSpec.model_validate({**copy.deepcopy(SPEC), "wal_budget": text}).wal_budget == text


@pytest.mark.parametrize("text", ["10GB", "1.5Gi", "1e9", "500m", "-1Gi", " 5Mi", "0", "0Gi", "", "Gi"])
def test_bad_budget_names_the_field_and_the_fix(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        ConnectorSpec.model_validate({**copy.deepcopy(SPEC), "wal_budget": text})
    (error,) = info.value.errors()
    assert error["loc"] == ("wal_budget",)
    assert '"10Gi"' in error["msg"] and "Kubernetes quantity" in error["msg"]


def test_budget_is_optional() -> None:
    assert ConnectorSpec.model_validate(copy.deepcopy(SPEC)).wal_budget is None


# --- the SlotAtRisk condition -------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
MI = 1 << 20


def _cr(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "uid": "u",
            "generation": 2,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {**copy.deepcopy(SPEC), **(spec or {})},
        "status": status or {},
    }


def _pod(running: bool = True) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": "x"}} if running else {"waiting": {"reason": "ContainerCreating"}}
    return {
        "metadata": {"uid": "pod-1"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if running else "False"}],
            "containerStatuses": [{"name": "worker", "state": state, "restartCount": 0, "lastState": {}}],
        },
    }


def _reported(state: str = "realtime", **fields: Any) -> dict[str, Any]:
    """What a worker really writes (``status_patch`` of a ``WorkerStatus``), reported 10 s ago."""
    patch = status_patch(WorkerStatus(connector="c", run_id="r", state=state, **fields))
    patch["worker_reported_at"] = "2026-11-26T11:59:50Z"
    return patch


def _slot(retained: int | None, **kw: Any) -> SlotInfo:
    """A SlotInfo as ``sourcedb.slot_info`` builds it from ``Source.retained()`` of an existing slot."""
    return SlotInfo(name="sluice_c", exists=True, active=kw.pop("active", False), lag_bytes=retained, **kw)


def _cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def test_disabled_connector_past_its_budget_is_at_risk_with_sizes_and_fix() -> None:
    cr = _cr(spec={"disabled": True, "wal_budget": "1Mi"})
    slot = _slot(5 * MI, wal_status="reserved", safe_wal_bytes=None)
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=slot))
    risk = _cond(out, "SlotAtRisk")
    assert risk["status"] == "True" and risk["reason"] == "WalBudgetExceeded"
    assert "5.0 MiB" in risk["message"] and "budget 1.0 MiB" in risk["message"] and "sluice_c" in risk["message"]
    assert "spec.disabled: false" in risk["message"] and "spec.wal_budget" in risk["message"]
    assert out["wal_retained_bytes"] == 5 * MI and out["wal_budget_bytes"] == MI
    # WalRetained (slot kept) and SlotLagHigh (operator-wide threshold, 1 GiB) keep their own meaning.
    assert _cond(out, "WalRetained")["status"] == "True"
    assert _cond(out, "SlotLagHigh")["status"] == "False"


def test_within_budget_is_not_at_risk() -> None:
    cr = _cr(spec={"disabled": True, "wal_budget": "10Mi"})
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=_slot(5 * MI)))
    assert _cond(out, "SlotAtRisk")["status"] == "False"
    assert _cond(out, "SlotAtRisk")["reason"] == "WithinBudget"


def test_operator_default_budget_applies_without_spec_and_falls_back_to_the_lag_threshold() -> None:
    cr = _cr(spec={"disabled": True})
    slot = _slot(5 * MI)
    out = derive_status(
        Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=slot, default_wal_budget_bytes=2 * MI)
    )
    assert _cond(out, "SlotAtRisk")["status"] == "True" and out["wal_budget_bytes"] == 2 * MI
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=slot, lag_threshold_bytes=4 * MI))
    assert _cond(out, "SlotAtRisk")["status"] == "True" and out["wal_budget_bytes"] == 4 * MI
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=slot))
    assert _cond(out, "SlotAtRisk")["status"] == "False" and out["wal_budget_bytes"] == 1 << 30


def test_between_scheduled_runs_counts_as_stopped() -> None:
    cr = _cr(spec={"schedule": {"rate": {"value": 1, "unit": "hours"}}, "wal_budget": "1Mi"})
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=_slot(3 * MI)))
    assert out["state"] == "scheduled"
    assert _cond(out, "SlotAtRisk")["status"] == "True"


def test_streaming_worker_within_budget_drains_the_slot() -> None:
    cr = _cr(spec={"wal_budget": "1Mi"}, status=_reported("realtime", lag_bytes=1024))
    out = derive_status(Observed(cr=cr, pod=_pod(), desired_replicas=1, now=NOW, slot=_slot(3 * MI, active=True)))
    assert _cond(out, "Ready")["status"] == "True"
    risk = _cond(out, "SlotAtRisk")
    assert risk["status"] == "False" and risk["reason"] == "Draining"
    assert out["wal_retained_bytes"] == 3 * MI


def test_lagging_worker_past_budget_is_at_risk() -> None:
    cr = _cr(spec={"wal_budget": "1Mi"}, status=_reported("realtime", lag_bytes=3 * MI))
    out = derive_status(Observed(cr=cr, pod=_pod(), desired_replicas=1, now=NOW, slot=_slot(3 * MI, active=True)))
    risk = _cond(out, "SlotAtRisk")
    assert risk["status"] == "True" and risk["reason"] == "WalBudgetExceeded"
    assert "not draining" in risk["message"] and "Ready condition" in risk["message"]


def test_resumed_worker_not_ready_yet_keeps_the_risk_until_it_streams() -> None:
    # Just re-enabled: the pod starts, the measurement is the last one taken while disabled.
    cr = _cr(spec={"wal_budget": "1Mi"}, status={"wal_retained_bytes": 6 * MI, "state": "disabled"})
    out = derive_status(Observed(cr=cr, pod=_pod(running=False), desired_replicas=1, now=NOW, slot=None))
    assert _cond(out, "SlotAtRisk")["status"] == "True"
    assert "wal_retained_bytes" not in out  # not measured in this pass: the stored value stays


def test_lost_and_unreserved_slots_are_at_risk_whatever_the_budget() -> None:
    cr = _cr(spec={"disabled": True, "wal_budget": "10Gi"})
    lost = SlotInfo(name="sluice_c", exists=True, active=False, lag_bytes=None, wal_status="lost")
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=lost))
    assert _cond(out, "SlotAtRisk")["reason"] == "SlotLost" and "ReIntialize" in _cond(out, "SlotAtRisk")["message"]
    assert out["wal_retained_bytes"] is None
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=_slot(MI, wal_status="unreserved")))
    assert _cond(out, "SlotAtRisk")["status"] == "True" and _cond(out, "SlotAtRisk")["reason"] == "WalUnreserved"


def test_unreachable_source_and_missing_slot_are_not_a_risk_but_say_why() -> None:
    cr = _cr(spec={"disabled": True, "wal_budget": "1Mi"}, status={"wal_retained_bytes": 5 * MI})
    err = SlotInfo(name="sluice_c", error="connection refused")
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=err))
    assert (
        _cond(out, "SlotAtRisk")["reason"] == "RetentionUnknown"
        and "connection refused" in _cond(out, "SlotAtRisk")["message"]
    )
    assert "wal_retained_bytes" not in out  # the last measurement stays
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=SlotInfo("sluice_c", exists=False)))
    assert _cond(out, "SlotAtRisk")["reason"] == "NoSlot" and out["wal_retained_bytes"] is None


def test_other_sources_have_no_slot_condition() -> None:
    cr = _cr(spec={"disabled": True})
    cr["spec"]["source"] = {"mysql": {"connection": {"host": "m", "user": "u", "database": "d"}}}
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=_slot(5 << 30)))
    assert "SlotAtRisk" not in {c["type"] for c in out["conditions"]}
    assert "wal_retained_bytes" not in out and "wal_budget_bytes" not in out


def test_a_budget_stored_under_an_older_crd_falls_back_to_the_default() -> None:
    assert wal_budget_bytes({"wal_budget": "10GB"}, 7) == 7
    assert wal_budget_bytes({"wal_budget": "2Ki"}, 7) == 2048
    assert wal_budget_bytes({}, 7) == 7


# --- the gauges ---------------------------------------------------------------------------------------------------


def test_gauges_follow_status_and_are_forgotten() -> None:
    metrics = OperatorMetrics()
    metrics.observe("ns", "c", {"wal_retained_bytes": 5 * MI, "wal_budget_bytes": MI, "conditions": []})

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"namespace": "ns", "connector": "c"})

    assert sample("sluice_connector_wal_retained_bytes") == 5 * MI
    assert sample("sluice_connector_wal_budget_bytes") == MI
    metrics.observe("ns", "c", {"wal_retained_bytes": None, "wal_budget_bytes": MI, "conditions": []})
    assert sample("sluice_connector_wal_retained_bytes") is None  # the slot is gone: no stale sample
    metrics.observe("ns", "c", {"wal_retained_bytes": 2 * MI, "wal_budget_bytes": MI, "conditions": []})
    metrics.forget("ns", "c")
    assert sample("sluice_connector_wal_retained_bytes") is None
    assert sample("sluice_connector_wal_budget_bytes") is None


# --- kubectl sluice status ----------------------------------------------------------------------------------------


def test_kubectl_status_shows_retained_of_budget_and_flags_the_risk() -> None:
    def row(spec: dict[str, Any], slot: SlotInfo) -> str:
        cr = _cr(spec=spec)
        cr["status"] = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=slot))
        return kubectl_plugin.render_table(kubectl_plugin.STATUS_HEADERS, kubectl_plugin.status_rows([cr]))

    at_risk = row({"disabled": True, "wal_budget": "1Mi"}, _slot(5 * MI))
    assert "5.0 MiB of 1.0 MiB (AT RISK)" in at_risk
    safe = row({"disabled": True, "wal_budget": "1Gi"}, _slot(5 * MI))
    assert "5.0 MiB of 1.0 GiB" in safe and "AT RISK" not in safe
    lost = row({"disabled": True}, SlotInfo(name="sluice_c", exists=True, lag_bytes=None, wal_status="lost"))
    assert "(AT RISK: SlotLost)" in lost
