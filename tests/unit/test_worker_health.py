"""Liveness and readiness of a worker (:mod:`sluice.worker.health`): the verdicts, and the HTTP endpoints."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry

from sluice.worker.health import Heartbeat
from sluice.worker.metrics import MetricsReporter, serve
from sluice.worker.status import WorkerStatus


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _beat(hb: Heartbeat, state: str, status: str = "start") -> None:
    hb.report(WorkerStatus(connector="c", run_id="r", state=state, status=status))


def test_a_quiet_stream_that_keeps_turning_is_alive_a_silent_one_is_not() -> None:
    clock = Clock()
    hb = Heartbeat(stall_seconds=60, setup_stall_seconds=600, clock=clock)
    _beat(hb, "realtime")
    for _ in range(100):  # no data, but the loop reports every turn
        clock.now += 1
        _beat(hb, "realtime")
    assert hb.liveness().ok
    clock.now += 60
    assert hb.liveness().ok
    clock.now += 1
    verdict = hb.liveness()
    assert not verdict.ok and "realtime" in verdict.reason


def test_setup_and_snapshot_get_the_longer_bound() -> None:
    clock = Clock()
    hb = Heartbeat(stall_seconds=60, setup_stall_seconds=600, clock=clock)
    assert hb.liveness().ok  # process start counts as a beat
    clock.now += 599
    assert hb.liveness().ok
    _beat(hb, "snapshot")
    clock.now += 300  # one long chunk
    assert hb.liveness().ok
    clock.now += 301
    assert not hb.liveness().ok


def test_retry_back_off_is_alive_and_not_ready() -> None:
    clock = Clock()
    hb = Heartbeat(stall_seconds=60, setup_stall_seconds=600, clock=clock)
    _beat(hb, "realtime", "retry")
    clock.now += 10  # the longest back-off
    assert hb.liveness().ok
    assert not hb.readiness().ok


def test_finished_or_failed_runs_never_fail_liveness() -> None:
    clock = Clock()
    hb = Heartbeat(stall_seconds=60, setup_stall_seconds=600, clock=clock)
    _beat(hb, "complete", "complete")
    clock.now += 10_000  # a scheduled run idling until it is scaled down
    assert hb.liveness().ok
    _beat(hb, "realtime", "failed")
    clock.now += 10_000
    assert hb.liveness().ok


def test_ready_only_while_copying_or_streaming() -> None:
    hb = Heartbeat()
    assert not hb.readiness().ok
    _beat(hb, "initialize")
    assert not hb.readiness().ok
    _beat(hb, "snapshot")
    assert hb.readiness().ok
    _beat(hb, "realtime")
    assert hb.readiness().ok
    _beat(hb, "realtime", "failed")
    assert not hb.readiness().ok


def test_endpoints_answer_200_or_503_and_metrics_stay_served() -> None:
    clock = Clock()
    hb = Heartbeat(stall_seconds=60, setup_stall_seconds=600, clock=clock)
    metrics = MetricsReporter(CollectorRegistry())
    server = serve(0, metrics.registry, hb, "127.0.0.1")
    base = f"http://127.0.0.1:{server.server_port}"

    def code(path: str) -> int:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as resp:  # noqa: S310 - local test server
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        status = WorkerStatus(connector="c", run_id="r", state="realtime", rows_applied=7)
        hb.report(status)
        metrics.report(status)
        assert (code("/healthz"), code("/readyz")) == (200, 200)
        with urllib.request.urlopen(base + "/metrics", timeout=5) as resp:  # noqa: S310
            assert 'sluice_worker_rows_applied{connector="c"} 7.0' in resp.read().decode()
        clock.now += 61
        assert (code("/healthz"), code("/readyz")) == (503, 200)
    finally:
        server.shutdown()
        server.server_close()
