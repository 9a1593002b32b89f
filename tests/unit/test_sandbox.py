"""The process node's sandbox: the bwrap command line and the bind plan (pure), and the bwrap lookup policy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sluice.devstack import sandbox
from sluice.devstack.sandbox import Bind, bwrap_argv, read_child_pid, read_only_root, volume_binds


def test_argv_read_only_root_fresh_proc_dev_and_volume_binds() -> None:
    argv = bwrap_argv(
        "/usr/bin/bwrap",
        ["sluice", "worker", "--config", "/pods/p/volumes/config/connector.yaml"],
        [Bind("/pods/p/volumes/config", read_only=True), Bind("/pods/p/volumes/spill", read_only=False)],
        cwd="/pods/p",
        hostname="orders-worker-0",
        info_fd=7,
    )
    assert argv == [
        "/usr/bin/bwrap",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--unshare-pid", "--unshare-uts", "--hostname", "orders-worker-0", "--new-session",
        "--ro-bind", "/pods/p/volumes/config", "/pods/p/volumes/config",
        "--bind", "/pods/p/volumes/spill", "/pods/p/volumes/spill",
        "--chdir", "/pods/p",
        "--info-fd", "7",
        "--",
        "sluice", "worker", "--config", "/pods/p/volumes/config/connector.yaml",
    ]  # fmt: skip
    # No tmpfs anywhere (a kubelet gives none for /tmp) and no network namespace (127.0.0.1 stays reachable).
    assert "--tmpfs" not in argv and "--unshare-net" not in argv and "--unshare-all" not in argv


def test_a_command_that_looks_like_an_option_stays_the_command() -> None:
    argv = bwrap_argv("bwrap", ["--bind", "/", "/"], [], cwd="/", hostname="p")
    assert argv[argv.index("--") + 1 :] == ["--bind", "/", "/"]
    assert "--info-fd" not in argv


def test_binds_parents_first_one_per_path_writable_wins() -> None:
    binds = volume_binds(
        [
            ("/p/volumes/data/sub", False),
            ("/p/volumes/config/", True),
            ("/p/volumes/data", True),
            ("/p/volumes/data", False),
            ("/p/volumes/secret", True),
        ]
    )
    assert binds == [
        Bind("/p/volumes/config", True),
        Bind("/p/volumes/data", False),
        Bind("/p/volumes/secret", True),
        Bind("/p/volumes/data/sub", False),
    ]


def test_read_only_root_comes_from_the_container_security_context() -> None:
    assert read_only_root({"securityContext": {"readOnlyRootFilesystem": True}})
    assert not read_only_root({"securityContext": {"readOnlyRootFilesystem": False}})
    assert not read_only_root({"securityContext": None})
    assert not read_only_root({})


def test_child_pid_from_info_fd() -> None:
    r, w = os.pipe()
    os.write(w, b'{\n    "child-pid": 4242,\n    "mnt-namespace": 1\n}\n')
    os.close(w)
    assert read_child_pid(r) == 4242
    r, w = os.pipe()
    os.close(w)  # bwrap failed before reporting
    assert read_child_pid(r) is None


@pytest.fixture
def fresh_probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sandbox, "_probed", {})
    monkeypatch.setattr(sandbox, "_warned", False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap here


def test_missing_bwrap_fails_loudly_under_ci(fresh_probe: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(sandbox.SandboxUnavailableError, match="bubblewrap"):
        sandbox.find_bwrap()


def test_missing_bwrap_warns_once_elsewhere(
    fresh_probe: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert sandbox.find_bwrap() is None
    assert sandbox.find_bwrap() is None
    warnings = [r for r in caplog.records if "UNSANDBOXED" in r.getMessage()]
    assert len(warnings) == 1 and "bubblewrap" in warnings[0].getMessage()


@pytest.mark.skipif(
    shutil.which("bwrap") is None and not sandbox.in_ci(), reason="bwrap not installed (hack/install-system-deps.sh)"
)
def test_working_bwrap_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_probed", {})
    assert sandbox.find_bwrap() == shutil.which("bwrap")
