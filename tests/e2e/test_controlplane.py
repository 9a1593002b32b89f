"""The local control plane behaves like a real cluster: TLS, authentication, RBAC, controllers, scheduler, CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from sluice.devstack import K8S_VERSION, ControlPlane, ControlPlaneError, controlplane
from sluice.devstack.binaries import BINARIES, find_binaries
from tests.support.cluster import REPO_ROOT, get_json, poll, require_k8s_binaries

pytestmark = pytest.mark.e2e


def _http(plane: ControlPlane, path: str, token: str | None) -> httpx.Response:
    """A raw HTTPS request to the apiserver, verifying its certificate against our CA."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    context = ssl.create_default_context(cafile=str(plane.ca_cert_path))
    with httpx.Client(base_url=plane.server_url, verify=context, timeout=10) as client:
        return client.get(path, headers=headers)


def test_apiserver_serves_the_pinned_release_over_verified_tls(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == K8S_VERSION
    readyz = control_plane.kubectl("get", "--raw", "/readyz?verbose").stdout
    assert "readyz check passed" in readyz
    # The serving certificate is signed by our CA and valid for the address in the kubeconfig.
    assert _http(control_plane, "/readyz", None).status_code == 200


def test_every_component_is_running(control_plane: ControlPlane) -> None:
    assert control_plane.health() == {
        "etcd": "ok",
        "kube-apiserver": "ok",
        "kube-controller-manager": "ok",
        "kube-scheduler": "ok",
    }


def test_new_namespace_gets_service_account_and_root_ca(control_plane: ControlPlane, namespace: str) -> None:
    # The namespace fixture already waited for the `default` ServiceAccount (serviceaccount controller);
    # the root-CA publisher puts our CA into every namespace for in-cluster clients.
    cm = poll(
        lambda: get_json(control_plane, "configmap", "kube-root-ca.crt", "-n", namespace),
        message="kube-root-ca.crt",
    )
    assert cm["data"]["ca.crt"].strip() == control_plane.ca_cert_path.read_text().strip()


def test_rbac_decides_what_a_service_account_token_may_do(control_plane: ControlPlane, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    nobody = control_plane.create_user_token(namespace, "nobody")
    reader = control_plane.create_user_token(namespace, "reader")

    denied = _http(control_plane, path, nobody)
    assert denied.status_code == 403, denied.text
    assert f"system:serviceaccount:{namespace}:nobody" in denied.json()["message"]

    control_plane.kubectl("create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", namespace)
    control_plane.kubectl(
        "create",
        "rolebinding",
        "cm-reader",
        "--role=cm-reader",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    poll(lambda: _http(control_plane, path, reader).status_code == 200, message="the reader's RoleBinding to apply")
    # ...and the binding grants nothing else, to nobody else.
    assert _http(control_plane, path, nobody).status_code == 403
    assert _http(control_plane, f"/api/v1/namespaces/{namespace}/secrets", reader).status_code == 403


def test_unknown_bearer_token_is_unauthenticated(control_plane: ControlPlane) -> None:
    assert _http(control_plane, "/api/v1/namespaces", "not-a-real-token").status_code == 401


def test_static_token_users(control_plane: ControlPlane) -> None:
    assert _http(control_plane, "/api/v1/namespaces", control_plane.static_token("static-admin")).status_code == 200
    assert _http(control_plane, "/api/v1/namespaces", control_plane.static_token("static-nobody")).status_code == 403


def test_user_kubeconfigs_carry_only_their_users_rights(control_plane: ControlPlane, namespace: str) -> None:
    sa_config = control_plane.user_kubeconfig(namespace=namespace, serviceaccount="viewer")
    control_plane.kubectl(
        "create", "rolebinding", "viewer", "--clusterrole=view", f"--serviceaccount={namespace}:viewer", "-n", namespace
    )
    can_list = poll(
        lambda: (
            control_plane.kubectl("auth", "can-i", "list", "pods", kubeconfig=sa_config, check=False).stdout.strip()
            == "yes"
        ),
        message="the view binding",
    )
    assert can_list
    delete = control_plane.kubectl("auth", "can-i", "delete", "pods", kubeconfig=sa_config, check=False)
    assert delete.stdout.strip() == "no"

    cert_config = control_plane.user_kubeconfig(user="carol", groups=["qa"])
    whoami = json.loads(control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=cert_config).stdout)
    assert whoami["status"]["userInfo"]["username"] == "carol"
    assert "qa" in whoami["status"]["userInfo"]["groups"]
    listing = control_plane.kubectl("get", "pods", "-n", namespace, kubeconfig=cert_config, check=False)
    assert listing.returncode != 0
    assert "forbidden" in listing.stderr.lower()


def test_node_identity_is_limited_by_the_node_authorizer(control_plane: ControlPlane) -> None:
    config = control_plane.node_kubeconfig("proc-node-a")
    whoami = json.loads(control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=config).stdout)
    assert whoami["status"]["userInfo"]["username"] == "system:node:proc-node-a"
    secrets = control_plane.kubectl("get", "secrets", "-A", kubeconfig=config, check=False)
    assert secrets.returncode != 0
    assert "forbidden" in secrets.stderr.lower()


def test_garbage_collector_deletes_dependents(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = get_json(control_plane, "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(dependent))
    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace, "--cascade=background")
    poll(
        lambda: control_plane.kubectl("get", "configmap", "dependent", "-n", namespace, check=False).returncode != 0,
        message="the garbage collector to delete the dependent ConfigMap",
    )


def test_statefulset_controller_creates_a_pod_and_the_scheduler_judges_it(
    control_plane: ControlPlane, namespace: str
) -> None:
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    # No node can match: whatever process nodes other tests register, this pod never runs.
                    "nodeSelector": {"sluice.dev/no-such-node": "true"},
                    "containers": [{"name": "c", "image": "example.invalid/none", "command": ["true"]}],
                },
            },
        },
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(sts))

    def unschedulable() -> dict[str, str] | None:
        pod = get_json(control_plane, "pod", "web-0", "-n", namespace)
        for cond in pod.get("status", {}).get("conditions", []):
            if cond["type"] == "PodScheduled" and cond["status"] == "False":
                return dict(cond)
        return None

    cond = poll(unschedulable, message="web-0 to be created and judged by the scheduler")
    assert cond["reason"] == "Unschedulable"
    # "no nodes available to schedule pods", or "0/N nodes are available: N node(s) didn't match ..."
    assert "node" in cond.get("message", ""), cond


