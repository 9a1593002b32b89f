"""A container's filesystem view on the process node: bubblewrap (``bwrap``) for ``readOnlyRootFilesystem``.

A kubelet gives a container with ``securityContext.readOnlyRootFilesystem: true`` a root it cannot write: only its
volumes (and the runtime's ``/dev`` with ``/dev/shm``) are writable. The process node reproduces that with
bubblewrap, so a program that writes outside its volumes fails here as it would in a cluster:

- the host's ``/`` bind-mounted read-only (the checkout, its virtualenv and the pod directory stay readable);
- a fresh ``/proc`` and ``/dev`` (a tmpfs with the usual device nodes and a writable ``/dev/shm``, as a container
  runtime gives); no other tmpfs — ``/tmp`` is read-only unless a volume is mounted there;
- each volume bind-mounted at the local directory that the node rewrote its ``mountPath`` to (a read-only root
  cannot get new mount points without writing to the host, so the rewriting of command, args and env stays),
  read-only when the mount is ``readOnly`` or the volume is a secret, configMap or projected volume;
- its own PID namespace (when the main process exits, everything it started dies, as in a container) and
  hostname (the pod name); the host network stays shared, so ``127.0.0.1`` services are reachable;
- ``--new-session``: the command leads its own process group, so the node signals the container, not ``bwrap``
  (which would die at SIGTERM without waiting for the command's graceful exit). ``--info-fd`` reports that pid.

Without ``bwrap`` the process node logs a warning once and runs containers unsandboxed; under ``CI=true`` a
missing or non-working ``bwrap`` is an error (install the Debian package ``bubblewrap``:
``hack/install-system-deps.sh``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Bind",
    "Sandbox",
    "SandboxUnavailableError",
    "bwrap_argv",
    "find_bwrap",
    "in_ci",
    "read_child_pid",
    "read_only_root",
    "volume_binds",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "install the Debian package bubblewrap (hack/install-system-deps.sh does)"


class SandboxUnavailableError(RuntimeError):
    """``bwrap`` is missing or cannot create namespaces here, and CI requires it."""


@dataclass(frozen=True)
class Bind:
    """One directory (or file) made visible in the sandbox at the same path, writable unless ``read_only``."""

    path: str
    read_only: bool


def read_only_root(container: Mapping[str, Any]) -> bool:
    """True when the container's ``securityContext`` asks for a read-only root filesystem."""
    return bool((container.get("securityContext") or {}).get("readOnlyRootFilesystem"))


def volume_binds(mounts: Iterable[tuple[str, bool]]) -> list[Bind]:
    """Binds for (local path, read-only) pairs: one per path, parents before children.

    A path mounted twice (the same volume at two mountPaths) is writable if any of its mounts is: both mountPaths
    were rewritten to the same local path, so the sandbox cannot tell them apart.
    """
    read_only: dict[str, bool] = {}
    for path, ro in mounts:
        path = os.path.normpath(path)
        read_only[path] = read_only.get(path, True) and ro
    # Shorter paths first: a volume bound inside another volume's directory must come after it to stay visible.
    return [Bind(p, read_only[p]) for p in sorted(read_only, key=lambda p: (p.count("/"), p))]


def bwrap_argv(
    bwrap: str,
    command: list[str],
    binds: Iterable[Bind],
    *,
    cwd: str,
    hostname: str,
    info_fd: int | None = None,
) -> list[str]:
    """The ``bwrap`` command line that runs ``command`` with a read-only root and writable ``binds``."""
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    argv += ["--unshare-pid", "--unshare-uts", "--hostname", hostname, "--new-session"]
    for bind in binds:
        argv += ["--ro-bind" if bind.read_only else "--bind", bind.path, bind.path]
    argv += ["--chdir", cwd]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    return [*argv, "--", *command]


@dataclass(frozen=True)
class Sandbox:
    """How one container start is wrapped: the ``bwrap`` binary, the writable volumes, the pod's hostname."""

    bwrap: str
    binds: tuple[Bind, ...]
    hostname: str

    def argv(self, command: list[str], *, cwd: str, info_fd: int) -> list[str]:
        return bwrap_argv(self.bwrap, command, self.binds, cwd=cwd, hostname=self.hostname, info_fd=info_fd)


def read_child_pid(fd: int, timeout: float = 10.0) -> int | None:
    """The sandboxed command's pid from ``bwrap --info-fd`` (read end ``fd``, closed here); None if bwrap failed."""
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    with contextlib.suppress(ValueError):
        pid = json.loads(data).get("child-pid")
        return int(pid) if pid else None
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


_lock = threading.Lock()
_probed: dict[str, str | None] = {}
_warned = False


def _probe() -> tuple[str | None, str]:
    """(path of a working bwrap, or None; why not)."""
    path = shutil.which("bwrap")
    if path is None:
        return None, "bwrap is not on PATH"
    try:
        out = subprocess.run(
            [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--", "true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{path} does not run: {exc}"
    if out.returncode != 0:
        return None, f"{path} cannot create a sandbox here: {out.stderr.strip() or out.returncode}"
    return path, ""


def find_bwrap() -> str | None:
    """A working ``bwrap``, probed once per process.

    Missing or not working: under CI raise :class:`SandboxUnavailableError`; elsewhere warn once and return None (the
    caller runs the container unsandboxed).
    """
    global _warned
    with _lock:
        if "bwrap" not in _probed:
            path, why = _probe()
            _probed["bwrap"] = path
            _probed["why"] = why
        path, why = _probed["bwrap"], _probed["why"] or ""
        if path is not None:
            return path
        if in_ci():
            raise SandboxUnavailableError(
                f"{why}: the process node needs bubblewrap to give containers a read-only root filesystem "
                f"(CI=true); {INSTALL_HINT}"
            )
        if not _warned:
            _warned = True
            log.warning(
                "%s: containers with readOnlyRootFilesystem run UNSANDBOXED and may write anywhere; %s",
                why,
                INSTALL_HINT,
            )
        return None
