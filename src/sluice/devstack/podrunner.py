"""One pod on the process node: its containers as local process groups, restart policy, back-off and status.

A :class:`PodRunner` is driven by the node's loop: ``step(pod)`` starts, restarts or stops processes according to
the pod object it is given and returns the pod ``status`` it should have. It never talks to the API itself (the
node does), which keeps the policy here testable and the loop single-threaded: only the node thread mutates a
runner.

Rules, as in the kubelet unless noted:
- init containers run one after another to exit 0 before the app containers start;
- ``restartPolicy`` Always restarts any exit, OnFailure only non-zero exits, Never none; restarts wait a back-off
  that doubles from ``backoff_base`` to ``backoff_max`` (reason ``CrashLoopBackOff`` while waiting) and resets once
  a container ran for ``backoff_reset`` seconds;
- termination sends SIGTERM to each container's process group, then SIGKILL when the grace period is over;
- probes run as the kubelet runs them (:mod:`sluice.devstack.probes`): a container is started once its startup
  probe passed and Ready once its readiness probe passed (while running, without probes); a failed liveness or
  startup probe kills the container — SIGTERM, then SIGKILL after the probe's ``terminationGracePeriodSeconds``
  (else the pod's) — and the restart policy and back-off take over, the restart counted as usual;
- a container with ``readOnlyRootFilesystem`` runs under bubblewrap (:mod:`sluice.devstack.sandbox`): only its
  volumes are writable. Signals then go to the sandboxed command's own process group (``ContainerProc.pgid``),
  and its exit code comes back through ``bwrap``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sluice.devstack.probes import ContainerProbes, PortMap
from sluice.devstack.sandbox import Sandbox, read_child_pid

__all__ = ["ContainerProc", "PodRunner", "rfc3339"]

log = logging.getLogger(__name__)

JsonObj = dict[str, Any]


def rfc3339(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerProc:
    """Lifecycle of one container across restarts."""

    name: str
    image: str
    log_path: Path
    init: bool = False
    popen: subprocess.Popen[bytes] | None = None
    #: Process group that signals go to: the sandboxed command's (``bwrap --new-session``), else ``popen.pid``.
    pgid: int | None = None
    started_at: float | None = None
    restart_count: int = 0
    #: ``{"exitCode", "reason", "startedAt", "finishedAt"}`` of the most recent exit, or None.
    last_exit: JsonObj | None = None
    #: ``last_exit`` before the most recent one: the kubelet's ``lastState`` once a restart happened.
    previous_exit: JsonObj | None = None
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    next_start_at: float = 0.0
    backoff: float = 0.0
    done: bool = False  # exited and will not be restarted
    kill_sent: bool = False
    #: the probes of the running incarnation (None: the container declares none, or it does not run)
    probes: ContainerProbes | None = None
    #: environment and working directory of the running incarnation, for ``exec`` probes
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    #: a failed liveness/startup probe is killing this incarnation: SIGKILL at this time, and why
    probe_kill_at: float | None = None
    probe_kill_message: str = ""

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def started(self) -> bool:
        """Running, and past its startup probe if it has one."""
        return self.running and (self.probes is None or self.probes.started)

    @property
    def ready(self) -> bool:
        """Running, and its readiness probe (after the startup probe) passed, if it has them."""
        return self.running and (self.probes is None or self.probes.ready)

    def signal_group(self, sig: signal.Signals) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid or self.popen.pid, sig)

    def container_status(self) -> JsonObj:
        state: JsonObj
        if self.running:
            assert self.started_at is not None
            state = {"running": {"startedAt": rfc3339(self.started_at)}}
        elif self.done and self.last_exit is not None:
            state = {"terminated": dict(self.last_exit)}
        else:
            waiting: JsonObj = {"reason": self.waiting_reason}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            state = {"waiting": waiting}
        # lastState is the exit before the one the current state shows (kubelet semantics).
        shown_last = self.previous_exit if self.done else self.last_exit
        last_state: JsonObj = {"terminated": dict(shown_last)} if shown_last is not None else {}
        status: JsonObj = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": last_state,
        }
        if self.popen is not None:
            status["containerID"] = f"process://{self.popen.pid}"
        return status


@dataclass
class PodRunner:
    """Processes and status of one pod (identified by uid)."""

    uid: str
    namespace: str
    name: str
    pod_dir: Path
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    backoff_reset: float = 600.0
    init_containers: list[ContainerProc] = field(default_factory=list)
    containers: list[ContainerProc] = field(default_factory=list)
    start_time: float = field(default_factory=time.time)
    terminating_since: float | None = None
    kill_deadline: float | None = None
    config_error: str = ""
    #: the pod's ``terminationGracePeriodSeconds``: what a probe kill waits before SIGKILL unless the probe says
    termination_grace: float = 30.0
    #: declared container ports -> host ports of this pod (see :class:`~sluice.devstack.probes.PortMap`)
    ports: PortMap = field(default_factory=PortMap)

    # --- process control ----------------------------------------------------------------------------------

    def launch(
        self, proc: ContainerProc, argv: list[str], env: dict[str, str], cwd: Path, sandbox: Sandbox | None = None
    ) -> None:
        """Start (or restart) one container's command; output is appended to its log file.

        With ``sandbox`` the command runs under bubblewrap; the log file stays writable through the inherited
        descriptor, whatever the sandbox makes read-only.
        """
        proc.log_path.parent.mkdir(parents=True, exist_ok=True)
        proc.pgid = None
        proc.probes = None
        proc.kill_sent = False
        proc.probe_kill_at = None
        proc.probe_kill_message = ""
        with proc.log_path.open("ab") as logf:
            sandboxed = " in a read-only-root sandbox" if sandbox is not None else ""
            logf.write(f"--- {rfc3339()} starting {argv!r}{sandboxed} (restart {proc.restart_count})\n".encode())
            logf.flush()
            info_r = info_w = -1
            try:
                command = argv
                if sandbox is not None:
                    # bwrap would report a missing command as its own exit 1: find it first, as exec would.
                    if shutil.which(argv[0], path=env.get("PATH")) is None:
                        raise FileNotFoundError(2, "No such file or directory", argv[0])
                    info_r, info_w = os.pipe()
                    command = sandbox.argv(argv, cwd=str(cwd), info_fd=info_w)
                proc.popen = subprocess.Popen(
                    command,
                    env=env,
                    cwd=str(cwd),
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: signals reach the whole container
                    pass_fds=(info_w,) if info_w >= 0 else (),
                )
            except OSError as exc:
                # The kubelet reports an exec failure as a terminated container with code 128 (StartError).
                proc.popen = None
                now = time.time()
                self._record_exit(proc, 128, "StartError", now, now, message=str(exc))
                logf.write(f"--- cannot start: {exc}\n".encode())
                for fd in (info_r, info_w):
                    if fd >= 0:
                        os.close(fd)
                return
            if info_w >= 0:
                os.close(info_w)
                # None when bwrap failed to set up (its message is in the log and it exits 1): signal bwrap then.
                proc.pgid = read_child_pid(info_r)
        proc.started_at = time.time()
        proc.waiting_reason = ""
        proc.waiting_message = ""
        log.info(
            "pod %s/%s container %s started (pid %d), log: %s",
            self.namespace,
            self.name,
            proc.name,
            proc.popen.pid,
            proc.log_path,
        )

    def _record_exit(
        self, proc: ContainerProc, code: int, reason: str, started: float, finished: float, message: str = ""
    ) -> None:
        proc.previous_exit = proc.last_exit
        proc.last_exit = {
            "exitCode": code,
            "reason": reason,
            "startedAt": rfc3339(started),
            "finishedAt": rfc3339(finished),
        }
        if message:
            proc.last_exit["message"] = message[:1000]

    def reap(self, proc: ContainerProc, restart_policy: str) -> None:
        """Notice an exit; decide whether and when the container restarts."""
        if proc.popen is None or proc.popen.poll() is None:
            return
        code = proc.popen.returncode
        if code < 0:  # killed by a signal: the kubelet shows 128 + signal number
            code = 128 - code
        now = time.time()
        started = proc.started_at or now
        reason = "Completed" if code == 0 else "Error"
        self._record_exit(proc, code, reason, started, now, message=proc.probe_kill_message)
        with proc.log_path.open("ab") as logf:
            logf.write(f"--- {rfc3339(now)} exited with code {code}\n".encode())
        proc.popen = None
        proc.started_at = None
        proc.probes = None
        proc.probe_kill_at = None
        proc.probe_kill_message = ""
        restart = self.terminating_since is None and (
            (restart_policy == "Always" and not proc.init) or (restart_policy in ("Always", "OnFailure") and code != 0)
        )
        if not restart:
            proc.done = True
            return
        if now - started >= self.backoff_reset:
            proc.backoff = 0.0
        proc.backoff = self.backoff_base if proc.backoff == 0 else min(proc.backoff * 2, self.backoff_max)
        proc.next_start_at = now + proc.backoff
        proc.restart_count += 1
        proc.waiting_reason = "CrashLoopBackOff"
        proc.waiting_message = f"back-off {proc.backoff:.0f}s restarting failed container={proc.name}"
        log.info(
            "pod %s/%s container %s exited %d; restart in %.0fs",
            self.namespace,
            self.name,
            proc.name,
            code,
            proc.backoff,
        )

    def enforce_probes(self, now: float) -> None:
        """Kill a container whose liveness or startup probe failed: SIGTERM now, SIGKILL once its grace is over
        (a stopped or wedged process ignores SIGTERM). The exit is then reaped like any other."""
        if self.terminating_since is not None:
            return  # the pod's own termination is in charge
        for proc in self.containers:
            if not proc.running or proc.probes is None:
                continue
            if proc.probe_kill_at is None:
                verdict = proc.probes.kill_reason()
                if verdict is None:
                    continue
                message, grace = verdict
                proc.probe_kill_message = f"{message}, container will be restarted"
                proc.probe_kill_at = now + (self.termination_grace if grace is None else grace)
                log.warning("pod %s/%s container %s: %s", self.namespace, self.name, proc.name, message)
                with proc.log_path.open("ab") as logf:
                    logf.write(f"--- {rfc3339(now)} killing: {message}\n".encode())
                proc.signal_group(signal.SIGTERM)
            elif now >= proc.probe_kill_at and not proc.kill_sent:
                proc.signal_group(signal.SIGKILL)
                proc.kill_sent = True

    def all_procs(self) -> list[ContainerProc]:
        return self.init_containers + self.containers

    def begin_termination(self, grace_seconds: float) -> None:
        if self.terminating_since is not None:
            return
        self.terminating_since = time.time()
        self.kill_deadline = self.terminating_since + max(0.0, grace_seconds)
        for proc in self.all_procs():
            proc.signal_group(signal.SIGTERM)
        log.info("pod %s/%s terminating (grace %.0fs)", self.namespace, self.name, grace_seconds)

    def termination_done(self) -> bool:
        """SIGKILL once the grace period is over; True when no process is left."""
        alive = [p for p in self.all_procs() if p.running]
        if alive and self.kill_deadline is not None and time.time() >= self.kill_deadline:
            for proc in alive:
                if not proc.kill_sent:
                    proc.signal_group(signal.SIGKILL)
                    proc.kill_sent = True
        for proc in self.all_procs():
            if proc.popen is not None and proc.popen.poll() is not None:
                self.reap(proc, "Never")
        return not any(p.running for p in self.all_procs())

    def kill_now(self) -> None:
        """The pod vanished (force delete) or the node stops: no grace beyond a moment."""
        self.begin_termination(0.0)
        deadline = time.time() + 5
        while not self.termination_done() and time.time() < deadline:
            time.sleep(0.05)

    # --- status ----------------------------------------------------------------------------------------------

    def phase(self) -> str:
        procs = self.containers
        if self.config_error and not any(p.started_at or p.last_exit for p in procs):
            return "Pending"
        if any(p.running for p in procs):
            return "Running"
        if procs and all(p.done for p in procs):
            return "Succeeded" if all((p.last_exit or {}).get("exitCode") == 0 for p in procs) else "Failed"
        if any(p.done and (p.last_exit or {}).get("exitCode") for p in self.init_containers):
            return "Failed"
        if any(p.last_exit is not None for p in procs):
            return "Running"  # between restarts
        return "Pending"

    def status(self) -> JsonObj:
        now = rfc3339()
        inits_done = all(p.done and (p.last_exit or {}).get("exitCode") == 0 for p in self.init_containers)
        ready = bool(self.containers) and all(p.ready for p in self.containers) and self.terminating_since is None

        def cond(ctype: str, ok: bool, reason: str = "") -> JsonObj:
            c: JsonObj = {"type": ctype, "status": "True" if ok else "False", "lastTransitionTime": now}
            if not ok and reason:
                c["reason"] = reason
            return c

        status: JsonObj = {
            "phase": self.phase(),
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": rfc3339(self.start_time),
            "conditions": [
                cond("PodScheduled", True),
                cond("Initialized", inits_done, "ContainersNotInitialized"),
                cond("ContainersReady", ready, "ContainersNotReady"),
                cond("Ready", ready, "ContainersNotReady"),
            ],
            "containerStatuses": [p.container_status() for p in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [p.container_status() for p in self.init_containers]
        if self.config_error:
            status["message"] = self.config_error
        return status
