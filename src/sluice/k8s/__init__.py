"""The only product code that talks to the Kubernetes API.

Small typed helpers over the ``kubernetes`` client (Connector resources, Secrets, Token- and
SubjectAccessReviews). Every ``ApiException`` and connection error is converted once, in
:mod:`sluice.k8s.errors`, into a ``sluice.errors`` class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sluice.k8s.client import KubeContext, load_api_client
from sluice.k8s.connectors import API_VERSION, GROUP, KIND, PLURAL, VERSION, ConnectorClient
from sluice.k8s.errors import kube_errors, translate_api_exception, translate_connection_error
from sluice.k8s.reviews import AccessDecision, ReviewClient, UserInfo
from sluice.k8s.secrets import OwnerRef, SecretClient, StoredSecret

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "AccessDecision",
    "ConnectorClient",
    "Kube",
    "KubeContext",
    "OwnerRef",
    "ReviewClient",
    "SecretClient",
    "StoredSecret",
    "UserInfo",
    "kube_errors",
    "load_api_client",
    "translate_api_exception",
    "translate_connection_error",
]


@dataclass
class Kube:
    """Everything the API needs from Kubernetes, sharing one lazily built client."""

    ctx: KubeContext = field(default_factory=KubeContext)

    def __post_init__(self) -> None:
        self.connectors = ConnectorClient(self.ctx)
        self.secrets = SecretClient(self.ctx)
        self.reviews = ReviewClient(self.ctx)

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, *, timeout_seconds: float = 10.0) -> Kube:
        return cls(KubeContext(kubeconfig=kubeconfig, timeout_seconds=timeout_seconds))

    def close(self) -> None:
        self.ctx.close()
