"""The file checkpoint store (``sluice worker --config`` outside Kubernetes): durable, atomic, loud when corrupt.

The ConfigMap store is tested against a real apiserver in ``tests/e2e/test_checkpoint_store.py``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sluice.errors import ConfigError
from sluice.worker.checkpoints import Checkpoint
from sluice.worker.checkpoints.store import (
    STATE_DIR_ENV,
    FileCheckpointStore,
    checkpoint_configmap_name,
    default_state_path,
    default_store,
)

CHECKPOINT = Checkpoint(phase="snapshot", snapshot_position="0/16B3748", done_chunks=["public.orders#0"])


def test_load_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert FileCheckpointStore(tmp_path / "nothing" / "c.json").load() is None


def test_save_then_load_in_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deep" / "c.json"  # directories are created
    FileCheckpointStore(path).save(CHECKPOINT)
    assert FileCheckpointStore(path).load() == CHECKPOINT
    streaming = Checkpoint(phase="streaming", position="0/17000A0", snapshot_position="0/16B3748")
    FileCheckpointStore(path).save(streaming)
    assert FileCheckpointStore(path).load() == streaming
    assert sorted(p.name for p in path.parent.iterdir()) == ["c.json"], "no temporary file is left behind"


def test_save_replaces_the_file_instead_of_rewriting_it(tmp_path: Path) -> None:
    """A rename swaps in a new inode: a reader (or a crash) sees the old or the new file, never a half-written one."""
    path = tmp_path / "c.json"
    store = FileCheckpointStore(path)
    store.save(CHECKPOINT)
    before = path.stat().st_ino
    store.save(Checkpoint(phase="streaming", position="0/1"))
    assert path.stat().st_ino != before


_WRITER = """
import sys
from sluice.worker.checkpoints import Checkpoint
from sluice.worker.checkpoints.store import FileCheckpointStore
store = FileCheckpointStore(sys.argv[1])
chunks = [f"public.big#{i}" for i in range(20000)]  # ~400 kB: one write is many pages
n = 0
while True:
    n += 1
    store.save(Checkpoint(phase="snapshot", position=str(n), done_chunks=chunks[: n % len(chunks)]))
"""


def test_a_writer_killed_at_any_instant_leaves_a_complete_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)])
        try:
            deadline = time.monotonic() + 30
            start = FileCheckpointStore(path).load()
            first = int(start.position or 0) if start else 0
            # Let it overwrite the file a few times, then kill it mid-flight.
            while True:
                loaded = FileCheckpointStore(path).load()  # a concurrent reader never sees a torn file either
                if loaded is not None and int(loaded.position or 0) >= first + 3:
                    break
                assert proc.poll() is None, "the writer died by itself"
                assert time.monotonic() < deadline, "the writer made no progress"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        loaded = FileCheckpointStore(path).load()
        assert loaded is not None and loaded.phase == "snapshot"
        assert len(loaded.done_chunks) == int(loaded.position or 0) % 20000


def test_clear_removes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    store = FileCheckpointStore(path)
    store.clear()  # nothing stored yet: not an error
    store.save(CHECKPOINT)
    store.clear()
    assert not path.exists()
    assert store.load() is None


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b'{"position": "0/1"}', b"[1, 2]", b"\xff\xfe"],
    ids=["broken-json", "empty", "no-phase", "not-an-object", "not-utf8"],
)
def test_a_corrupt_file_is_a_config_error_with_a_fix(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "c.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        FileCheckpointStore(path).load()
    assert str(path) in info.value.message
    assert f"Delete {path}" in info.value.fix and STATE_DIR_ENV in info.value.fix


def test_a_directory_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as info:
        FileCheckpointStore(blocker / "state" / "c.json").save(CHECKPOINT)
    assert STATE_DIR_ENV in info.value.fix


def test_default_store_outside_a_pod_is_a_file_under_the_state_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLUICE_STATUS_REPORTER", raising=False)
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_state_path("orders") == Path(".sluice/state/orders.json")
    store = default_store("orders")
    assert isinstance(store, FileCheckpointStore)
    store.save(CHECKPOINT)
    assert (tmp_path / ".sluice" / "state" / "orders.json").exists()

    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "elsewhere"))
    store = default_store("orders")
    assert isinstance(store, FileCheckpointStore) and store.path == tmp_path / "elsewhere" / "orders.json"
    assert store.load() is None


def test_checkpoint_configmap_names() -> None:
    assert checkpoint_configmap_name("orders") == "orders-checkpoint"
    longest = "a" * 63  # a connector id is a DNS label
    assert checkpoint_configmap_name(longest) == longest + "-checkpoint"
    with pytest.raises(ConfigError, match="not a valid Kubernetes name") as info:
        checkpoint_configmap_name("Orders_1")
    assert "lowercase" in info.value.fix


def test_file_mode_is_private(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    FileCheckpointStore(path).save(CHECKPOINT)
    assert path.stat().st_mode & 0o077 == 0
