"""``sluice api`` as a real server process (uvicorn) against the real control plane, and against none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sluice.devstack import ControlPlane, free_port
from tests.e2e.test_api import PASSWORD, SEED_BODY
from tests.support.cluster import get_json, poll

pytestmark = pytest.mark.e2e


class Server:
    def __init__(self, log_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"sluice-api-{self.port}.log"
        self._log = self.log_path.open("w")
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("SLUICE_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluice", "api", "--host", "127.0.0.1", "--port", str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        poll(self._healthy, timeout=30, message=f"sluice api on port {self.port}", describe=self.log)

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"sluice api exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*args: str) -> Server:
        server = Server(tmp_path, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_no_auth_server_creates_connector_and_logs_loudly(
    server_factory: Callable[..., Server], api_kubeconfig: Path, control_plane: ControlPlane, namespace: str
) -> None:
    server = server_factory("--kubeconfig", str(api_kubeconfig), "--namespace", namespace, "--no-auth")
    assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
    r = httpx.post(f"{server.url}/api/v1/connectors", json=SEED_BODY, timeout=10)
    assert r.status_code == 201, r.text
    cid = r.json()["connector"]["id"]
    names = [c["metadata"]["name"] for c in get_json(control_plane, "connectors", "-n", namespace)["items"]]
    assert names == [cid]
    log = server.log()
    assert "AUTHENTICATION IS OFF" in log
    assert "WARNING" in log
    assert PASSWORD not in log


def test_server_with_auth_uses_the_callers_token(
    server_factory: Callable[..., Server], api_kubeconfig: Path, control_plane: ControlPlane, namespace: str
) -> None:
    server = server_factory("--kubeconfig", str(api_kubeconfig))
    assert httpx.post(f"{server.url}/api/v1/connectors", json=SEED_BODY, timeout=10).status_code == 401
    token = control_plane.create_user_token(namespace, "writer")
    control_plane.kubectl(
        "create",
        "rolebinding",
        "writer",
        "--clusterrole=sluice-connector-editor",
        f"--serviceaccount={namespace}:writer",
        "-n",
        namespace,
    )
    headers = {"Authorization": f"Bearer {token}"}
    r = httpx.post(
        f"{server.url}/api/v1/connectors", params={"namespace": namespace}, json=SEED_BODY, headers=headers, timeout=10
    )
    assert r.status_code == 201, r.text
    assert "AUTHENTICATION IS OFF" not in server.log()


def test_unreachable_apiserver_is_503(server_factory: Callable[..., Server], tmp_path: Path) -> None:
    """The API pointed at a closed port answers 503 (not 500) and says what to check."""
    kubeconfig = tmp_path / "closed.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": f"https://127.0.0.1:{free_port()}", "insecure-skip-tls-verify": True},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    server = server_factory("--kubeconfig", str(kubeconfig))
    started = time.monotonic()
    r = httpx.post(f"{server.url}/api/v1/connectors", json=SEED_BODY, headers={"Authorization": "Bearer x"}, timeout=30)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "KubernetesUnavailable"
    assert "reachable" in r.json()["fix"]
    assert time.monotonic() - started < 30
    assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 503
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
