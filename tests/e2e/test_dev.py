"""``sluice dev`` end to end: everything starts, the demo connector streams, Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cluster import poll, require_k8s_binaries
from tests.support.pg import require_postgres

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sluice_dev_runs_the_demo_and_stops_cleanly(tmp_path: Path) -> None:
    require_k8s_binaries()
    require_postgres()
    out = tmp_path / "dev.out"
    work = tmp_path / "dev"
    argv = [sys.executable, "-m", "sluice", "dev", "--work-dir", str(work), "--api-port", str(_free_port())]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    with out.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"sluice dev exited with {proc.returncode}:\n{out.read_text()}")
            return "Press Ctrl-C" in out.read_text()

        poll(ready, timeout=300, interval=1, message="sluice dev to be ready", describe=lambda: out.read_text())
        text = out.read_text()
        assert "NO AUTHENTICATION" in text
        assert "kubectl get connectors" in text and "curl" in text
        from sluice.devstack import find_binaries

        kubectl = str(find_binaries()["kubectl"])
        got = subprocess.run(
            [kubectl, f"--kubeconfig={work / 'kubeconfig'}", "get", "connector", "demo", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        )
        status = json.loads(got.stdout)["status"]
        assert status["state"] == "realtime"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out.read_text()
    assert out.read_text().rstrip().endswith("stopped.")
