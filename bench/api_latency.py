"""Latency of ``POST /api/v1/connectors`` through a real ``sluice api`` server and a real control plane.

Starts its own control plane (etcd, kube-apiserver, controller-manager, scheduler from ``hack/build-k8s.sh``),
applies the CRD and the API's RBAC, runs ``sluice api`` (uvicorn) as the least-privilege ServiceAccount, and
sends N sequential creates of the reference example body with a caller's bearer token (auth on: TokenReview +
SubjectAccessReview, positive answers cached for ``SLUICE_AUTH_CACHE_SECONDS``). Prints p50/p90/p99.

    .venv/bin/python bench/api_latency.py [--requests 200] [--no-auth]

Each create = authorization (cached after the first) + one Connector create + one Secret create. It is a
measurement, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from sluice.devstack import ControlPlane, free_port

REPO = Path(__file__).resolve().parents[1]

#: The example body of the reference page ("Create a new connector").
_CONN = {"host": "example.com", "user": "string", "password": "pa$$word", "database": "string"}
SEED_BODY = {
    "id": "string",
    "source": {"postgres": {"connection": _CONN, "replication_type": {"logical_replication": {}}}},
    "sink": {"postgres": {"connection": _CONN}},
}


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--no-auth", action="store_true", help="measure without TokenReview/SubjectAccessReview")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sluice-bench-api-") as tmp, ControlPlane(Path(tmp) / "cp") as cp:
        cp.kubectl("apply", "-f", str(REPO / "crds" / "connector.yaml"))
        wait_for(lambda: cp.kubectl("get", "connectors", "-A", check=False).returncode == 0, "the CRD to be served")
        cp.kubectl("create", "namespace", "sluice-system")
        cp.kubectl("create", "namespace", "bench")
        cp.kubectl(
            "apply", "-f", str(REPO / "manifests/rbac/api.yaml"), "-f", str(REPO / "manifests/rbac/user-roles.yaml")
        )
        api_kubeconfig = cp.user_kubeconfig(namespace="sluice-system", serviceaccount="sluice-api")
        token = cp.create_user_token("bench", "writer")
        cp.kubectl(
            "create",
            "rolebinding",
            "writer",
            "--clusterrole=sluice-connector-editor",
            "--serviceaccount=bench:writer",
            "-n",
            "bench",
        )

        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"SLUICE_LOG_LEVEL": "WARNING"}
        argv = [
            sys.executable,
            "-m",
            "sluice",
            "api",
            "--port",
            str(port),
            "--kubeconfig",
            str(api_kubeconfig),
            "--namespace",
            "bench",
        ]
        if args.no_auth:
            argv.append("--no-auth")
        server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: _ready(url), "sluice api to become ready", timeout=30)
            headers = {"Authorization": f"Bearer {token}"}
            timings: list[float] = []
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                for _ in range(args.requests):
                    began = time.perf_counter()
                    r = client.post("/api/v1/connectors", json=SEED_BODY)
                    timings.append((time.perf_counter() - began) * 1000)
                    if r.status_code != 201:
                        raise SystemExit(f"unexpected {r.status_code}: {r.text}")
            mode = "no-auth" if args.no_auth else "auth (TokenReview + SubjectAccessReview, cached 5 s)"
            print(f"POST /api/v1/connectors x{len(timings)} sequential, {mode}:")
            print(
                f"  p50 {percentile(timings, 50):.1f} ms  p90 {percentile(timings, 90):.1f} ms  "
                f"p99 {percentile(timings, 99):.1f} ms  max {max(timings):.1f} ms  "
                f"mean {statistics.mean(timings):.1f} ms"
            )
            count = cp.kubectl("get", "connectors", "-n", "bench", "--no-headers").stdout.count("\n")
            print(f"  connectors created: {count}")
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
