"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

Why real binaries instead of a fake API: every claim Sluice makes about its CRD (structural schema, CEL rules,
defaults, ``kubectl explain``), RBAC, TokenReview/SubjectAccessReview, owner references and StatefulSets is only
worth something if the real apiserver and controllers agree. The binaries come from ``hack/build-k8s.sh``.

What it sets up, as a kubeadm cluster would, minus the kubelets:

- one throwaway CA (``pki.py``) signing the apiserver's serving certificate and every client certificate;
- etcd on loopback ports of its own, fsync off (test data is disposable);
- kube-apiserver with ``--authorization-mode=Node,RBAC``, client-certificate users (the admin is in
  ``system:masters``), optional static bearer tokens (``--token-auth-file``), and a service-account key pair so
  TokenRequest issues real bearer tokens for any ServiceAccount (:meth:`ControlPlane.create_user_token`);
- kube-controller-manager with every default controller (namespace deletion, garbage collection, StatefulSets,
  service-account tokens and ``kube-root-ca.crt``...) each under its own service-account credentials, so RBAC is
  exercised the way it is in a real cluster. Controllers that need a cloud provider skip themselves;
  node-lifecycle stays on, so a process node that stops heart-beating is marked NotReady as on a real cluster;
- kube-scheduler.

Components do not run leader election (one replica each; an election would only add seconds to every start).
Each component logs into ``<work_dir>/logs/<component>.log``; a failed start raises :class:`ControlPlaneError`
with the tail of the failing component's log.

Command line (used by ``make cluster-up`` / ``make cluster-down``)::

    python -m sluice.devstack.controlplane up       # starts in the background, writes .sluice/kubeconfig
    python -m sluice.devstack.controlplane status   # exit 0 when every component is healthy
    python -m sluice.devstack.controlplane down     # SIGTERM, then SIGKILL after a grace period
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import csv
import json
import logging
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from sluice.devstack.binaries import K8S_VERSION, find_binaries
from sluice.devstack.kubeconfig import write_kubeconfig
from sluice.devstack.pki import CertificateAuthority
from sluice.devstack.processes import ManagedProcess, stop_all
from sluice.errors import SluiceError

__all__ = [
    "SERVICE_CIDR",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "free_port",
    "main",
]

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.96.0.0/12"
#: The ClusterIP of the ``kubernetes`` Service: the first address of the service range, in the serving cert.
KUBERNETES_SERVICE_IP = "10.96.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
_APISERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_STATE_FILE = "state.json"
_ETCD_HEALTHY = b'"health":"true"'


class ControlPlaneError(SluiceError):
    """The local control plane could not start, or a request to it failed."""

    reason = "ControlPlaneFailed"
    default_fix = "Read the component log named in the message (under the control plane's logs/ directory)."


