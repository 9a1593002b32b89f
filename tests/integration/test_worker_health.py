"""A real worker answers its liveness and readiness endpoints: a quiet source is alive, not wedged."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.pg import PgDatabase, WorkerProcess

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


def test_quiet_streaming_worker_stays_alive_past_its_stall_bound(
    source_db: PgDatabase,
    sink_db: PgDatabase,
    make_connector_config: Callable[..., Path],
    run_worker: Callable[..., WorkerProcess],
) -> None:
    source_db.psql("CREATE TABLE h (id int PRIMARY KEY); INSERT INTO h SELECT generate_series(1, 10);")
    port = _free_port()
    # The loop reports about once a second; the bound leaves room for a CPU stall of several seconds on a loaded
    # machine (tests run on parallel workers), yet the quiet window below outlasts it, so a loop that stopped
    # reporting while it waits would be seen as wedged (503) and fail the test.
    stall = 15.0
    worker = run_worker(
        make_connector_config(),
        env={
            "SLUICE_METRICS_PORT": str(port),
            "SLUICE_METRICS_ADDR": "127.0.0.1",
            "SLUICE_LIVENESS_STALL_SECONDS": str(stall),
        },
    )
    deadline = time.monotonic() + 60
    while _get(port, "/readyz") != (200, "ready: realtime\n"):  # ready from the snapshot on; wait for the stream
        assert time.monotonic() < deadline, f"never ready: {_get(port, '/readyz')}"
        time.sleep(0.2)
    # No change arrives for the stall bound and ten seconds more: the streaming loop keeps waiting and reporting, so
    # it is alive. A loop silent since it went realtime would be past its bound for the last ten seconds of this.
    quiet_until = time.monotonic() + stall + 10
    while time.monotonic() < quiet_until:
        code, body = _get(port, "/healthz")
        assert code == 200, body
        assert "realtime" in body
        time.sleep(0.25)
    assert _get(port, "/readyz") == (200, "ready: realtime\n")
    assert worker.stop() == 0
