"""Server-side dry runs (``?dry_run=true``): the connector service's writes sent with ``dryRun=All``.

:class:`DryRunKube` is a :class:`sluice.k8s.Kube` whose reads are real and whose writes carry the apiserver's
``dryRun=All``: the apiserver validates and admits each object (CRD schema, CEL rules, admission, the API's own
RBAC) and stores nothing. :class:`~sluice.api.services.connectors.ConnectorService` runs unchanged on it, so a dry
run goes through exactly the code and checks of the real request; deletes (rolling back a failed create, removing a
Secret no longer referenced) do nothing, as nothing was written.

Errors are converted by the same :func:`sluice.k8s.kube_errors`; Secret values are base64-encoded at the wire only
and never logged.
"""

from __future__ import annotations

import base64
from typing import Any, cast

from kubernetes import client

from sluice.k8s import GROUP, PLURAL, VERSION, ConnectorClient, Kube, OwnerRef, SecretClient, kube_errors
from sluice.k8s.connectors import MERGE_PATCH

__all__ = ["DRY_RUN", "DryRunKube"]

#: The value of the apiserver's ``dryRun`` query parameter: every stage runs, nothing is stored.
DRY_RUN = "All"


def _what(kind: str, name: str, namespace: str) -> str:
    return f'{kind} "{name}" in namespace "{namespace}" (dry run)'


class DryRunConnectors(ConnectorClient):
    """Real reads; create, replace and merge-patch as dry runs; delete does nothing."""

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        ctx = self._ctx
        with kube_errors(_what("connector", str(body.get("metadata", {}).get("name")), namespace), ctx):
            raw = client.CustomObjectsApi(ctx.api_client).create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, dry_run=DRY_RUN, _request_timeout=ctx.request_timeout
            )
        return cast(dict[str, Any], raw)

    def replace(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        ctx = self._ctx
        name = body["metadata"]["name"]
        with kube_errors(_what("connector", name, namespace), ctx):
            raw = client.CustomObjectsApi(ctx.api_client).replace_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body, dry_run=DRY_RUN, _request_timeout=ctx.request_timeout
            )
        return cast(dict[str, Any], raw)

    def merge_patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        ctx = self._ctx
        with kube_errors(_what("connector", name, namespace), ctx):
            raw = client.CustomObjectsApi(ctx.api_client).patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                dry_run=DRY_RUN,
                _content_type=MERGE_PATCH,
                _request_timeout=ctx.request_timeout,
            )
        return cast(dict[str, Any], raw)

    def delete(self, namespace: str, name: str) -> None:
        """Nothing was created, so nothing is deleted."""


def _secret(
    name: str, data: dict[str, str], labels: dict[str, str], owner: OwnerRef | None, resource_version: str | None
) -> client.V1Secret:
    owners = None
    if owner is not None and owner.uid:
        owners = [
            client.V1OwnerReference(
                api_version=owner.api_version, kind=owner.kind, name=owner.name, uid=owner.uid, controller=True
            )
        ]
    meta = client.V1ObjectMeta(name=name, labels=labels, owner_references=owners, resource_version=resource_version)
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return client.V1Secret(api_version="v1", kind="Secret", metadata=meta, type="Opaque", data=encoded)


class DryRunSecrets(SecretClient):
    """Real reads; create and replace as dry runs; delete does nothing."""

    def create(
        self, namespace: str, name: str, data: dict[str, str], *, labels: dict[str, str], owner: OwnerRef | None
    ) -> None:
        ctx = self._ctx
        with kube_errors(_what("secret", name, namespace), ctx):
            client.CoreV1Api(ctx.api_client).create_namespaced_secret(
                namespace,
                _secret(name, data, labels, owner, None),
                dry_run=DRY_RUN,
                _request_timeout=ctx.request_timeout,
            )

    def replace(
        self,
        namespace: str,
        name: str,
        data: dict[str, str],
        *,
        labels: dict[str, str],
        owner: OwnerRef | None,
        resource_version: str | None,
    ) -> None:
        ctx = self._ctx
        with kube_errors(_what("secret", name, namespace), ctx):
            client.CoreV1Api(ctx.api_client).replace_namespaced_secret(
                name,
                namespace,
                _secret(name, data, labels, owner, resource_version),
                dry_run=DRY_RUN,
                _request_timeout=ctx.request_timeout,
            )

    def delete(self, namespace: str, name: str) -> None:
        """Nothing was written, so nothing is deleted."""


class DryRunKube(Kube):
    """The same cluster and client as the :class:`Kube` it wraps; every write a server-side dry run."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.connectors = DryRunConnectors(self.ctx)
        self.secrets = DryRunSecrets(self.ctx)

    @classmethod
    def of(cls, kube: Kube) -> DryRunKube:
        return cls(kube.ctx)

    def close(self) -> None:
        """The client belongs to the wrapped :class:`Kube`."""