class KubectlError(ControlPlaneError):
    """``kubectl`` exited non-zero; ``stdout``/``stderr`` hold what it printed."""

    reason = "KubectlFailed"

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}: {stderr.strip() or stdout.strip()}")
        self.args_list = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it; it is not reserved)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler in one work directory.

    Use as a context manager or call :meth:`start` / :meth:`stop`. Started from a test session, the components
    die with the Python process even on ``kill -9`` (see ``processes.py``); with ``detach=True`` (the CLI) they
    outlive it and :meth:`attach` finds them again through ``state.json``.

    - ``bin_dir``: where the binaries are (default: :func:`sluice.devstack.binaries.bin_dir`).
    - ``static_users``: user name -> groups; each gets a random bearer token (``--token-auth-file``), read back
      with :meth:`static_token`.
    - ``controllers``: kube-controller-manager's ``--controllers`` (``*`` = every controller that is on by
      default), e.g. ``"*,-node-lifecycle-controller"`` for a cluster whose nodes never heart-beat.
    - ``progress``: receives one line per startup step (default: this module's logger at INFO).
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        bin_dir: Path | None = None,
        static_users: Mapping[str, Sequence[str]] | None = None,
        controllers: str = "*",
        detach: bool = False,
        progress: Callable[[str], None] | None = None,
        extra_apiserver_args: Sequence[str] = (),
    ) -> None:
        self.work_dir = Path(work_dir).resolve()
        self._bin_dir = bin_dir
        self._static_users = dict(static_users or {})
        self._controllers = controllers
        self._detach = detach
        self._progress = progress or log.info
        self._extra_apiserver_args = list(extra_apiserver_args)
        self.processes: list[ManagedProcess] = []
        self._health_urls: dict[str, str] = {}
        self._server_url: str | None = None
        self._kubectl_path: Path | None = None
        self._ca: CertificateAuthority | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._atexit_registered = False

    # ----------------------------------------------------------------------------------------------- paths

    @property
    def pki_dir(self) -> Path:
        return self.work_dir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def kubeconfig_path(self) -> Path:
        """The admin kubeconfig (a ``system:masters`` client certificate, certificates embedded)."""
        return self.work_dir / "admin.kubeconfig"

    @property
    def ca_cert_path(self) -> Path:
        """The CA that signed the apiserver's serving certificate (and every client certificate)."""
        return self.pki_dir / "ca.crt"

    @property
    def server_url(self) -> str:
        if self._server_url is None:
            raise ControlPlaneError("the control plane has not been started")
        return self._server_url

    @property
    def kubectl_path(self) -> Path:
        if self._kubectl_path is None:
            self._kubectl_path = find_binaries(self._bin_dir)["kubectl"]
        return self._kubectl_path

    # ----------------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> ControlPlane:
        """Start every component and return once the cluster serves requests and issues service accounts.

        Raises :class:`ControlPlaneError` (with the failing component's log tail) after ``timeout`` seconds or as
        soon as a component exits; whatever was started is stopped again first.
        """
        if self.processes:
            return self
        began = time.monotonic()
        deadline = began + timeout
        binaries = find_binaries(self._bin_dir)
        self._kubectl_path = binaries["kubectl"]
        attempts = 3
        for attempt in range(1, attempts + 1):
            self._prepare_work_dir()
            self._progress(f"control plane {K8S_VERSION}: starting in {self.work_dir}")
            if not self._detach:
                atexit.register(self.stop)
                self._atexit_registered = True
            try:
                self._start(binaries, began, deadline)
                break
            except ControlPlaneError as err:
                # Short grace: a half-started apiserver ignores SIGTERM until its signal handler is installed,
                # and nothing of a failed start is worth waiting for.
                self.stop(grace=2.0)
                # Free ports are picked before the components bind them; another process may win the race.
                if attempt < attempts and "address already in use" in err.message:
                    self._progress("  a port was taken meanwhile; starting again on other ports")
                    continue
                raise
            except BaseException:
                self.stop(grace=2.0)
                raise
        self._write_state()
        self._progress(f"control plane ready in {time.monotonic() - began:.1f}s: {self.server_url}")
        return self

    def _prepare_work_dir(self) -> None:
        # A fresh cluster every time: stale etcd data or certificates from an earlier run would only confuse.
        for sub in ("pki", "etcd-data", "logs", "kubectl-cache", "apiserver-certs", _STATE_FILE):
            path = self.work_dir / sub
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "etcd-data").mkdir(mode=0o700)
        self.logs_dir.mkdir()

    def _start(self, binaries: Mapping[str, Path], began: float, deadline: float) -> None:
        etcd_port, etcd_peer_port, api_port, kcm_port, sched_port = _free_ports(5)
        self._server_url = f"https://127.0.0.1:{api_port}"
        pki = self._write_pki()
        etcd_url = f"http://127.0.0.1:{etcd_port}"

        etcd = self._spawn(
            "etcd",
            binaries["etcd"],
            "--name=sluice",
            f"--data-dir={self.work_dir / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
            f"--initial-cluster=sluice=http://127.0.0.1:{etcd_peer_port}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync",  # disposable data: fsync would only slow every write down
            "--log-level=warn",
        )
        apiserver_args = [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={self.work_dir / 'apiserver-certs'}",
            f"--tls-cert-file={pki['apiserver'][0]}",
            f"--tls-private-key-file={pki['apiserver'][1]}",
            f"--client-ca-file={self.ca_cert_path}",
            "--authorization-mode=Node,RBAC",
            # The default plugin set plus NodeRestriction, so a process node using its system:node:<name>
            # certificate can only touch its own Node and the pods bound to it, as a kubelet.
            "--enable-admission-plugins=NodeRestriction",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={self.pki_dir / 'service-account.pub'}",
            f"--service-account-signing-key-file={self.pki_dir / 'service-account.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The apiserver would publish 127.0.0.1 as the endpoint of the `kubernetes` Service, which Endpoints
            # validation rejects (loopback); there is no kube-proxy to use it anyway.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
        ]
        # The aggregation layer's request-header authentication, with a CA of its own (a certificate from it
        # lets its holder assert any user name). Without it the controller-manager and the scheduler, which
        # delegate authentication of their own endpoints to the apiserver, complain about a missing CA bundle.
        apiserver_args += [
            f"--requestheader-client-ca-file={self.pki_dir / 'front-proxy' / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki['front-proxy-client'][0]}",
            f"--proxy-client-key-file={pki['front-proxy-client'][1]}",
        ]
        if self._static_users:
            apiserver_args.append(f"--token-auth-file={self._write_token_file()}")
        apiserver_args += self._extra_apiserver_args
        apiserver = self._spawn("kube-apiserver", binaries["kube-apiserver"], *apiserver_args)

        self._health_urls = {
            "etcd": f"{etcd_url}/health",
            "kube-apiserver": f"{self.server_url}/readyz",
            "kube-controller-manager": f"https://127.0.0.1:{kcm_port}/healthz",
            "kube-scheduler": f"https://127.0.0.1:{sched_port}/healthz",
        }
        self._wait_http("etcd", etcd, self._health_urls["etcd"], deadline, began, expect=_ETCD_HEALTHY)
        self._wait_http("kube-apiserver", apiserver, self._health_urls["kube-apiserver"], deadline, began)

        # Started only now: both read the apiserver's authentication ConfigMap while they start and give up
        # if the apiserver is not there yet.
        kcm_kubeconfig = self.work_dir / "controller-manager.kubeconfig"
        kcm = self._spawn(
            "kube-controller-manager",
            binaries["kube-controller-manager"],
            f"--kubeconfig={kcm_kubeconfig}",
            f"--authentication-kubeconfig={kcm_kubeconfig}",
            f"--authorization-kubeconfig={kcm_kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={kcm_port}",
            f"--tls-cert-file={pki['controller-manager-serving'][0]}",
            f"--tls-private-key-file={pki['controller-manager-serving'][1]}",
            f"--client-ca-file={self.ca_cert_path}",
            f"--service-account-private-key-file={self.pki_dir / 'service-account.key'}",
            f"--root-ca-file={self.ca_cert_path}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={self.ca_cert_path}",
            f"--cluster-signing-key-file={self.pki_dir / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--cluster-name=sluice",
            f"--controllers={self._controllers}",
            "--leader-elect=false",
        )
        sched_kubeconfig = self.work_dir / "scheduler.kubeconfig"
        scheduler = self._spawn(
            "kube-scheduler",
            binaries["kube-scheduler"],
            f"--kubeconfig={sched_kubeconfig}",
            f"--authentication-kubeconfig={sched_kubeconfig}",
            f"--authorization-kubeconfig={sched_kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={sched_port}",
            f"--tls-cert-file={pki['scheduler-serving'][0]}",
            f"--tls-private-key-file={pki['scheduler-serving'][1]}",
            f"--client-ca-file={self.ca_cert_path}",
            "--leader-elect=false",
        )
        self._wait_http("kube-controller-manager", kcm, self._health_urls["kube-controller-manager"], deadline, began)
        self._wait_http("kube-scheduler", scheduler, self._health_urls["kube-scheduler"], deadline, began)
        # The service-account controller (running under its own token) creating `default` proves the controller
        # manager can authenticate and is authorized; until then pods would be refused by admission.
        self._wait_http(
            "service accounts (kube-controller-manager)",
            kcm,
            f"{self.server_url}/api/v1/namespaces/default/serviceaccounts/default",
            deadline,
            began,
        )

    def _write_pki(self) -> dict[str, tuple[Path, Path]]:
        ca = CertificateAuthority(self.pki_dir)
        self._ca = ca
        self._ssl_context = None  # trusted the previous attempt's CA
        out: dict[str, tuple[Path, Path]] = {}
        api = ca.serving("apiserver", dns_names=_APISERVER_NAMES, ip_addresses=("127.0.0.1", KUBERNETES_SERVICE_IP))
        out["apiserver"] = (api.cert_path, api.key_path)
        for name in ("controller-manager-serving", "scheduler-serving"):
            pair = ca.serving(name, dns_names=("localhost",), ip_addresses=("127.0.0.1",))
            out[name] = (pair.cert_path, pair.key_path)
        ca.new_signing_key("service-account")
        front_proxy = CertificateAuthority(self.pki_dir / "front-proxy", common_name="sluice-front-proxy-ca")
        proxy_client = front_proxy.client("front-proxy-client", "front-proxy-client")
        out["front-proxy-client"] = (proxy_client.cert_path, proxy_client.key_path)
        # Client identities: the bootstrap RBAC policy already binds these user names to their roles.
        for file_name, user, groups in (
            ("admin", "sluice-admin", ("system:masters",)),
            ("controller-manager", "system:kube-controller-manager", ()),
            ("scheduler", "system:kube-scheduler", ()),
        ):
            pair = ca.client(file_name, user, *groups)
            write_kubeconfig(
                self.work_dir / f"{file_name}.kubeconfig",
                server=self.server_url,
                ca_pem=ca.cert_pem,
                user=user,
                client_cert_pem=pair.cert_pem,
                client_key_pem=pair.key_pem,
            )
            out[file_name] = (pair.cert_path, pair.key_path)
        return out

    def _write_token_file(self) -> Path:
        path = self.pki_dir / "tokens.csv"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.writer(fh)
            for user, groups in self._static_users.items():
                row = [secrets.token_urlsafe(32), user, user]
                if groups:
                    row.append(",".join(groups))
                writer.writerow(row)
        return path

    def _spawn(self, name: str, binary: Path, *args: str) -> ManagedProcess:
        proc = ManagedProcess(name, [str(binary), *args], self.logs_dir / f"{name}.log")
        proc.start(tie_to_parent=not self._detach, cwd=self.work_dir)
        self.processes.append(proc)
        return proc

    def _client_ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            ctx = ssl.create_default_context(cafile=str(self.ca_cert_path))
            ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
            self._ssl_context = ctx
        return self._ssl_context

    def _get(self, url: str, timeout: float = 2.0) -> tuple[int, bytes]:
        context = self._client_ssl_context() if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # noqa: S310 (our URLs)
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def _wait_http(
        self,
        name: str,
        proc: ManagedProcess,
        url: str,
        deadline: float,
        began: float,
        expect: bytes | None = None,
    ) -> None:
        """Poll ``url`` until it answers 200 (containing ``expect``), the process dies, or the deadline passes."""
        last = "no answer yet"
        while True:
            code = proc.exit_code()
            if code is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with status {code} while waiting for {name}; "
                    f"last lines of {proc.log_path}:\n{proc.tail()}"
                )
            try:
                status, body = self._get(url)
                if status == 200 and (expect is None or expect in body):
                    self._progress(f"  {name} ready ({time.monotonic() - began:.1f}s)")
                    return
                last = f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}"
            except (OSError, ssl.SSLError) as err:
                last = str(err)
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} not ready at {url} within the deadline (last: {last}); "
                    f"last lines of {proc.log_path}:\n{proc.tail()}"
                )
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        """Stop every component: SIGTERM, then SIGKILL for what is still running after ``grace`` seconds.

        Controllers go first and etcd last, so nothing logs a storm of connection errors on the way down.
        Safe to call twice; logs and certificates stay in the work directory for a post-mortem.
        """
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        if not self.processes:
            return
        by_name = {p.name: p for p in self.processes}
        clients = [by_name[n] for n in ("kube-scheduler", "kube-controller-manager") if n in by_name]
        stop_all(clients, grace)
        stop_all([by_name[n] for n in ("kube-apiserver",) if n in by_name], grace)
        stop_all([by_name[n] for n in ("etcd",) if n in by_name], grace)
        self.processes = []
        with contextlib.suppress(FileNotFoundError):
            (self.work_dir / _STATE_FILE).unlink()
        self._progress(f"control plane in {self.work_dir} stopped")

    # ------------------------------------------------------------------------------ state for the CLI

    def _write_state(self) -> None:
        state = {
            "version": K8S_VERSION,
            "server": self.server_url,
            "kubeconfig": str(self.kubeconfig_path),
            "components": [
                {
                    "name": p.name,
                    "pid": p.pid,
                    "argv": p.argv,
                    "log": str(p.log_path),
                    "health": self._health_urls.get(p.name),
                }
                for p in self.processes
            ],
        }
        (self.work_dir / _STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def attach(cls, work_dir: Path, **kwargs: Any) -> ControlPlane | None:
        """The control plane an earlier ``start`` left running in ``work_dir``, or None if there is none."""
        work_dir = Path(work_dir).resolve()
        try:
            state = json.loads((work_dir / _STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        plane = cls(work_dir, detach=True, **kwargs)
        plane._server_url = state["server"]
        plane.processes = [
            ManagedProcess.attach(c["name"], c["argv"], Path(c["log"]), int(c["pid"])) for c in state["components"]
        ]
        plane._health_urls = {c["name"]: c["health"] for c in state["components"] if c.get("health")}
        return plane

    def health(self) -> dict[str, str]:
        """Each component's state: ``ok`` (its health endpoint says so), ``exited``, or what went wrong."""
        out: dict[str, str] = {}
        for proc in self.processes:
            url = self._health_urls.get(proc.name)
            if not proc.alive():
                out[proc.name] = "exited"
            elif url is None:
                out[proc.name] = "running"
            else:
                try:
                    status, body = self._get(url)
                    healthy = status == 200 and (proc.name != "etcd" or _ETCD_HEALTHY in body)
                    out[proc.name] = "ok" if healthy else f"HTTP {status}: {body[:200]!r}"
                except (OSError, ssl.SSLError) as err:
                    out[proc.name] = f"unreachable: {err}"
        return out

    # --------------------------------------------------------------------------------- using the cluster

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster (as admin unless ``kubeconfig`` says otherwise).

        With ``check`` (the default) a non-zero exit raises :class:`KubectlError` carrying stdout and stderr.
        """
        argv = [
            str(self.kubectl_path),
            f"--kubeconfig={kubeconfig or self.kubeconfig_path}",
            f"--cache-dir={self.work_dir / 'kubectl-cache'}",
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(list(args), result.returncode, result.stdout, result.stderr)
        return result

    def admin_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` authenticated as the cluster admin (not the global default)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig_path))  # type: ignore[no-untyped-call]

    def create_user_token(
        self,
        namespace: str,
        serviceaccount: str,
        *,
        expiration_seconds: int = 3600,
        audiences: Sequence[str] | None = None,
    ) -> str:
        """A real bearer token for ``system:serviceaccount:<namespace>:<serviceaccount>`` via TokenRequest.

        Creates the namespace and the ServiceAccount if they are missing. The account has no rights beyond
        what RBAC bindings grant it, so this is how tests get users with and without permissions.
        """
        from kubernetes import client

        with self.admin_client() as api_client:
            core = client.CoreV1Api(api_client)
            _create_ignoring_conflict(
                lambda: core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
            )
            _create_ignoring_conflict(
                lambda: core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=serviceaccount))
                )
            )
            spec = client.V1TokenRequestSpec(
                audiences=list(audiences) if audiences else None, expiration_seconds=expiration_seconds
            )
            resp = core.create_namespaced_service_account_token(
                serviceaccount, namespace, client.AuthenticationV1TokenRequest(spec=spec)
            )
            if resp.status is None or not resp.status.token:
                raise ControlPlaneError(f"TokenRequest for {namespace}/{serviceaccount} returned no token")
            return str(resp.status.token)

    def static_token(self, user: str) -> str:
        """The bearer token of a ``static_users`` user (from ``--token-auth-file``)."""
        with (self.pki_dir / "tokens.csv").open(newline="") as fh:
            for row in csv.reader(fh):
                if row[1] == user:
                    return row[0]
        raise ControlPlaneError(f"no static token user {user!r}; pass it in static_users=")

    def user_kubeconfig(
        self,
        path: Path | None = None,
        *,
        token: str | None = None,
        namespace: str | None = None,
        serviceaccount: str | None = None,
        user: str | None = None,
        groups: Sequence[str] = (),
        expiration_seconds: int = 24 * 3600,
    ) -> Path:
        """A kubeconfig for a less privileged user, in one of three ways.

        - ``token=``: any bearer token (e.g. from :meth:`static_token`);
        - ``namespace=`` + ``serviceaccount=``: a TokenRequest token for that ServiceAccount (created if missing);
          ``namespace`` also becomes the context's default namespace; the token lives ``expiration_seconds``
          (a day by default, so a session-long fixture never sees it expire);
        - ``user=`` (+ ``groups=``): a client certificate for that user name and groups.
        """
        ca_pem = self.ca_cert_path.read_bytes()
        if token is None and serviceaccount is not None:
            if namespace is None:
                raise ValueError("serviceaccount= needs namespace=")
            token = self.create_user_token(namespace, serviceaccount, expiration_seconds=expiration_seconds)
            user = f"system:serviceaccount:{namespace}:{serviceaccount}"
        label = (user or "token-user").replace(":", "-")
        path = path or self.work_dir / "users" / f"{label}-{secrets.token_hex(3)}.kubeconfig"
        if token is not None:
            return write_kubeconfig(
                path, server=self.server_url, ca_pem=ca_pem, user=user or "token-user", token=token, namespace=namespace
            )
        if user is None:
            raise ValueError("give token=, namespace= and serviceaccount=, or user=")
        if self._ca is None:  # attached to a cluster another process started: its CA is on disk
            self._ca = CertificateAuthority.load(self.pki_dir)
        pair = self._ca.client(f"user-{label}", user, *groups)
        return write_kubeconfig(
            path,
            server=self.server_url,
            ca_pem=ca_pem,
            user=user,
            client_cert_pem=pair.cert_pem,
            client_key_pem=pair.key_pem,
            namespace=namespace,
        )

    def node_kubeconfig(self, node_name: str, path: Path | None = None) -> Path:
        """A kubeconfig with a kubelet's identity (``system:node:<name>`` in ``system:nodes``) for a process node.

        The Node authorizer and NodeRestriction admission then limit it to its own Node and the pods bound to it.
        """
        return self.user_kubeconfig(
            path or self.work_dir / "users" / f"node-{node_name}.kubeconfig",
            user=f"system:node:{node_name}",
            groups=("system:nodes",),
        )


def _create_ignoring_conflict(create: Callable[[], object]) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        create()
    except ApiException as err:
        if err.status != 409:
            raise


# ---------------------------------------------------------------------------------------------------- CLI


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cmd_up(root: Path, timeout: float) -> int:
    work_dir = root / "cluster"
    kubeconfig = root / "kubeconfig"
    running = ControlPlane.attach(work_dir, progress=_print)
    if running is not None:
        health = running.health()
        if all(v == "ok" for v in health.values()):
            _print(f"control plane already running: {running.server_url}")
            _print(f"export KUBECONFIG={kubeconfig}")
            return 0
        _print(f"found a broken control plane ({health}); stopping it and starting a new one")
        running.stop()
    plane = ControlPlane(work_dir, detach=True, progress=_print)
    try:
        plane.start(timeout=timeout)
    except SluiceError as err:
        _print(f"error: {err.message}\nfix: {err.fix}")
        return 1
    shutil.copyfile(plane.kubeconfig_path, kubeconfig)
    kubeconfig.chmod(0o600)
    _print(f"kubeconfig: {kubeconfig}\nnext: export KUBECONFIG={kubeconfig}; kubectl get --raw /readyz")
    return 0


def _cmd_down(root: Path) -> int:
    plane = ControlPlane.attach(root / "cluster", progress=_print)
    with contextlib.suppress(FileNotFoundError):
        (root / "kubeconfig").unlink()
    if plane is None:
        _print("no control plane running")
        return 0
    plane.stop()
    shutil.rmtree(root / "cluster" / "etcd-data", ignore_errors=True)
    return 0


def _cmd_status(root: Path) -> int:
    plane = ControlPlane.attach(root / "cluster")
    if plane is None:
        _print("no control plane running")
        return 1
    health = plane.health()
    print(f"server: {plane.server_url}\nkubeconfig: {root / 'kubeconfig'}")
    for name, state in health.items():
        print(f"{name}: {state}")
    return 0 if all(v == "ok" for v in health.values()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sluice.devstack.controlplane",
        description="Start, inspect or stop the local Kubernetes control plane (state under --dir).",
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=Path(".sluice"), help="state directory (default: .sluice)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness (up)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root: Path = args.dir.resolve()
    if args.command == "up":
        return _cmd_up(root, args.timeout)
    if args.command == "down":
        return _cmd_down(root)
    return _cmd_status(root)


if __name__ == "__main__":
    raise SystemExit(main())
