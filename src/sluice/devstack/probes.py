"""Container probes on the process node, as a kubelet runs them: the state machine and the three actions.

The state machine (:class:`ProbeTracker`, :class:`ContainerProbes`) is pure — it is told the time and each
result — so its rules are unit-tested without processes; :func:`run_probe` performs one probe. The node
(:mod:`sluice.devstack.processnode`) runs due probes on a small thread pool, so a probe waiting for its
``timeoutSeconds`` never holds up the loop that drives every pod.

Kubelet rules kept here:

- ``initialDelaySeconds`` counts from the container's start; then one probe every ``periodSeconds``, each given
  ``timeoutSeconds`` (a probe that does not answer in time has failed);
- a probe's result flips to failure after ``failureThreshold`` consecutive failures and to success after
  ``successThreshold`` consecutive successes (1 for liveness and startup, as the API server enforces);
- before its first result, readiness counts as failed (not Ready), liveness as passed;
- a ``startupProbe`` gates the others: until it succeeded neither liveness nor readiness runs (and the container is
  neither started nor ready); once it succeeded it is not run again for that container;
- a failed startup or liveness probe kills the container (SIGTERM, then SIGKILL after the probe's
  ``terminationGracePeriodSeconds``, else the pod's), and ``restartPolicy`` decides on a restart with the usual
  back-off; a failed readiness probe only makes the container, and so the pod, not Ready;
- every restart starts the probes afresh.

Actions: ``httpGet`` (any status in 200..399 passes; ``host`` defaults to the pod IP, 127.0.0.1 here; a named
``port`` is looked up in the container's ``ports``; ``httpHeaders``; HTTPS without certificate checks, as the
kubelet), ``tcpSocket`` (a connection is accepted) and ``exec`` (exit 0; the command runs with the container's
environment and working directory, but outside its sandbox). ``grpc`` probes are not run: they count as passed and
the node logs that once.

Ports: every pod shares the host network, so each declared ``containerPort`` is given a free host port per pod
(:class:`PortMap`) and probes go to the mapped port; see the node's docstring for how the container learns it.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ContainerProbes", "PortMap", "ProbeSpec", "ProbeTracker", "run_probe"]

log = logging.getLogger(__name__)

JsonObj = dict[str, Any]

KINDS = ("startupProbe", "livenessProbe", "readinessProbe")


@dataclass(frozen=True)
class ProbeSpec:
    """One probe of a container spec, with the Kubernetes defaults filled in."""

    kind: str  # startupProbe | livenessProbe | readinessProbe
    action: JsonObj  # {"httpGet": ...} | {"tcpSocket": ...} | {"exec": ...} | {"grpc": ...}
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    #: the probe's own ``terminationGracePeriodSeconds`` (liveness and startup), else None: the pod's
    termination_grace: float | None = None

    @classmethod
    def from_k8s(cls, kind: str, probe: JsonObj) -> ProbeSpec:
        action = {k: v for k, v in probe.items() if k in ("httpGet", "tcpSocket", "exec", "grpc")}
        grace = probe.get("terminationGracePeriodSeconds")
        return cls(
            kind=kind,
            action=action,
            initial_delay=float(probe.get("initialDelaySeconds") or 0),
            period=float(probe.get("periodSeconds") or 10),
            timeout=float(probe.get("timeoutSeconds") or 1),
            # Liveness and startup must use 1 (the API server refuses anything else); keep that true here.
            success_threshold=int(probe.get("successThreshold") or 1) if kind == "readinessProbe" else 1,
            failure_threshold=int(probe.get("failureThreshold") or 3),
            termination_grace=float(grace) if grace is not None and kind != "readinessProbe" else None,
        )


@dataclass
class ProbeTracker:
    """Consecutive results of one probe of one container incarnation, and when it runs next."""

    spec: ProbeSpec
    started_at: float
    #: None until the thresholds decided once; then the current verdict
    result: bool | None = None
    successes: int = 0
    failures: int = 0
    last_run: float | None = None
    in_flight: bool = False
    message: str = ""

    def due(self, now: float) -> bool:
        if self.in_flight or now < self.started_at + self.spec.initial_delay:
            return False
        return self.last_run is None or now >= self.last_run + self.spec.period

    def begin(self, now: float) -> None:
        self.in_flight = True
        self.last_run = now

    def record(self, ok: bool, message: str = "") -> None:
        self.in_flight = False
        self.message = message
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.spec.success_threshold:
                self.result = True
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures >= self.spec.failure_threshold:
                self.result = False


@dataclass
class ContainerProbes:
    """The probes of one container incarnation (a restart makes a new one)."""

    startup: ProbeTracker | None = None
    liveness: ProbeTracker | None = None
    readiness: ProbeTracker | None = None

    @classmethod
    def from_spec(cls, container: JsonObj, started_at: float) -> ContainerProbes:
        trackers = {
            kind: ProbeTracker(ProbeSpec.from_k8s(kind, container[kind]), started_at)
            for kind in KINDS
            if container.get(kind)
        }
        return cls(trackers.get("startupProbe"), trackers.get("livenessProbe"), trackers.get("readinessProbe"))

    @property
    def started(self) -> bool:
        return self.startup is None or self.startup.result is True

    @property
    def ready(self) -> bool:
        return self.started and (self.readiness is None or self.readiness.result is True)

    def kill_reason(self) -> tuple[str, float | None] | None:
        """(message, probe's grace or None) when a failed startup or liveness probe means: kill the container."""
        if self.startup is not None and self.startup.result is False:
            return f"Startup probe failed: {self.startup.message}", self.startup.spec.termination_grace
        if self.started and self.liveness is not None and self.liveness.result is False:
            return f"Liveness probe failed: {self.liveness.message}", self.liveness.spec.termination_grace
        return None

    def due(self, now: float) -> Iterator[ProbeTracker]:
        """The probes to run now: the startup probe until it succeeded, then liveness and readiness."""
        if not self.started:
            if self.startup is not None and self.startup.due(now):
                yield self.startup
            return
        for tracker in (self.liveness, self.readiness):
            if tracker is not None and tracker.due(now):
                yield tracker


@dataclass
class PortMap:
    """Declared ``containerPort`` -> free host port, for one pod (all its containers share one network, as in a
    pod), and the containers' named ports.

    A value names a port when it is the number alone (``"9102"``), or ends in ``:9102`` or ``=9102`` (an address
    or a ``--flag=9102``): such env values and arguments are rewritten to the host port. Anything else containing
    the digits is left alone, so a number that merely looks like a port is not changed.
    """

    ports: dict[int, int] = field(default_factory=dict)
    names: dict[str, int] = field(default_factory=dict)

    @classmethod
    def allocate(cls, containers: list[JsonObj], free_port: Callable[[], int] | None = None) -> PortMap:
        pick = free_port or _free_port
        out = cls()
        for container in containers:
            for port in container.get("ports") or []:
                number = int(port["containerPort"])
                if (port.get("protocol") or "TCP") == "TCP" and number not in out.ports:
                    out.ports[number] = pick()
                if port.get("name"):
                    out.names[str(port["name"])] = number
        return out

    def rewrite(self, text: str) -> str:
        for container_port, host_port in self.ports.items():
            old = str(container_port)
            if text == old:
                return str(host_port)
            for sep in (":", "="):
                if text.endswith(sep + old):
                    return text[: -len(old)] + str(host_port)
        return text

    def host_port(self, port: int | str) -> int:
        """The host port a probe goes to for ``port`` (a number or a container port's name)."""
        number = self.names.get(port) if isinstance(port, str) and not port.isdigit() else int(port)
        if number is None:
            raise ValueError(f"port {port!r} is not a named port of the container")
        return self.ports.get(number, number)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def run_probe(
    spec: ProbeSpec, ports: PortMap, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[bool, str]:
    """Run one probe; (passed, message). Never raises: an error is a failed probe with its reason."""
    action = spec.action
    try:
        if "httpGet" in action:
            return _http_get(action["httpGet"], ports, spec.timeout)
        if "tcpSocket" in action:
            tcp = action["tcpSocket"]
            port = ports.host_port(tcp["port"])
            with socket.create_connection((tcp.get("host") or "127.0.0.1", port), timeout=spec.timeout):
                return True, f"tcp port {port} accepted a connection"
        if "exec" in action:
            argv = [ports.rewrite(str(a)) for a in action["exec"].get("command") or []]
            done = subprocess.run(  # the pod's own probe command, as a kubelet runs it
                argv,
                env=env,
                cwd=str(cwd) if cwd else None,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=spec.timeout,
                check=False,
            )
            tail = (done.stdout + done.stderr).decode(errors="replace").strip()[-200:]
            return done.returncode == 0, f"exec exited {done.returncode}: {tail}"
        if "grpc" in action:
            return True, "grpc probes are not run by the process node (counted as passed)"
        return False, "probe has no action (httpGet, tcpSocket, exec)"
    except subprocess.TimeoutExpired:
        return False, f"exec timed out after {spec.timeout:.0f}s"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _http_get(get: JsonObj, ports: PortMap, timeout: float) -> tuple[bool, str]:
    host = get.get("host") or "127.0.0.1"
    port = ports.host_port(get["port"])
    path = get.get("path") or "/"
    conn: http.client.HTTPConnection
    if str(get.get("scheme") or "HTTP").upper() == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the kubelet does not verify probe certificates either
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {"User-Agent": "kube-probe/sluice-process-node", "Accept": "*/*"}
        headers.update({h["name"]: h["value"] for h in get.get("httpHeaders") or []})
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(200).decode(errors="replace").strip()
    finally:
        conn.close()
    return 200 <= resp.status < 400, f"HTTP {resp.status} from {path} on port {port}: {body}"
