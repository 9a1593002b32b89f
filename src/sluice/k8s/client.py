"""How Sluice connects to the Kubernetes API: one configured ``ApiClient`` shared by the typed helpers.

Connecting is lazy on purpose: ``create_app()`` and ``sluice generate`` must work on a machine without a cluster,
so nothing here touches the network or even reads a kubeconfig until the first call.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config

from sluice.errors import KubernetesUnavailableError

__all__ = ["KubeContext", "load_api_client"]

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """Build an ``ApiClient`` from, in order: the given kubeconfig, ``$KUBECONFIG`` or ``~/.kube/config``, or
    the pod's ServiceAccount (in-cluster). Raises ``KubernetesUnavailableError`` naming what was tried."""
    cfg = client.Configuration()
    tried: list[str] = []
    candidates: list[str] = []
    if kubeconfig:
        candidates.append(kubeconfig)
    else:
        env = os.environ.get("KUBECONFIG")
        if env:
            candidates.extend(p for p in env.split(os.pathsep) if p)
        candidates.append(str(Path.home() / ".kube" / "config"))
    for path in candidates:
        if Path(path).is_file():
            try:
                config.load_kube_config(config_file=path, context=context, client_configuration=cfg)  # type: ignore[no-untyped-call]
            except config.ConfigException as exc:
                raise KubernetesUnavailableError(
                    f"kubeconfig {path} cannot be used: {exc}", fix="Fix or replace the kubeconfig file."
                ) from exc
            break
        tried.append(path)
        if kubeconfig:
            raise KubernetesUnavailableError(
                f"kubeconfig {path} does not exist", fix="Pass --kubeconfig with the path of an existing kubeconfig."
            )
    else:
        if not IN_CLUSTER_TOKEN.exists():
            raise KubernetesUnavailableError(
                f"no Kubernetes credentials found (tried {', '.join(tried)} and the in-cluster ServiceAccount)",
                fix="Pass --kubeconfig, set KUBECONFIG, or run inside a pod with a ServiceAccount.",
            )
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    # Fail fast when the apiserver is down: one retry on connection errors, not urllib3's three.
    cfg.retries = 1
    return client.ApiClient(configuration=cfg)


@dataclass
class KubeContext:
    """A lazily created ``ApiClient`` plus the per-request timeout every helper passes on.

    ``api_client`` may be given directly (tests, a pre-built client) or is built on first use from
    ``kubeconfig``; building is guarded by a lock because FastAPI runs sync calls in a thread pool.
    """

    kubeconfig: str | None = None
    context: str | None = None
    timeout_seconds: float = 10.0
    _api_client: client.ApiClient | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def api_client(self) -> client.ApiClient:
        if self._api_client is None:
            with self._lock:
                if self._api_client is None:
                    self._api_client = load_api_client(self.kubeconfig, self.context)
        return self._api_client

    @property
    def host(self) -> str:
        """The apiserver URL, for error messages; ``"(not configured)"`` before the client could be built."""
        if self._api_client is None:
            return "(not configured)"
        return str(self._api_client.configuration.host)

    @property
    def request_timeout(self) -> tuple[float, float]:
        """(connect, read) timeouts for urllib3."""
        return (min(self.timeout_seconds, 5.0), self.timeout_seconds)

    def close(self) -> None:
        if self._api_client is not None:
            self._api_client.close()  # type: ignore[no-untyped-call]
            self._api_client = None
