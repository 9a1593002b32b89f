"""Probes on the process node (:mod:`sluice.devstack.probes`): the kubelet's rules as a pure state machine, the
port map, the three actions against real local servers, and a pod runner killing a container whose liveness
probe failed."""

from __future__ import annotations

import http.server
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack.podrunner import ContainerProc, PodRunner
from sluice.devstack.probes import ContainerProbes, PortMap, ProbeSpec, ProbeTracker, run_probe

HTTP = {"httpGet": {"path": "/healthz", "port": "metrics"}}


def _container(**probes: Any) -> dict[str, Any]:
    return {"name": "c", "ports": [{"name": "metrics", "containerPort": 9102}], **probes}


def test_defaults_and_thresholds_as_the_kubelet() -> None:
    spec = ProbeSpec.from_k8s("readinessProbe", {**HTTP, "successThreshold": 2})
    assert (spec.initial_delay, spec.period, spec.timeout, spec.failure_threshold) == (0, 10, 1, 3)
    # Liveness and startup always use a success threshold of 1.
    assert ProbeSpec.from_k8s("livenessProbe", {**HTTP, "successThreshold": 5}).success_threshold == 1
    tracker = ProbeTracker(spec, started_at=0)
    tracker.record(True)
    assert tracker.result is None  # one success of two needed
    tracker.record(True)
    assert tracker.result is True
    tracker.record(False)
    tracker.record(False)
    assert tracker.result is True  # two failures of three
    tracker.record(True)  # a success resets the failure count
    tracker.record(False)
    tracker.record(False)
    assert tracker.result is True
    tracker.record(False)
    assert tracker.result is False


def test_initial_delay_period_and_one_probe_in_flight() -> None:
    tracker = ProbeTracker(ProbeSpec.from_k8s("livenessProbe", {**HTTP, "initialDelaySeconds": 5}), started_at=100)
    assert not tracker.due(104.9)
    assert tracker.due(105)
    tracker.begin(105)
    assert not tracker.due(200)  # the previous probe has not answered yet
    tracker.record(True)
    assert not tracker.due(114.9)
    assert tracker.due(115)


def test_startup_gates_liveness_and_readiness() -> None:
    probes = ContainerProbes.from_spec(
        _container(
            startupProbe={**HTTP, "failureThreshold": 2},
            livenessProbe={**HTTP, "failureThreshold": 1},
            readinessProbe={"tcpSocket": {"port": 9102}},
        ),
        started_at=0,
    )
    assert [t.spec.kind for t in probes.due(0)] == ["startupProbe"]
    assert not probes.started and not probes.ready
    assert probes.startup is not None and probes.liveness is not None and probes.readiness is not None
    probes.startup.record(True)
    assert probes.started and not probes.ready  # readiness has not passed yet
    assert [t.spec.kind for t in probes.due(0)] == ["livenessProbe", "readinessProbe"]
    probes.readiness.record(True)
    assert probes.ready and probes.kill_reason() is None
    probes.liveness.record(False, "HTTP 503")
    reason = probes.kill_reason()
    assert reason is not None and "Liveness probe failed: HTTP 503" in reason[0]


def test_failed_startup_kills_and_unstarted_liveness_does_not() -> None:
    probes = ContainerProbes.from_spec(
        _container(
            startupProbe={**HTTP, "failureThreshold": 1, "terminationGracePeriodSeconds": 3},
            livenessProbe={**HTTP, "failureThreshold": 1},
        ),
        started_at=0,
    )
    assert probes.liveness is not None and probes.startup is not None
    probes.liveness.record(False)  # cannot happen in order, and must not count before startup passed
    assert probes.kill_reason() is None
    probes.startup.record(False, "connection refused")
    assert probes.kill_reason() == ("Startup probe failed: connection refused", 3.0)


