"""Starting and stopping long-running local processes (etcd, kube-apiserver, ...) without leaking them.

Each process gets its own session (so a terminal's Ctrl-C goes to us, not to it, and we can signal its whole
process group), its own log file, and — when started from the main thread of a process that will stop it —
``PR_SET_PDEATHSIG`` so the kernel sends it SIGTERM if we die without cleaning up (``kill -9`` of pytest).
The death signal is tied to the *thread* that forked, which is why it is only used from the main thread.

A process can also be re-attached by pid (``ManagedProcess.attach``), which is how ``controlplane down`` stops a
cluster that ``controlplane up`` started in an earlier, long-gone Python process. The pid is checked against the
executable recorded at start so a recycled pid is never signalled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ManagedProcess", "stop_all", "tail"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing (for error messages)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def _death_signal_preexec() -> Callable[[], None] | None:
    libc_name = ctypes.util.find_library("c")
    if not libc_name or threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)

    def preexec() -> None:  # runs in the child between fork and exec
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return preexec


def _exe_of(pid: int) -> str | None:
    try:
        return str(Path(f"/proc/{pid}/exe").readlink())
    except OSError:
        return None


class ManagedProcess:
    """One child process with a name, a log file and a clean stop."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.pid: int | None = None
        self._popen: subprocess.Popen[bytes] | None = None

    @classmethod
    def attach(cls, name: str, argv: Sequence[str], log_path: Path, pid: int) -> ManagedProcess:
        """A handle on a process started earlier by another Python process."""
        proc = cls(name, argv, log_path)
        proc.pid = pid
        return proc

    def start(self, *, tie_to_parent: bool, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_death_signal_preexec() if tie_to_parent else None,
                env=env,
                cwd=cwd,
                close_fds=True,
            )
        self.pid = self._popen.pid

    def exit_code(self) -> int | None:
        """The exit status if the process has ended (for attached processes: -1, the status is not ours)."""
        if self._popen is not None:
            return self._popen.poll()
        if self.pid is None or not self._is_ours():
            return -1
        try:
            with Path(f"/proc/{self.pid}/stat").open() as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return -1
        return -1 if state in ("Z", "X") else None

    def alive(self) -> bool:
        return self.pid is not None and self.exit_code() is None

    def _is_ours(self) -> bool:
        """For an attached pid: is it still the binary we started (pids get recycled)?"""
        exe = _exe_of(self.pid) if self.pid else None
        if exe is None:
            return False
        return Path(exe.removesuffix(" (deleted)")).name == Path(self.argv[0]).name

    def signal(self, sig: int) -> None:
        if self.pid is None or not self.alive():
            return
        try:
            # The whole group: a component that forks helpers must not leave them behind.
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> bool:
        """Wait until the process has ended; True if it did within ``timeout`` seconds."""
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


def stop_all(processes: Sequence[ManagedProcess], grace: float) -> None:
    """SIGTERM every process, wait up to ``grace`` seconds in total, then SIGKILL what is left."""
    running = [p for p in processes if p.alive()]
    for proc in running:
        proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in running:
        if not proc.wait(max(0.0, deadline - time.monotonic())):
            log.warning("%s (pid %s) ignored SIGTERM for %.0fs; sending SIGKILL", proc.name, proc.pid, grace)
            proc.signal(signal.SIGKILL)
            proc.wait(5.0)
