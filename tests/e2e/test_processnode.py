"""The process node on the real control plane: the scheduler binds pods to it and it runs them as processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from sluice.devstack.sandbox import find_bwrap
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


@pytest.fixture
def sandbox_available() -> None:
    """bwrap is there (under CI=true the process node already refused to start without it)."""
    if find_bwrap() is None:
        pytest.skip("bwrap not installed: the process node runs read-only-root pods unsandboxed (warned)")


def _volume_dir(process_node: ProcessNode, namespace: str, pod: str, volume: str) -> Path:
    (pod_dir,) = process_node.workdir.glob(f"pods/{namespace}_{pod}_*")
    return pod_dir / "volumes" / volume


@pytest.mark.usefixtures("sandbox_available")
def test_read_only_root_filesystem_only_volumes_are_writable(
    control_plane: ControlPlane, process_node: ProcessNode, namespace: str, tmp_path: Path
) -> None:
    """As under a kubelet: the root is read-only (including /tmp and HOME), the emptyDir is writable, the secret
    volume is read-only, the API server on 127.0.0.1 is reachable, and the exit code comes through the sandbox."""
    outside = tmp_path / "outside"
    control_plane.kubectl("create", "secret", "generic", "ro-creds", "-n", namespace, "--from-literal=k=v")
    script = "; ".join(
        [
            f"touch {outside} && echo outside=written || echo outside=refused",
            "touch /tmp/sluice-ro-probe && echo tmp=written || echo tmp=refused",
            'touch "$HOME/probe" && echo home=written || echo home=refused',
            "echo hi > /data/in-volume && echo volume=written || echo volume=refused",
            "touch /creds/new && echo secret=written || echo secret=refused",
            'echo "secret=$(cat /creds/k)"',
            # The API server listens on 127.0.0.1: the pod shares the host network.
            'python3 -c "import socket, sys; from urllib.parse import urlsplit; import yaml; '
            "u = urlsplit(yaml.safe_load(open(sys.argv[1]))['clusters'][0]['cluster']['server']); "
            'socket.create_connection((u.hostname, u.port), 5); print(\'api=reachable\')" "$KUBECONFIG"',
            "exit 3",
        ]
    )
    spec = _pod_spec(
        "readonly",
        namespace,
        script,
        securityContext={"readOnlyRootFilesystem": True},
        volumeMounts=[{"name": "data", "mountPath": "/data"}, {"name": "creds", "mountPath": "/creds"}],
    )
    spec["spec"]["volumes"] = [
        {"name": "data", "emptyDir": {}},
        {"name": "creds", "secret": {"secretName": "ro-creds"}},
    ]
    _apply(control_plane, spec)
    pod = poll(
        lambda: (p := _pod(control_plane, namespace, "readonly"))["status"].get("phase") == "Failed" and p,
        timeout=60,
        message="pod readonly Failed (it exits 3)",
    )
    (cs,) = pod["status"]["containerStatuses"]
    assert cs["state"]["terminated"]["exitCode"] == 3
    log = process_node.log_path(namespace, "readonly", "main")
    assert log is not None
    text = log.read_text()
    lines = set(text.splitlines())
    expected = {
        "outside=refused",
        "tmp=refused",
        "home=refused",
        "volume=written",
        "secret=refused",
        "secret=v",
        "api=reachable",
    }
    assert expected <= lines, text
    assert "Read-only file system" in text
    assert not outside.exists()
    assert (_volume_dir(process_node, namespace, "readonly", "data") / "in-volume").read_text() == "hi\n"


@pytest.mark.usefixtures("sandbox_available")
def test_sandboxed_pod_gets_sigterm_and_its_grace_period(
    control_plane: ControlPlane, process_node: ProcessNode, namespace: str
) -> None:
    """The signal reaches the sandboxed command (not only bwrap), and the pod stays until the command exits."""
    script = (
        "trap 'sleep 1; echo term > /data/trapped; exit 0' TERM; "
        "echo running > /data/started; while true; do sleep 0.1; done"
    )
    spec = _pod_spec(
        "rosleeper",
        namespace,
        script,
        restart="Always",
        securityContext={"readOnlyRootFilesystem": True},
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
    )
    spec["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}]
    _apply(control_plane, spec)
    poll(
        lambda: _pod(control_plane, namespace, "rosleeper")["status"].get("phase") == "Running",
        timeout=60,
        message="pod rosleeper Running",
    )
    data = _volume_dir(process_node, namespace, "rosleeper", "data")
    poll(lambda: (data / "started").exists(), timeout=30, message="sandboxed command started")
    control_plane.kubectl("delete", "pod", "rosleeper", "-n", namespace, "--wait=false")
    poll(
        lambda: control_plane.kubectl("get", "pod", "rosleeper", "-n", namespace, check=False).returncode != 0,
        timeout=60,
        message="pod rosleeper gone",
    )
    # Written one second after SIGTERM: the pod was not removed before its command finished.
    assert (data / "trapped").read_text().strip() == "term"
