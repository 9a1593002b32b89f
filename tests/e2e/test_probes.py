"""Probes on the real control plane: the process node runs them as a kubelet would, and the worker answers them.

- a pod with an ``httpGet`` readiness probe is Ready only once it answers; two pods declaring the same
  ``containerPort`` each get a host port of their own (the node rewrites the env value naming the port);
- a failing liveness probe kills and restarts a container, counted in ``restartCount``;
- a worker whose process is frozen (SIGSTOP: its loop and its HTTP server stop) is restarted by its liveness probe,
  and the connector returns to Streaming with no change lost.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.e2e.test_operator import TABLES, _describe, _seed, _start, _unique, _wait_streaming, _worker_pod
from tests.support.cluster import poll
from tests.support.operator import OperatorProcess, operator_namespace
from tests.support.pg import PgDatabase, wait_tables_equal

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the test operator watches (``op-*``); plain pods run there as anywhere."""
    yield from operator_namespace(control_plane, request)


def _pod(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(control_plane.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)
    return out


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def _server_pod(name: str, script: str, **container: Any) -> dict[str, Any]:
    """A pod whose container serves HTTP on ``$PORT``, declared as containerPort 8080."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "main",
                    "image": "ignored",
                    "command": ["sh", "-c", script],
                    "env": [{"name": "PORT", "value": "8080"}],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    **container,
                }
            ],
        },
    }


def _apply(control_plane: ControlPlane, namespace: str, obj: dict[str, Any]) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def test_readiness_probe_gates_ready_and_ports_do_not_collide(
    control_plane: ControlPlane, process_node: ProcessNode, namespace: str, tmp_path: Path
) -> None:
    flag = tmp_path / "serve"
    serve = "exec python -m http.server $PORT --bind 127.0.0.1"
    readiness = {"readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1}}
    # "late" runs at once but serves only once the flag exists; "early" serves at once, on the same declared port.
    _apply(
        control_plane,
        namespace,
        _server_pod("late", f"while [ ! -e {flag} ]; do sleep 0.1; done; {serve}", **readiness),
    )
    poll(
        lambda: _pod(control_plane, namespace, "late")["status"].get("phase") == "Running",
        timeout=60,
        message="pod late Running",
    )
    _apply(control_plane, namespace, _server_pod("early", serve, **readiness))
    poll(lambda: _ready(_pod(control_plane, namespace, "early")), timeout=60, message="pod early Ready")
    # The readiness probe of "late" has been failing all along (it started first, with the same period).
    late = _pod(control_plane, namespace, "late")
    assert late["status"]["phase"] == "Running" and not _ready(late)
    assert late["status"]["containerStatuses"][0]["ready"] is False

    flag.write_text("")
    poll(lambda: _ready(_pod(control_plane, namespace, "late")), timeout=30, message="pod late Ready once it serves")
    ports = {pod: process_node.host_port(namespace, pod, 8080) for pod in ("early", "late")}
    assert None not in ports.values() and ports["early"] != ports["late"], ports
    for port in ports.values():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            assert resp.status == 200
    assert all(_pod(control_plane, namespace, p)["status"]["containerStatuses"][0]["restartCount"] == 0 for p in ports)


def test_failing_liveness_probe_restarts_the_container(
    control_plane: ControlPlane, process_node: ProcessNode, namespace: str
) -> None:
    liveness = {
        "livenessProbe": {"httpGet": {"path": "/missing", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2}
    }
    _apply(control_plane, namespace, _server_pod("unwell", "exec python -m http.server $PORT", **liveness))

    def restarted() -> dict[str, Any] | None:
        (cs,) = _pod(control_plane, namespace, "unwell")["status"].get("containerStatuses") or [{}]
        return cs if cs.get("restartCount", 0) >= 1 else None

    cs = poll(restarted, timeout=60, message="pod unwell restarted by its liveness probe")
    message = cs["lastState"]["terminated"].get("message", "")
    assert "Liveness probe failed: HTTP 404" in message, cs


def test_frozen_worker_is_restarted_by_its_liveness_probe_with_nothing_lost(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = _unique("wedge")
    pod_name = f"{name}-worker-0"
    _seed(source_db)
    _start(control_plane, namespace, source_db, sink_db, name)
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    pod = _worker_pod(control_plane, namespace, name)
    assert pod is not None and _ready(pod)
    (container,) = pod["spec"]["containers"]
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(container)
    port = process_node.host_port(namespace, pod_name, container["ports"][0]["containerPort"])
    assert port is not None
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            assert resp.status == 200, path

    # Frozen: neither the replication loop nor the HTTP server runs, exactly like a process wedged for good.
    assert process_node.signal_container(namespace, pod_name, "worker", signal.SIGSTOP)
    source_db.execute("INSERT INTO orders SELECT g, 'while-frozen', 1 FROM generate_series(101, 250) g")

    def restarted() -> dict[str, Any] | None:
        current = _worker_pod(control_plane, namespace, name) or {}
        statuses = (current.get("status") or {}).get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount", 0) >= 1 else None

    cs = poll(
        restarted,
        timeout=240,  # 6 failed probes 10 s apart, each waiting up to 10 s, then a 10 s kill grace
        message="the frozen worker restarted by its liveness probe",
        describe=lambda: _describe(control_plane, process_node, sluice_operator, namespace, name),
    )
    assert "Liveness probe failed" in cs["lastState"]["terminated"].get("message", ""), cs
    wait_tables_equal(source_db, sink_db, TABLES, timeout=120)
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    assert sink_db.scalar("SELECT count(*) FROM orders") == 250
    assert sink_db.scalar("SELECT count(*) FROM orders WHERE item = 'while-frozen'") == 150
