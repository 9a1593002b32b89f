"""Argo CD health check and resource actions for sluice.dev/Connector, run in a real Lua interpreter (lupa).

The Connectors they read are built the way the cluster builds them: the worker's report (``status_patch`` of a
``WorkerStatus``) merged with what the operator derives from it (``derive_status``), not hand-written statuses.
"""

from __future__ import annotations

import copy
import importlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.api.services.connectors import COMMAND_ANNOTATION, COMMAND_ID_ANNOTATION, COMMAND_TIME_ANNOTATION
from sluice.operator.conditions import Observed, SlotInfo, derive_status
from sluice.worker.k8s_status import status_patch
from sluice.worker.status import TableProgress, WorkerStatus

lupa = pytest.importorskip("lupa", reason="lupa (Lua in a wheel) is a dev dependency: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[2]
ARGO = ROOT / "deploy" / "argocd"
ACTIONS = ("restart", "resync", "pause", "resume")
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


# -- Lua plumbing --------------------------------------------------------------------------------------------


# Argo CD runs gopher-lua, a Lua 5.1: every script runs under Lua 5.1 and under the newest Lua of the wheel.
RUNTIMES = ("lua51", "lua54")
runtime: Any = None


@pytest.fixture(autouse=True, params=RUNTIMES)
def lua_version(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "runtime", importlib.import_module(f"lupa.{request.param}"))


def _to_lua(lua: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items() if v is not None})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def _from_lua(value: Any) -> Any:
    if runtime.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
        return [_from_lua(items[i]) for i in range(1, len(items) + 1)]
    return {k: _from_lua(v) for k, v in items.items()}


def run_lua(script: str, obj: dict[str, Any]) -> Any:
    """Run ``script`` as Argo CD does: ``obj`` is a global, the chunk's return value is the answer."""
    lua = runtime.LuaRuntime(unpack_returned_tuples=True)
    assert lua.lua_implementation.startswith("Lua 5.")
    lua.globals().obj = _to_lua(lua, copy.deepcopy(obj))
    return _from_lua(lua.execute(script))


def health(obj: dict[str, Any]) -> dict[str, Any]:
    out = run_lua((ARGO / "health.lua").read_text(), obj)
    assert set(out) <= {"status", "message"}, out
    return out  # type: ignore[no-any-return]


# -- Connectors as the operator and the worker write them -----------------------------------------------------


def _pod(*, running: bool = True) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": "2026-11-26T11:00:00Z"}} if running else {"waiting": {}}
    return {
        "metadata": {"uid": "pod-1"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if running else "False"}],
            "containerStatuses": [{"name": "worker", "state": state, "restartCount": 0, "lastState": {}}],
        },
    }


def connector(
    report: WorkerStatus | None = None,
    *,
    pod: dict[str, Any] | None = None,
    disabled: bool = False,
    slot: SlotInfo | None = None,
) -> dict[str, Any]:
    cr: dict[str, Any] = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Connector",
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "uid": "u",
            "generation": 3,
            "creationTimestamp": "2026-11-01T00:00:00Z",
        },
        "spec": {"source": {"postgres": {}}, "sink": {"postgres": {}}, **({"disabled": True} if disabled else {})},
        "status": {},
    }
    if report is not None:
        cr["status"] = status_patch(report)
        cr["status"]["worker_reported_at"] = "2026-11-26T11:59:50Z"
    derived = derive_status(Observed(cr=cr, pod=pod, desired_replicas=0 if disabled else 1, now=NOW, slot=slot))
    cr["status"] = {**cr["status"], **derived}
    return cr


def _ready(cr: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in cr["status"]["conditions"] if c["type"] == "Ready")


# -- health ---------------------------------------------------------------------------------------------------


def test_streaming_connector_is_healthy() -> None:
    cr = connector(WorkerStatus("c", "r", state="realtime", lag_bytes=2048), pod=_pod())
    assert _ready(cr)["status"] == "True"
    assert health(cr) == {"status": "Healthy", "message": _ready(cr)["message"]}


def test_snapshotting_connector_is_progressing() -> None:
    tables = {"public.orders": TableProgress(phase="snapshot", rows_copied=10, chunks_done=1, chunks_total=4)}
    cr = connector(WorkerStatus("c", "r", state="snapshot", tables=tables), pod=_pod())
    out = health(cr)
    assert out["status"] == "Progressing" and out["message"].startswith("Snapshotting")


@pytest.mark.parametrize(
    ("report", "pod"),
    [(None, None), (WorkerStatus("c", "r", state="initialize"), _pod()), (None, _pod(running=False))],
    ids=["no-pod-yet", "initializing", "pod-starting"],
)
def test_starting_connector_is_progressing(report: WorkerStatus | None, pod: dict[str, Any] | None) -> None:
    cr = connector(report, pod=pod)
    assert _ready(cr)["status"] == "False"
    assert health(cr)["status"] == "Progressing"


def test_failed_connector_is_degraded_with_the_operators_message() -> None:
    err = {"error": "SourceConfig", "message": "wal_level is replica", "fix": "Set wal_level = logical."}
    cr = connector(WorkerStatus("c", "r", state="initialize", status="failed", last_error=err), pod=_pod())
    ready = _ready(cr)
    out = health(cr)
    assert out["status"] == "Degraded"
    assert ready["message"] in out["message"] and "Set wal_level = logical." in out["message"]


