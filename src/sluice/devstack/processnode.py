"""The process node: a development stand-in for a kubelet that runs pods as local processes.

**This is a development and test tool, not a kubelet.** It lets the real control plane (apiserver, scheduler,
controller-manager) place pods on a Node that exists only as this Python object, so a ``kubectl apply`` of a
Connector really starts ``sluice worker`` — without Docker, containerd or root-only kernel features.

What it does:
- registers a Ready ``Node`` (capacity, conditions, addresses) and keeps it alive with a ``Lease`` in
  ``kube-node-lease`` (renewed every 10 s) plus a periodic status heartbeat, as the node-lifecycle controller
  expects — otherwise it would taint the node and evict the pods;
- watches pods whose ``spec.nodeName`` is this node and runs each container's ``command`` + ``args`` as a local
  process group. **Images are ignored**: the command is looked up on this machine's ``PATH`` (the virtualenv's
  ``bin`` first, so a container ``command: [sluice, worker, ...]`` runs this checkout's ``sluice``);
- resolves env (``value``, ``secretKeyRef``, ``configMapKeyRef``, ``fieldRef``, ``envFrom``, ``$(VAR)``);
- materializes ``secret``, ``configMap``, ``emptyDir`` and ``projected`` service-account volumes under the pod's
  directory and rewrites every occurrence of a ``mountPath`` in command, args and env values to that directory
  (there is no mount namespace, so ``/etc/sluice/config.yaml`` becomes ``<pod dir>/volumes/config/config.yaml``);
- runs a container whose ``securityContext`` sets ``readOnlyRootFilesystem`` under bubblewrap, as strict as a
  kubelet: the root is read-only and only its volumes (at their rewritten paths, read-only when the mount or the
  volume kind says so) are writable (:mod:`sluice.devstack.sandbox`; without ``bwrap`` a warning and no sandbox,
  under ``CI=true`` an error);
- gives each pod whose ServiceAccount token is automounted a kubeconfig (``$KUBECONFIG``) holding a real
  TokenRequest token for that ServiceAccount, so RBAC applies to the pod exactly as in a cluster;
- honours ``restartPolicy`` with a doubling back-off, and the termination grace period (SIGTERM, then SIGKILL);
- runs startup, liveness and readiness probes (``httpGet``, ``tcpSocket``, ``exec``) with their delays, periods,
  timeouts and thresholds, as a kubelet (:mod:`sluice.devstack.probes`): readiness drives the container's
  ``ready`` and the pod's Ready condition, a failed liveness or startup probe kills and restarts the container;
- gives each declared ``containerPort`` a free host port of its own per pod, since every pod shares the host's
  network: an env value or argument naming the port (the number alone, or ending in ``:<port>`` or
  ``=<port>``) is rewritten to the host port, as mount paths are, and probes go to the host port. So two workers
  that both declare 9102 and read ``SLUICE_METRICS_PORT=9102`` listen on two different ports here;
- reports phase, conditions (PodScheduled, Initialized, ContainersReady, Ready), container states and restart
  counts; keeps one log file per container (``<workdir>/pods/<ns>_<pod>_<uid>/<container>.log``);
- on deletion kills the processes and removes the pod (``gracePeriodSeconds: 0``), like a kubelet, so
  StatefulSet and Job controllers see the pod gone and may create its successor.

What it does not do: networking beyond the port mapping (every pod shares the host's network and reports
``127.0.0.1`` as its IP, so a Service or a peer that dials a pod's declared port does not reach it; a port the
container takes from elsewhere than env or args is not mapped, and ``hostPort`` is ignored), resource limits (nor an
emptyDir's ``sizeLimit``), ``runAsUser``/``runAsNonRoot`` (processes run as the node's user), ``grpc`` probes
(counted as passed), image pulls, ``kubectl logs``/``exec`` (read the log file instead).

Run it alone: ``python -m sluice.devstack.processnode --kubeconfig .sluice/kubeconfig --workdir .sluice/node``.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import queue
import shutil
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from sluice.devstack.podenv import EnvError, expand, resolve_env
from sluice.devstack.podrunner import ContainerProc, PodRunner, rfc3339
from sluice.devstack.probes import ContainerProbes, PortMap, ProbeTracker, run_probe
from sluice.devstack.sandbox import Sandbox, SandboxUnavailableError, find_bwrap, in_ci, read_only_root, volume_binds
from sluice.k8s.jsonclient import JsonClient, KubeError, api_path

__all__ = ["ProcessNode", "main"]

log = logging.getLogger(__name__)

JsonObj = dict[str, Any]

LEASE_SECONDS = 40
LEASE_RENEW_SECONDS = 10
STATUS_HEARTBEAT_SECONDS = 30
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def _microtime() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ProcessNode:
    """Register a Node and run the pods scheduled onto it until :meth:`stop`.

    ``backoff_base``/``backoff_max`` are the restart back-off bounds (the kubelet uses 10 s/300 s; the default
    here is shorter so a development loop does not wait long, and still doubles).
    """

    def __init__(
        self,
        kubeconfig: str | Path,
        workdir: str | Path,
        *,
        name: str = "sluice-process-node",
        backoff_base: float = 2.0,
        backoff_max: float = 300.0,
        extra_env: dict[str, str] | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.workdir = Path(workdir)
        self.name = name
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extra_env = dict(extra_env or {})
        self.poll_interval = poll_interval
        self.client = JsonClient(self.kubeconfig, timeout=30)
        self._runners: dict[str, PodRunner] = {}
        self._reported: dict[str, JsonObj] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._node_uid = ""
        # Probes wait up to their timeout: they run here, and their results go back to the pods loop.
        self._probe_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="processnode-probe")
        self._probe_results: queue.SimpleQueue[tuple[str, ProbeTracker, bool, str]] = queue.SimpleQueue()
        #: host ports given to live pods: a port is free again only once its pod is gone, never handed out twice
        self._host_ports: set[int] = set()
        # Pods read the node's view of the cluster (server, CA) from the kubeconfig we were given.
        self._cluster = self._cluster_from_kubeconfig()

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Register the node and start the heartbeat, watch and reconcile threads.

        Under ``CI=true`` a missing or broken ``bwrap`` raises :class:`SandboxUnavailableError` here, before any pod.
        """
        if in_ci():
            find_bwrap()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.register()
        for target, tname in ((self._heartbeat_loop, "heartbeat"), (self._watch_loop, "watch"), (self._loop, "pods")):
            thread = threading.Thread(target=target, name=f"processnode-{tname}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("process node %s is up; pod logs under %s", self.name, self.workdir / "pods")

    def stop(self, *, delete_node: bool = True) -> None:
        """Kill every pod's processes, stop the threads and (by default) delete the Node object."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=15)
        for runner in list(self._runners.values()):
            runner.kill_now()
        self._runners.clear()
        self._probe_pool.shutdown(wait=False, cancel_futures=True)
        if delete_node:
            try:
                self.client.delete(api_path("nodes", name=self.name))
            except KubeError as exc:
                # A kubelet identity may not delete its Node (NodeRestriction); the admin can, or it stays NotReady.
                log.info("node %s not deleted: %s", self.name, exc)
            except Exception as exc:
                log.warning("could not delete node %s: %s", self.name, exc)

    def __enter__(self) -> ProcessNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _runner(self, namespace: str, pod: str) -> PodRunner | None:
        return next((r for r in list(self._runners.values()) if (r.namespace, r.name) == (namespace, pod)), None)

    def host_port(self, namespace: str, pod: str, container_port: int) -> int | None:
        """The host port given to a running pod's declared ``container_port`` (None: no such pod or port here)."""
        runner = self._runner(namespace, pod)
        return None if runner is None else runner.ports.ports.get(container_port)

    def signal_container(self, namespace: str, pod: str, container: str, sig: signal.Signals) -> bool:
        """Send ``sig`` to a running container's process group (tests freeze a process with SIGSTOP); False when
        it does not run here."""
        runner = self._runner(namespace, pod)
        proc = next((p for p in runner.containers if p.name == container), None) if runner else None
        if proc is None or not proc.running:
            return False
        proc.signal_group(sig)
        return True

    def log_path(self, namespace: str, pod: str, container: str) -> Path | None:
        """The log file of a container of a pod currently (or last) run here."""
        matches = sorted(
            self.workdir.glob(f"pods/{namespace}_{pod}_*/{container}.log"), key=lambda p: p.stat().st_mtime
        )
        return matches[-1] if matches else None

    # --- node registration and heartbeat ------------------------------------------------------------------

    def _node_status(self) -> JsonObj:
        now = rfc3339()
        cpu = str(os.cpu_count() or 2)
        mem_kib = 8 * 1024 * 1024
        try:
            with Path("/proc/meminfo").open() as fh:
                mem_kib = int(fh.readline().split()[1])
        except (OSError, ValueError, IndexError):
            pass
        capacity = {"cpu": cpu, "memory": f"{mem_kib}Ki", "pods": "250", "ephemeral-storage": "100Gi"}

        def cond(ctype: str, status: str, reason: str, message: str) -> JsonObj:
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }

        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "process node does not track memory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "process node does not track disk"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "process node does not track pids"),
                cond("Ready", "True", "KubeletReady", "sluice process node is running pods as local processes"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": os.uname().release,
                "osImage": "sluice process node",
                "containerRuntimeVersion": "process://0",
                "kubeletVersion": "v0.0.0-sluice-process-node",
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def register(self) -> None:
        body: JsonObj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "sluice.dev/process-node": "true",
                },
                "annotations": {"sluice.dev/process-node": "development tool: runs pods as local processes"},
            },
            "spec": {},
        }
        node = self.client.get_or_none(api_path("nodes", name=self.name))
        if node is None:
            node = self.client.create(api_path("nodes"), body)
        self._node_uid = node["metadata"]["uid"]
        self.client.merge_patch(api_path("nodes", name=self.name, sub="status"), {"status": self._node_status()})
        self._renew_lease()

    def _renew_lease(self) -> None:
        path = api_path("leases", "kube-node-lease", self.name)
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": _microtime()}
        try:
            self.client.merge_patch(path, {"spec": spec})
        except KubeError as exc:
            if exc.status != 404:
                raise
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self._node_uid}
            self.client.create(
                api_path("leases", "kube-node-lease"),
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": "kube-node-lease", "ownerReferences": [owner]},
                    "spec": spec,
                },
            )

    def _heartbeat_loop(self) -> None:
        last_status = time.monotonic()
        while not self._stop.wait(LEASE_RENEW_SECONDS):
            try:
                self._renew_lease()
                if time.monotonic() - last_status >= STATUS_HEARTBEAT_SECONDS:
                    self.client.merge_patch(
                        api_path("nodes", name=self.name, sub="status"), {"status": self._node_status()}
                    )
                    last_status = time.monotonic()
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)

    # --- pod watch and reconcile --------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        """Wake the reconcile loop on any change to our pods; the loop also polls, so a lost watch is harmless."""
        selector = f"spec.nodeName={self.name}"
        while not self._stop.is_set():
            try:
                for _event in self.client.watch(api_path("pods"), fieldSelector=selector, timeout_seconds=30):
                    self._wake.set()
                    if self._stop.is_set():
                        return
            except Exception as exc:
                log.debug("pod watch error: %s", exc)
                self._stop.wait(1)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.reconcile_once()
            except Exception:
                log.exception("process node reconcile failed")

    def reconcile_once(self) -> None:
        self._collect_probe_results()
        pods = self.client.list(api_path("pods"), fieldSelector=f"spec.nodeName={self.name}")
        seen: set[str] = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            try:
                self._reconcile_pod(pod)
            except Exception:
                log.exception("pod %s/%s failed to reconcile", pod["metadata"]["namespace"], pod["metadata"]["name"])
        for uid in list(self._runners):
            if uid not in seen:  # force-deleted: nobody waits for us, stop at once
                runner = self._runners[uid]
                log.info("pod %s/%s is gone; killing its processes", runner.namespace, runner.name)
                runner.kill_now()
                self._forget(uid)
                self._reported.pop(uid, None)

    def _reconcile_pod(self, pod: JsonObj) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        runner = self._runners.get(uid)
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if runner is None:
            if meta.get("deletionTimestamp") or phase in ("Succeeded", "Failed"):
                # Nothing of ours runs: a finished pod (or one from before a node restart) is removed at once.
                if meta.get("deletionTimestamp"):
                    self.client.delete(
                        api_path("pods", meta["namespace"], meta["name"]), grace_period_seconds=0, uid=uid
                    )
                return
            runner = self._new_runner(pod)
            self._runners[uid] = runner

        if meta.get("deletionTimestamp"):
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            runner.begin_termination(float(grace))
            if runner.termination_done():
                log.info("pod %s/%s terminated; removing it", runner.namespace, runner.name)
                self._report(pod, runner)
                self.client.delete(api_path("pods", meta["namespace"], meta["name"]), grace_period_seconds=0, uid=uid)
                self._forget(uid)
                self._reported.pop(uid, None)
            return

        self._drive(pod, runner)
        self._report(pod, runner)

    def _new_runner(self, pod: JsonObj) -> PodRunner:
        meta = pod["metadata"]
        pod_dir = self.workdir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        runner = PodRunner(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            pod_dir=pod_dir,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            termination_grace=float(pod["spec"].get("terminationGracePeriodSeconds", 30)),
            ports=PortMap.allocate(
                (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"], self._free_host_port
            ),
        )
        if runner.ports.ports:
            log.info("pod %s/%s: container ports on this host: %s", runner.namespace, runner.name, runner.ports.ports)
        # Carry restart counts over a node restart, as the kubelet does from its checkpoints.
        previous = {c["name"]: c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses", [])}
        for spec in pod["spec"].get("initContainers") or []:
            runner.init_containers.append(
                ContainerProc(spec["name"], spec.get("image", ""), pod_dir / f"{spec['name']}.log", init=True)
            )
        for spec in pod["spec"].get("containers") or []:
            proc = ContainerProc(spec["name"], spec.get("image", ""), pod_dir / f"{spec['name']}.log")
            proc.restart_count = previous.get(spec["name"], 0)
            runner.containers.append(proc)
        return runner

    def _drive(self, pod: JsonObj, runner: PodRunner) -> None:
        policy = pod["spec"].get("restartPolicy", "Always")
        specs = {c["name"]: c for c in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]}
        for proc in runner.all_procs():
            runner.reap(proc, policy)
        # Init containers strictly one after another.
        for proc in runner.init_containers:
            if proc.done and (proc.last_exit or {}).get("exitCode") == 0:
                continue
            if proc.done or proc.running:
                return  # failed for good, or still running
            if time.time() >= proc.next_start_at:
                self._start(pod, runner, proc, specs[proc.name])
            return
        now = time.time()
        runner.enforce_probes(now)
        for proc in runner.containers:
            if proc.running and proc.probes is not None and proc.probe_kill_at is None:
                for tracker in proc.probes.due(now):
                    self._submit_probe(runner, proc, tracker, now)
            if not proc.done and not proc.running and time.time() >= proc.next_start_at:
                self._start(pod, runner, proc, specs[proc.name])

    def _free_host_port(self) -> int:
        """A port the OS calls free that no live pod of ours was given (it may not listen on it yet)."""
        while True:
            with socket.socket() as s:
                s.bind(("", 0))
                port = int(s.getsockname()[1])
            if port not in self._host_ports:
                self._host_ports.add(port)
                return port

    def _forget(self, uid: str) -> None:
        """A pod's runner is gone: its host ports may be handed out again."""
        runner = self._runners.pop(uid, None)
        if runner is not None:
            self._host_ports.difference_update(runner.ports.ports.values())

    def _submit_probe(self, runner: PodRunner, proc: ContainerProc, tracker: ProbeTracker, now: float) -> None:
        tracker.begin(now)
        future = self._probe_pool.submit(run_probe, tracker.spec, runner.ports, env=proc.env, cwd=proc.cwd)
        who = f"pod {runner.namespace}/{runner.name} container {proc.name}"

        def done(f: Future[tuple[bool, str]]) -> None:
            ok, message = f.result() if not f.cancelled() else (False, "cancelled")
            self._probe_results.put((who, tracker, ok, message))
            self._wake.set()

        future.add_done_callback(done)

    def _collect_probe_results(self) -> None:
        """Apply finished probes in the pods loop (the only thread that changes a runner)."""
        while True:
            try:
                who, tracker, ok, message = self._probe_results.get_nowait()
            except queue.Empty:
                return
            before = tracker.result
            tracker.record(ok, message)
            if tracker.result is not before and tracker.result is not None:
                verdict = "passed" if tracker.result else "failed"
                log.info("%s: %s %s: %s", who, tracker.spec.kind, verdict, message)

    def _start(self, pod: JsonObj, runner: PodRunner, proc: ContainerProc, spec: JsonObj) -> None:
        try:
            mounts = self._prepare_volumes(pod, runner, spec)
            env = resolve_env(pod, spec, self._lookup)
        except (EnvError, KubeError) as exc:
            runner.config_error = str(exc)
            proc.waiting_reason = "CreateContainerConfigError"
            proc.waiting_message = str(exc)
            proc.next_start_at = time.time() + 2
            return
        runner.config_error = ""

        def rewrite(text: str) -> str:
            for mount_path, local, _ in mounts:
                text = text.replace(mount_path, str(local))
            return text

        ports = runner.ports
        env = {k: ports.rewrite(rewrite(v)) for k, v in env.items()}
        argv = [ports.rewrite(rewrite(expand(a, env))) for a in (spec.get("command") or []) + (spec.get("args") or [])]
        if not argv:
            runner.config_error = "container has no command: the process node ignores images and needs one"
            proc.waiting_reason = "CreateContainerConfigError"
            proc.waiting_message = runner.config_error
            proc.next_start_at = time.time() + 30
            return
        sandbox: Sandbox | None = None
        if read_only_root(spec):
            try:
                bwrap = find_bwrap()
            except SandboxUnavailableError as exc:
                runner.config_error = f"securityContext.readOnlyRootFilesystem: {exc}"
                proc.waiting_reason = "CreateContainerConfigError"
                proc.waiting_message = runner.config_error
                proc.next_start_at = time.time() + 30
                log.error("pod %s/%s: %s", runner.namespace, runner.name, runner.config_error)
                return
            if bwrap is not None:
                binds = volume_binds((str(local), read_only) for _, local, read_only in mounts)
                sandbox = Sandbox(bwrap, tuple(binds), hostname=pod["metadata"]["name"])
        full_env = self._base_env(pod, runner, sandboxed=sandbox is not None)
        full_env.update(env)
        cwd = Path(rewrite(spec["workingDir"])) if spec.get("workingDir") else runner.pod_dir
        cwd.mkdir(parents=True, exist_ok=True)
        runner.launch(proc, argv, full_env, cwd, sandbox)
        if proc.popen is not None and proc.started_at is not None:
            proc.env, proc.cwd = full_env, cwd
            if any(spec.get(kind) for kind in ("startupProbe", "livenessProbe", "readinessProbe")):
                proc.probes = ContainerProbes.from_spec(spec, proc.started_at)

    def _base_env(self, pod: JsonObj, runner: PodRunner, *, sandboxed: bool = False) -> dict[str, str]:
        """PATH (the virtualenv first), HOME, LANG, HOSTNAME, KUBECONFIG; TMPDIR only without a sandbox.

        In a sandbox, as under a kubelet, no temporary directory is provided: a container that needs one mounts a
        volume and sets TMPDIR itself (the worker does). HOME stays the pod directory, read-only there.
        """
        venv_bin = str(Path(sys.executable).parent)
        path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        env = {
            "PATH": f"{venv_bin}:{path}",
            "HOME": str(runner.pod_dir),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOSTNAME": pod["metadata"]["name"],
        }
        if not sandboxed:
            env["TMPDIR"] = str(runner.pod_dir / "tmp")
            (runner.pod_dir / "tmp").mkdir(exist_ok=True)
        kubeconfig = runner.pod_dir / "kubeconfig"
        if kubeconfig.exists():
            env["KUBECONFIG"] = str(kubeconfig)
        env.update(self.extra_env)
        return env

    def _lookup(self, kind: str, namespace: str, name: str) -> JsonObj | None:
        return self.client.get_or_none(api_path(kind, namespace, name))

    # --- volumes and service account tokens ----------------------------------------------------------------

    def _prepare_volumes(self, pod: JsonObj, runner: PodRunner, spec: JsonObj) -> list[tuple[str, Path, bool]]:
        """Write each mounted volume under the pod dir; return (mountPath, local dir, read-only) triples, longest
        mountPath first. Secret, configMap and projected volumes are read-only whatever the mount says (as in
        Kubernetes); an emptyDir only when its mount is ``readOnly``."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        base = runner.pod_dir / "volumes"
        mounts: list[tuple[str, Path, bool]] = []
        namespace = pod["metadata"]["namespace"]
        for mount in spec.get("volumeMounts") or []:
            vol = volumes.get(mount["name"])
            if vol is None:
                raise EnvError(f"volumeMount {mount['name']!r} names no volume")
            local = base / mount["name"]
            if "secret" in vol or "configMap" in vol:
                kind, src = ("secrets", vol["secret"]) if "secret" in vol else ("configmaps", vol["configMap"])
                obj_name = src.get("secretName") or src.get("name")
                obj = self._lookup(kind, namespace, obj_name)
                if obj is None:
                    if src.get("optional"):
                        local.mkdir(parents=True, exist_ok=True)
                    else:
                        raise EnvError(f"volume {mount['name']!r}: {kind[:-1]} {obj_name!r} does not exist")
                else:
                    self._write_data(local, kind, obj, src.get("items"))
            elif "emptyDir" in vol:
                local.mkdir(parents=True, exist_ok=True)
            elif "projected" in vol and any("serviceAccountToken" in src for src in vol["projected"]["sources"]):
                self._write_sa_token(pod, runner, local)
            elif "projected" in vol:
                self._write_projected(namespace, local, vol["projected"]["sources"])
            else:
                raise EnvError(
                    f"volume {mount['name']!r}: only secret, configMap, emptyDir and the service "
                    "account token are supported by the process node"
                )
            sub_path = mount.get("subPath")
            if sub_path:
                local = local / str(sub_path)
                if "emptyDir" in vol:
                    local.mkdir(parents=True, exist_ok=True)  # the kubelet creates a missing subPath directory
            read_only = bool(mount.get("readOnly")) or "emptyDir" not in vol
            mounts.append((mount["mountPath"].rstrip("/"), local, read_only))
        if pod["spec"].get("automountServiceAccountToken", True) and not any(m == SA_MOUNT for m, _, _ in mounts):
            self._write_sa_token(pod, runner, base / "kube-api-access")
        return sorted(mounts, key=lambda m: -len(m[0]))

    def _write_projected(self, namespace: str, local: Path, sources: list[JsonObj]) -> None:
        """secret/configMap sources of a projected volume, merged into one directory."""
        tmp = local.with_name(local.name + ".proj")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for src in sources:
            kind, ref = ("secrets", src["secret"]) if "secret" in src else ("configmaps", src.get("configMap"))
            if ref is None:
                raise EnvError("projected volumes support only secret and configMap sources on the process node")
            obj = self._lookup(kind, namespace, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f"projected volume: {kind[:-1]} {ref['name']!r} does not exist")
            part = tmp / "part"
            self._write_data(part, kind, obj, ref.get("items"))
            for file in part.rglob("*"):
                if file.is_file():
                    target = tmp / file.relative_to(part)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    file.rename(target)
            shutil.rmtree(part)
        shutil.rmtree(local, ignore_errors=True)
        tmp.rename(local)

    @staticmethod
    def _write_data(local: Path, kind: str, obj: JsonObj, items: list[JsonObj] | None) -> None:
        tmp = local.with_name(local.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        data: dict[str, bytes] = {}
        if kind == "secrets":
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        selected: list[tuple[str, str]] = (
            [(str(i["key"]), str(i.get("path", i["key"]))) for i in items] if items else [(k, k) for k in data]
        )
        for key, rel in selected:
            if key not in data:
                raise EnvError(f"key {key!r} not found in {obj['metadata']['name']!r}")
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[key])
            target.chmod(0o600)
        shutil.rmtree(local, ignore_errors=True)
        tmp.rename(local)

    def _cluster_from_kubeconfig(self) -> JsonObj:
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        ctx_name = cfg.get("current-context")
        contexts = cfg.get("contexts", [])
        ctx = next((c["context"] for c in contexts if c["name"] == ctx_name), contexts[0]["context"])
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        out: JsonObj = {"server": cluster["server"]}
        if "certificate-authority-data" in cluster:
            out["ca"] = base64.b64decode(cluster["certificate-authority-data"])
        elif "certificate-authority" in cluster:
            ca_path = Path(cluster["certificate-authority"])
            if not ca_path.is_absolute():
                ca_path = self.kubeconfig.parent / ca_path
            out["ca"] = ca_path.read_bytes()
        return out

    def _write_sa_token(self, pod: JsonObj, runner: PodRunner, local: Path) -> None:
        """A TokenRequest for the pod's ServiceAccount, bound to the pod, as token/ca.crt/namespace + a kubeconfig."""
        meta = pod["metadata"]
        sa = pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": 86400,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
            },
        }
        path = api_path("serviceaccounts", meta["namespace"], sa, "token")
        try:
            token = self.client.create(path, body)["status"]["token"]
        except KubeError as exc:
            raise EnvError(f"cannot get a token for serviceaccount {sa!r}: {exc.message}") from exc
        local.mkdir(parents=True, exist_ok=True)
        (local / "token").write_text(token)
        (local / "namespace").write_text(meta["namespace"])
        cluster: JsonObj = {"server": self._cluster["server"]}
        if "ca" in self._cluster:
            (local / "ca.crt").write_bytes(self._cluster["ca"])
            cluster["certificate-authority"] = str(local / "ca.crt")
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": cluster}],
            "users": [{"name": sa, "user": {"tokenFile": str(local / "token")}}],
            "contexts": [
                {"name": "pod", "context": {"cluster": "cluster", "user": sa, "namespace": meta["namespace"]}}
            ],
            "current-context": "pod",
        }
        kc_path = runner.pod_dir / "kubeconfig"
        kc_path.write_text(yaml.safe_dump(kubeconfig))
        kc_path.chmod(0o600)
        for f in local.iterdir():
            f.chmod(0o600)

    # --- status -------------------------------------------------------------------------------------------

    def _report(self, pod: JsonObj, runner: PodRunner) -> None:
        status = runner.status()
        previous = self._reported.get(runner.uid)
        comparable = _without_times(status)
        if previous is not None and previous == comparable:
            return
        # Keep transition times stable for conditions whose status did not change.
        old_conditions = {c["type"]: c for c in (pod.get("status") or {}).get("conditions", [])}
        for cond in status["conditions"]:
            old = old_conditions.get(cond["type"])
            if old is not None and old.get("status") == cond["status"] and old.get("lastTransitionTime"):
                cond["lastTransitionTime"] = old["lastTransitionTime"]
        meta = pod["metadata"]
        try:
            self.client.merge_patch(api_path("pods", meta["namespace"], meta["name"], "status"), {"status": status})
            self._reported[runner.uid] = comparable
        except KubeError as exc:
            if exc.status != 404:
                log.warning("cannot report status of pod %s/%s: %s", meta["namespace"], meta["name"], exc)


def _without_times(status: JsonObj) -> JsonObj:
    out = dict(status)
    out["conditions"] = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status["conditions"]]
    return out


# --- command line ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sluice.devstack.processnode", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True, help="admin kubeconfig of the (development) cluster")
    parser.add_argument("--workdir", default=".sluice/node", help="where pod directories and logs go")
    parser.add_argument("--name", default="sluice-process-node", help="Node name to register")
    parser.add_argument("--backoff-base", type=float, default=2.0, help="first restart back-off in seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    node = ProcessNode(args.kubeconfig, args.workdir, name=args.name, backoff_base=args.backoff_base)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    node.start()
    print(f"process node {args.name} running; pod logs under {node.workdir / 'pods'}", flush=True)
    stopped.wait()
    node.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
