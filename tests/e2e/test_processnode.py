"""The process node on the real control plane: the scheduler binds pods to it and it runs them as processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.support.cluster import poll

pytestmark = pytest.mark.e2e


def _pod(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(control_plane.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)
    return out


def _apply(control_plane: ControlPlane, obj: dict[str, Any]) -> None:
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(obj))


def _pod_spec(name: str, namespace: str, script: str, restart: str = "Never", **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "ignored", "command": ["sh", "-c", script], **container}],
        },
    }


def test_pod_runs_as_process_and_succeeds(
    control_plane: ControlPlane, process_node: ProcessNode, namespace: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    _apply(control_plane, _pod_spec("writer", namespace, f"echo hello > {marker}; echo done"))
    pod = poll(
        lambda: (p := _pod(control_plane, namespace, "writer"))["status"].get("phase") == "Succeeded" and p,
        timeout=60,
        message="pod writer Succeeded",
    )
    assert marker.read_text() == "hello\n"
    assert pod["spec"]["nodeName"] == process_node.name
    (cs,) = pod["status"]["containerStatuses"]
    assert cs["state"]["terminated"]["exitCode"] == 0
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["PodScheduled"] == "True" and conditions["Initialized"] == "True"
    log = process_node.log_path(namespace, "writer", "main")
    assert log is not None and "done" in log.read_text()


def test_env_resolution(control_plane: ControlPlane, process_node: ProcessNode, namespace: str, tmp_path: Path) -> None:
    out = tmp_path / "env"
    control_plane.kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=password=s3cret")
    control_plane.kubectl(
        "create", "configmap", "settings", "-n", namespace, "--from-literal=mode=fast", "--from-literal=level=3"
    )
    env = [
        {"name": "PLAIN", "value": "v1"},
        {"name": "EXPANDED", "value": "$(PLAIN)-x"},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    script = f'echo "$PLAIN|$EXPANDED|$PASSWORD|$MODE|$POD|$NS|$CFG_level" > {out}'
    spec = _pod_spec(
        "envpod", namespace, script, env=env, envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}]
    )
    _apply(control_plane, spec)
    poll(
        lambda: _pod(control_plane, namespace, "envpod")["status"].get("phase") == "Succeeded",
        timeout=60,
        message="pod envpod Succeeded",
    )
    assert out.read_text().strip() == f"v1|v1-x|s3cret|fast|envpod|{namespace}|3"


def test_restart_on_failure_counts_restarts(
    control_plane: ControlPlane, process_node: ProcessNode, namespace: str, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    # Fails twice, then succeeds: OnFailure restarts it with back-off and counts the restarts.
    script = f"echo x >> {counter}; test $(wc -l < {counter}) -ge 3"
    _apply(control_plane, _pod_spec("flaky", namespace, script, restart="OnFailure"))
    pod = poll(
        lambda: (p := _pod(control_plane, namespace, "flaky"))["status"].get("phase") == "Succeeded" and p,
        timeout=90,
        message="pod flaky Succeeded after restarts",
    )
    (cs,) = pod["status"]["containerStatuses"]
    assert cs["restartCount"] == 2
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert len(counter.read_text().splitlines()) == 3


def test_delete_terminates_process_with_sigterm(
    control_plane: ControlPlane, process_node: ProcessNode, namespace: str, tmp_path: Path
) -> None:
    trapped = tmp_path / "trapped"
    script = f"trap 'echo term > {trapped}; exit 0' TERM; while true; do sleep 0.1; done"
    _apply(control_plane, _pod_spec("sleeper", namespace, script, restart="Always"))
    poll(
        lambda: _pod(control_plane, namespace, "sleeper")["status"].get("phase") == "Running",
        timeout=60,
        message="pod sleeper Running",
    )
    control_plane.kubectl("delete", "pod", "sleeper", "-n", namespace, "--wait=false")
    poll(
        lambda: control_plane.kubectl("get", "pod", "sleeper", "-n", namespace, check=False).returncode != 0,
        timeout=60,
        message="pod sleeper gone",
    )
    assert trapped.read_text().strip() == "term"
