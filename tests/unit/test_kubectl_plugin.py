"""``kubectl sluice``: the tables it prints, from statuses the worker and the operator really write."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sluice import kubectl_plugin as kp
from sluice.api.services.connectors import COMMAND_ANNOTATION, COMMAND_ID_ANNOTATION, COMMAND_TIME_ANNOTATION
from sluice.models.status import CommandName
from sluice.operator.conditions import Observed, SlotInfo, derive_status
from sluice.worker.k8s_status import status_patch
from sluice.worker.status import TableProgress, WorkerStatus

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POD = {
    "metadata": {"uid": "p"},
    "status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "worker", "state": {"running": {}}, "restartCount": 0, "lastState": {}}],
    },
}


def connector(
    name: str, report: WorkerStatus, *, namespace: str = "ns", disabled: bool = False, slot: SlotInfo | None = None
) -> dict[str, Any]:
    cr: dict[str, Any] = {
        "metadata": {"name": name, "namespace": namespace, "uid": "u", "generation": 1},
        "spec": {"source": {"postgres": {}}, "sink": {"postgres": {}}, **({"disabled": True} if disabled else {})},
        "status": {**status_patch(report), "worker_reported_at": "2026-11-26T11:59:55Z"},
    }
    derived = derive_status(
        Observed(cr=cr, pod=None if disabled else POD, desired_replicas=0 if disabled else 1, now=NOW, slot=slot)
    )
    cr["status"] = {**cr["status"], **derived}
    return cr


def lines(text: str) -> list[list[str]]:
    return [line.split("   ") for line in text.splitlines()]


def test_render_table_aligns_columns_and_marks_empty_cells() -> None:
    out = kp.render_table(("A", "LONGER"), [["xyz", None], ["1", ""]])
    assert out == "A     LONGER\nxyz   -\n1     -\n"


def test_status_table_of_streaming_failed_and_disabled_connectors() -> None:
    err = {"error": "SourceConfig", "message": "wal_level is replica " + "x" * 100, "fix": "Set wal_level = logical."}
    items = [
        connector("b-failed", WorkerStatus("b", "r", state="initialize", status="failed", last_error=err)),
        connector("a-live", WorkerStatus("a", "r", state="realtime", lag_bytes=3 << 20, lag_seconds=1.25)),
        connector(
            "c-off", WorkerStatus("c", "r", state="realtime"), disabled=True, slot=SlotInfo("s", lag_bytes=2 << 30)
        ),
    ]
    out = kp.render_table(kp.STATUS_HEADERS, kp.status_rows(items))
    header, live, failed, off = out.splitlines()
    assert header.split() == ["NAME", "STATE", "READY", "LAG", "WAL", "RETAINED", "LAST", "ERROR"]
    assert live.split()[:6] == ["a-live", "realtime", "True", "3.0", "MiB,", "1.2s"]
    assert live.rstrip().endswith("-")
    assert failed.startswith("b-failed") and "False (SourceConfig)" in failed
    assert "SourceConfig: wal_level is replica" in failed and failed.endswith("...")
    assert len("SourceConfig: " + failed.split("SourceConfig: ")[1]) == kp.ERROR_WIDTH
    assert off.split()[:4] == ["c-off", "disabled", "False", "(Disabled)"] and "2.0 GiB" in off

    wide = kp.status_rows(items, wide=True)
    assert "Fix" not in str(wide) and "x" * 100 in wide[1][5]


def test_status_table_across_namespaces_starts_with_the_namespace() -> None:
    items = [
        connector("z", WorkerStatus("z", "r"), namespace="b"),
        connector("z", WorkerStatus("z", "r"), namespace="a"),
    ]
    rows = kp.status_rows(items, all_namespaces=True)
    assert [r[:2] for r in rows] == [["a", "z"], ["b", "z"]]
    assert kp.render_table(kp.STATUS_HEADERS_ALL, rows).startswith("NAMESPACE   NAME")


def test_tables_progress_from_the_worker_report() -> None:
    tables = {
        "public.orders": TableProgress(phase="snapshot", rows_copied=500, chunks_done=1, chunks_total=4),
        "public.users": TableProgress(phase="copied", rows_copied=10, chunks_done=0, chunks_total=0),
        "public.bad": TableProgress(phase="failed", error="duplicate key value"),
    }
    cr = connector("c", WorkerStatus("c", "r", state="snapshot", tables=tables))
    rows = kp.table_rows(cr)
    by_name = {r[0]: r for r in rows}
    assert by_name["public.orders"][2:5] == [500, "1/4", "25%"]
    assert by_name["public.users"][1] == "snapshotted" and by_name["public.users"][4] == "100%"
    assert by_name["public.bad"][1] == "failed" and by_name["public.bad"][5] == "duplicate key value"
    text = kp.render_table(kp.TABLE_HEADERS, rows)
    assert text.splitlines()[0].split() == ["TABLE", "PHASE", "ROWS", "COPIED", "CHUNKS", "PROGRESS", "ERROR"]


def test_actions_write_what_the_rest_api_writes() -> None:
    assert kp.command_patch("pause") == {"spec": {"disabled": True}}
    assert kp.command_patch("resume") == {"spec": {"disabled": False}}
    notes = kp.command_patch("resync", NOW)["metadata"]["annotations"]
    assert set(notes) == {COMMAND_ANNOTATION, COMMAND_ID_ANNOTATION, COMMAND_TIME_ANNOTATION}
    assert notes[COMMAND_ANNOTATION] == CommandName.REINITIALIZE.value
    assert notes[COMMAND_TIME_ANNOTATION] == "2026-11-26T12:00:00Z"
    assert kp.command_patch("restart")["metadata"]["annotations"][COMMAND_ANNOTATION] == CommandName.RESTART.value


def test_the_package_installs_kubectl_sluice() -> None:
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    module, _, func = pyproject["project"]["scripts"]["kubectl-sluice"].partition(":")
    assert (module, func) == ("sluice.kubectl_plugin", "main") and kp.main is not None
