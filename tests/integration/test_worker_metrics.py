"""The worker's Prometheus endpoint reports what it replicated (rows, lag, state) under its connector's id."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from sluice.worker.metrics import MetricsReporter
from sluice.worker.status import WorkerStatus
from tests.support.pg import PgDatabase, WorkerProcess

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_reporter_counts_each_error_once() -> None:
    reporter = MetricsReporter()
    failing = WorkerStatus(
        connector="c1",
        run_id="r",
        state="realtime",
        status="retry",
        retry_attempt=1,
        last_error={"error": "Transient", "message": "connection reset"},
    )
    reporter.report(failing)
    reporter.report(failing)
    failing.retry_attempt = 2
    reporter.report(failing)
    value = reporter.registry.get_sample_value("sluice_worker_errors_total", {"connector": "c1", "reason": "Transient"})
    assert value == 2
    assert reporter.registry.get_sample_value("sluice_worker_state", {"connector": "c1", "state": "realtime"}) == 1
    assert reporter.registry.get_sample_value("sluice_worker_state", {"connector": "c1", "state": "snapshot"}) == 0


def test_worker_serves_metrics(
    source_db: PgDatabase,
    sink_db: PgDatabase,
    make_connector_config: Callable[..., Path],
    run_worker: Callable[..., WorkerProcess],
) -> None:
    source_db.psql("CREATE TABLE m (id int PRIMARY KEY); INSERT INTO m SELECT generate_series(1, 50);")
    port = _free_port()
    worker = run_worker(
        make_connector_config(limits={"cdc": {"flush_interval_ms": 50}}),
        env={"SLUICE_METRICS_PORT": str(port), "SLUICE_METRICS_ADDR": "127.0.0.1"},
    )

    def scrape_until(done: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    text = resp.read().decode()
            except OSError:
                text = ""
            if text and done(text):
                return text
            time.sleep(0.2)
        pytest.fail(f"metrics never showed {what}:\n{text[-2000:]}")

    scrape_until(
        lambda t: _metric(t, "sluice_worker_rows_copied") == 50 and 'state="realtime"} 1.0' in t,
        "50 copied rows and the realtime state",
    )
    source_db.psql("INSERT INTO m SELECT generate_series(51, 60);")
    text = scrape_until(lambda t: _metric(t, "sluice_worker_rows_applied") == 10, "10 applied changes")
    assert 'state="realtime"} 1.0' in text
    assert _metric(text, "sluice_worker_lag_bytes") is not None
    assert worker.stop() == 0