def test_cli_up_status_down(tmp_path: Path, control_plane: ControlPlane) -> None:
    """``make cluster-up``/``cluster-down``: a second, detached cluster that outlives the command that started it."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sluice.devstack.controlplane", *args, "--dir", str(tmp_path / ".sluice")],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=REPO_ROOT,
            check=False,
        )

    up = cli("up")
    try:
        assert up.returncode == 0, up.stderr
        assert "kube-apiserver ready" in up.stderr
        kubeconfig = tmp_path / ".sluice" / "kubeconfig"
        assert kubeconfig.stat().st_mode & 0o077 == 0
        state = json.loads((tmp_path / ".sluice" / "cluster" / "state.json").read_text())
        pids = [c["pid"] for c in state["components"]]
        assert len(pids) == 4
        # The processes outlived `up`, and the kubeconfig works from anywhere.
        nodes = control_plane.kubectl("get", "namespaces", "-o", "name", kubeconfig=kubeconfig)
        assert "namespace/default" in nodes.stdout

        status = cli("status")
        assert status.returncode == 0, status.stdout + status.stderr
        for component in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            assert f"{component}: ok" in status.stdout

        # Another process can attach to the running cluster and issue identities from its CA (sluice dev does).
        attached = ControlPlane.attach(tmp_path / ".sluice" / "cluster")
        assert attached is not None
        node_config = attached.node_kubeconfig("attached-node")
        whoami = json.loads(control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=node_config).stdout)
        assert whoami["status"]["userInfo"]["username"] == "system:node:attached-node"

        again = cli("up")
        assert again.returncode == 0
        assert "already running" in again.stderr
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], pid
    assert not kubeconfig.exists()
    assert cli("status").returncode == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_runs_as_a_non_root_user() -> None:
    """Nothing in the control plane needs root: start one as the unprivileged ``nobody`` user."""
    require_k8s_binaries()
    built = find_binaries()
    # Not under tmp_path: pytest's base temp directory is private to root.
    top = Path(tempfile.mkdtemp(prefix="sluice-nonroot-"))
    try:
        bin_copy = top / "bin"
        bin_copy.mkdir()
        for name in BINARIES:
            source = built[name]
            try:
                os.link(source, bin_copy / name)  # no copy of ~400 MB when on the same file system
            except OSError:
                shutil.copy2(source, bin_copy / name)
        work = top / "work"
        work.mkdir()
        for path in (top, bin_copy, work):
            os.chown(path, 65534, 65534)
            path.chmod(0o755)
        script = (
            "from pathlib import Path; from sluice.devstack import ControlPlane\n"
            f"p = ControlPlane(Path({str(work)!r}), bin_dir=Path({str(bin_copy)!r}))\n"
            "p.start(timeout=120)\n"
            "print(p.kubectl('auth', 'whoami').stdout)\n"
            "p.stop()\n"
        )
        python = _python_for_nobody()
        result = subprocess.run(
            ["runuser", "-u", "nobody", "--", python, "-c", script],
            capture_output=True,
            text=True,
            timeout=240,
            cwd="/",
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "HOME": str(work)},
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "sluice-admin" in result.stdout
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _python_for_nobody() -> str:
    """An interpreter the ``nobody`` user can run with what the control plane imports (cryptography, yaml).

    The virtualenv's interpreter may live under root's home (pyenv), out of reach of other users.
    """
    for candidate in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(
            ["runuser", "-u", "nobody", "--", candidate, "-c", "import cryptography, yaml"],
            capture_output=True,
            cwd="/",
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    pytest.skip("no Python interpreter with cryptography and PyYAML is usable by the nobody user")


def test_start_survives_losing_a_port_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A port picked as free but taken before etcd binds it costs a retry, not a failed session."""
    require_k8s_binaries()
    real_free_ports = controlplane._free_ports
    calls: list[list[int]] = []
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]

        def ports_with_one_taken(count: int) -> list[int]:
            ports = real_free_ports(count)
            if not calls:
                ports[0] = taken  # etcd's client port
            calls.append(ports)
            return ports

        monkeypatch.setattr(controlplane, "_free_ports", ports_with_one_taken)
        lines: list[str] = []
        with ControlPlane(tmp_path / "cp", progress=lines.append) as plane:
            assert plane.health()["kube-apiserver"] == "ok"
    assert len(calls) == 2
    assert any("port was taken" in line for line in lines), lines


def test_a_failing_component_is_named_with_its_log(tmp_path: Path) -> None:
    require_k8s_binaries()
    plane = ControlPlane(tmp_path / "cp", extra_apiserver_args=["--no-such-flag=1"])
    with pytest.raises(ControlPlaneError) as info:
        plane.start(timeout=60)
    message = info.value.message
    assert message.startswith("kube-apiserver exited with status"), message
    assert "unknown flag: --no-such-flag" in message  # the tail of kube-apiserver.log
    assert str(tmp_path / "cp" / "logs" / "kube-apiserver.log") in message
    assert plane.processes == []  # etcd was stopped again