def test_port_map_rewrites_only_values_that_name_the_port() -> None:
    ports = PortMap.allocate(
        [_container(), {"name": "d", "ports": [{"containerPort": 8080}]}], iter([41000, 42000]).__next__
    )
    assert ports.ports == {9102: 41000, 8080: 42000}
    assert [ports.rewrite(v) for v in ("9102", "--port=9102", "0.0.0.0:8080", "19102", "9102x", "a 9102 b")] == [
        "41000",
        "--port=41000",
        "0.0.0.0:42000",
        "19102",
        "9102x",
        "a 9102 b",
    ]
    assert (ports.host_port("metrics"), ports.host_port(8080), ports.host_port("7000")) == (41000, 42000, 7000)
    with pytest.raises(ValueError, match="not a named port"):
        ports.host_port("nope")


@pytest.fixture
def http_server() -> Iterator[tuple[int, dict[str, int]]]:
    answers = {"/healthz": 200, "/readyz": 503}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(answers.get(self.path, 404))
            self.end_headers()
            self.wfile.write(self.path.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_port), answers
    finally:
        server.shutdown()
        server.server_close()


def test_actions_against_real_endpoints(http_server: tuple[int, dict[str, int]], tmp_path: Path) -> None:
    port, _ = http_server
    ports = PortMap(ports={9102: port}, names={"metrics": 9102})

    def probe(action: dict[str, Any]) -> bool:
        return run_probe(ProbeSpec("livenessProbe", action, timeout=2), ports, env=dict(os.environ), cwd=tmp_path)[0]

    assert probe({"httpGet": {"path": "/healthz", "port": "metrics"}})
    assert not probe({"httpGet": {"path": "/readyz", "port": 9102}})
    assert probe({"tcpSocket": {"port": 9102}})
    with socketless_port() as closed:
        assert not probe({"tcpSocket": {"port": closed}})
        assert not probe({"httpGet": {"path": "/", "port": closed}})
    (tmp_path / "flag").write_text("")
    assert probe({"exec": {"command": ["test", "-e", "flag"]}})
    assert not probe({"exec": {"command": ["test", "-e", "missing"]}})
    ok, message = run_probe(ProbeSpec("livenessProbe", {"exec": {"command": ["sleep", "5"]}}, timeout=0.2), ports)
    assert not ok and "timed out" in message


class socketless_port:  # noqa: N801 - reads as a context, like contextlib's
    """A port nothing listens on (bound without listen, so nobody else takes it meanwhile)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_runner_kills_a_container_whose_liveness_failed_and_restarts_it(tmp_path: Path) -> None:
    runner = PodRunner(uid="u", namespace="ns", name="p", pod_dir=tmp_path, backoff_base=1.0, termination_grace=30)
    proc = ContainerProc("c", "", tmp_path / "c.log")
    runner.containers.append(proc)
    # Ignores SIGTERM, as a wedged process would: only the probe's own grace (0.2 s) and SIGKILL end it.
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    )
    runner.launch(proc, [sys.executable, "-c", script], dict(os.environ), tmp_path)
    assert proc.started_at is not None
    proc.probes = ContainerProbes.from_spec(
        _container(livenessProbe={**HTTP, "failureThreshold": 1, "terminationGracePeriodSeconds": 0.2}),
        proc.started_at,
    )
    assert proc.ready and runner.status()["conditions"][-1]["status"] == "True"
    assert proc.probes.liveness is not None
    deadline = time.monotonic() + 10
    while "up" not in proc.log_path.read_text().splitlines() and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGTERM is ignored from here on
    proc.probes.liveness.record(False, "HTTP 503")
    while proc.running and time.monotonic() < deadline:
        runner.enforce_probes(time.time())
        time.sleep(0.05)
    assert not proc.running and proc.kill_sent
    runner.reap(proc, "Always")
    status = proc.container_status()
    assert status["restartCount"] == 1
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status["lastState"]["terminated"]["exitCode"] == 128 + signal.SIGKILL
    assert "Liveness probe failed: HTTP 503" in status["lastState"]["terminated"]["message"]
    assert proc.probes is None  # the next incarnation probes afresh