def test_failed_table_is_degraded() -> None:
    tables = {"public.t": TableProgress(phase="failed", error="duplicate key")}
    cr = connector(WorkerStatus("c", "r", state="realtime", tables=tables), pod=_pod())
    out = health(cr)
    assert out["status"] == "Degraded" and "public.t" in out["message"]


def test_disabled_connector_is_suspended_and_says_wal_is_retained() -> None:
    cr = connector(WorkerStatus("c", "r", state="realtime"), disabled=True, slot=SlotInfo("c_slot", lag_bytes=5 << 20))
    out = health(cr)
    assert out["status"] == "Suspended"
    assert "c_slot" in out["message"] and "5.0 MiB" in out["message"]


def test_a_slot_past_its_budget_is_degraded_even_while_paused() -> None:
    """Suspended would hide the one thing that can hurt a paused connector's source: a slot filling its disk."""
    cr = connector(
        WorkerStatus("c", "r", state="realtime"),
        disabled=True,
        slot=SlotInfo("c_slot", exists=True, lag_bytes=5 << 20, wal_status="reserved"),
    )
    cr["spec"]["wal_budget"] = "1Mi"
    derived = derive_status(
        Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=SlotInfo("c_slot", True, False, 5 << 20))
    )
    cr["status"] = {**cr["status"], **derived}
    risk = next(c for c in cr["status"]["conditions"] if c["type"] == "SlotAtRisk")
    assert risk["status"] == "True", risk
    out = health(cr)
    assert out["status"] == "Degraded" and out["message"].startswith(risk["reason"]) and "c_slot" in out["message"]
    # within budget it is Suspended again
    cr["spec"]["wal_budget"] = "1Gi"
    cr["status"] = {
        **cr["status"],
        **derive_status(
            Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=SlotInfo("c_slot", True, False, 5 << 20))
        ),
    }
    assert health(cr)["status"] == "Suspended"


def test_deleting_connector_is_progressing() -> None:
    cr = connector(WorkerStatus("c", "r", state="realtime"), pod=_pod())
    cr["metadata"]["deletionTimestamp"] = "2026-11-26T12:00:00Z"
    assert health(cr)["status"] == "Progressing"


def test_unobserved_generation_and_no_status_are_progressing() -> None:
    cr = connector(WorkerStatus("c", "r", state="realtime"), pod=_pod())
    assert health(cr)["status"] == "Healthy"
    cr["metadata"]["generation"] = 4
    assert health(cr)["status"] == "Progressing"
    cr.pop("status")
    assert health(cr)["status"] == "Progressing"


# -- actions --------------------------------------------------------------------------------------------------


def _action(name: str, obj: dict[str, Any]) -> dict[str, Any]:
    out = run_lua((ARGO / "actions" / f"{name}.lua").read_text(), obj)
    assert isinstance(out, dict)
    return out


def test_discovery_offers_pause_or_resume_by_spec_disabled() -> None:
    running = connector(WorkerStatus("c", "r", state="realtime"), pod=_pod())
    stopped = connector(WorkerStatus("c", "r", state="realtime"), disabled=True)
    script = (ARGO / "actions" / "discovery.lua").read_text()
    on, off = run_lua(script, running), run_lua(script, stopped)
    assert set(on) == set(ACTIONS) == set(off)
    assert [on[a]["disabled"] for a in ACTIONS] == [False, False, False, True]
    assert [off[a]["disabled"] for a in ACTIONS] == [True, True, True, False]


@pytest.mark.parametrize(("action", "command"), [("restart", "Restart"), ("resync", "ReIntialize")])
def test_one_shot_actions_write_the_command_annotations_the_operator_reads(action: str, command: str) -> None:
    cr = connector(WorkerStatus("c", "r", state="realtime"), pod=_pod())
    cr["metadata"]["annotations"] = {"team": "data"}
    out = _action(action, cr)
    notes = out["metadata"]["annotations"]
    assert notes[COMMAND_ANNOTATION] == command and notes["team"] == "data"
    assert notes[COMMAND_ID_ANNOTATION]
    assert datetime.strptime(notes[COMMAND_TIME_ANNOTATION], "%Y-%m-%dT%H:%M:%SZ")
    assert out["spec"] == cr["spec"] and out["status"]["conditions"] == cr["status"]["conditions"]
    assert _action(action, {"metadata": {"name": "c"}, "spec": {}})["metadata"]["annotations"][COMMAND_ANNOTATION]


def test_pause_and_resume_set_spec_disabled_only() -> None:
    cr = connector(WorkerStatus("c", "r", state="realtime"), pod=_pod())
    paused = _action("pause", cr)
    assert paused["spec"]["disabled"] is True
    assert {k: v for k, v in paused["spec"].items() if k != "disabled"} == cr["spec"]
    assert _action("resume", paused)["spec"]["disabled"] is False


# -- the argocd-cm patch --------------------------------------------------------------------------------------


def test_argocd_cm_patch_embeds_exactly_the_scripts() -> None:
    data = yaml.safe_load((ARGO / "argocd-cm-patch.yaml").read_text())["data"]
    assert data["resource.customizations.health.sluice.dev_Connector"] == (ARGO / "health.lua").read_text()
    actions = yaml.safe_load(data["resource.customizations.actions.sluice.dev_Connector"])
    assert actions["discovery.lua"] == (ARGO / "actions" / "discovery.lua").read_text()
    assert [d["name"] for d in actions["definitions"]] == list(ACTIONS)
    for d in actions["definitions"]:
        assert d["action.lua"] == (ARGO / "actions" / f"{d['name']}.lua").read_text()
