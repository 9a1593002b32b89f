"""``kubectl sluice`` run by a real kubectl (plugin lookup on PATH) against the real control plane.

No operator runs here: the Connector's status is written through the status subresource with what the worker and
the operator really write (``status_patch`` + ``derive_status``), so the test is about the plugin alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.k8s.jsonclient import JsonClient, api_path
from sluice.operator.conditions import Observed, derive_status
from sluice.worker.k8s_status import status_patch
from sluice.worker.status import TableProgress, WorkerStatus
from tests.support.cluster import get_json

pytestmark = pytest.mark.e2e


def _connector(name: str) -> dict[str, Any]:
    conn = {"user": "u", "password_secret_ref": {"name": "creds", "key": "k"}, "database": "d"}
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Connector",
        "metadata": {"name": name},
        "spec": {
            "source": {
                "postgres": {
                    "connection": {"host": "source.example.svc", **conn},
                    "replication_type": {"logical_replication": {}},
                }
            },
            "sink": {"postgres": {"connection": {"host": "sink.example.svc", **conn}}},
        },
    }


@pytest.fixture
def plugin_path(tmp_path: Path) -> str:
    """A directory holding ``kubectl-sluice`` (this checkout's entry point), first on PATH."""
    shim = tmp_path / "bin" / "kubectl-sluice"
    shim.parent.mkdir()
    shim.write_text(f"#!{sys.executable}\nfrom sluice.kubectl_plugin import main\nraise SystemExit(main())\n")
    shim.chmod(0o755)
    return f"{shim.parent}{os.pathsep}{os.environ.get('PATH', '')}"


def _sluice(plane: ControlPlane, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path, "KUBECONFIG": str(plane.kubeconfig_path)}
    return subprocess.run(
        [str(plane.kubectl_path), "sluice", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_status_tables_and_pause_through_kubectl(
    control_plane: ControlPlane, crd_installed: str, namespace: str, plugin_path: str
) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_connector("orders")))
    client = JsonClient(control_plane.kubeconfig_path)
    cr = client.get(api_path("connectors", namespace, "orders"))
    report = WorkerStatus(
        "orders",
        "r1",
        state="snapshot",
        lag_bytes=4096,
        tables={"public.orders": TableProgress(phase="snapshot", rows_copied=7, chunks_done=1, chunks_total=2)},
    )
    cr["status"] = status_patch(report)
    now = datetime.now(UTC)
    cr["status"] |= derive_status(Observed(cr=cr, pod=None, desired_replicas=1, now=now))
    client.merge_patch(api_path("connectors", namespace, "orders", "status"), {"status": cr["status"]})

    out = _sluice(control_plane, plugin_path, "status", "-n", namespace)
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "STATE", "READY"]
    assert row.split()[:5] == ["orders", "snapshot", "False", "(WorkerPending)", "4.0"]

    out = _sluice(control_plane, plugin_path, "tables", "orders", "-n", namespace)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split() == ["public.orders", "snapshotting", "7", "1/2", "50%", "-"]

    out = _sluice(control_plane, plugin_path, "-n", namespace, "pause", "orders")
    assert out.returncode == 0, out.stderr
    assert get_json(control_plane, "connector", "orders", "-n", namespace)["spec"]["disabled"] is True
    out = _sluice(control_plane, plugin_path, "-n", namespace, "resync", "orders")
    assert out.returncode == 0, out.stderr
    notes = get_json(control_plane, "connector", "orders", "-n", namespace)["metadata"]["annotations"]
    assert notes["sluice.dev/command"] == "ReIntialize"
    out = _sluice(control_plane, plugin_path, "-n", namespace, "resume", "orders")
    assert get_json(control_plane, "connector", "orders", "-n", namespace)["spec"]["disabled"] is False

    missing = _sluice(control_plane, plugin_path, "-n", namespace, "pause", "nope")
    assert missing.returncode == 1 and "connector 'nope' not found" in missing.stderr and "Fix:" in missing.stderr
