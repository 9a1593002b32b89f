"""Typed helpers for the Secrets Sluice manages (a connector's inline credentials).

Values cross this module as ``str`` and are base64-encoded only at the wire; nothing here logs a value.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from kubernetes import client

from sluice.k8s.client import KubeContext
from sluice.k8s.errors import kube_errors

__all__ = ["OwnerRef", "SecretClient", "StoredSecret"]


@dataclass(frozen=True)
class OwnerRef:
    """The object that owns a Secret; the garbage collector deletes the Secret after its owner."""

    api_version: str
    kind: str
    name: str
    uid: str


@dataclass
class StoredSecret:
    """A Secret as read back: decoded values, labels, owners and the version to replace against."""

    name: str
    data: dict[str, str] = field(repr=False)
    labels: dict[str, str]
    owner_uids: list[str]
    resource_version: str | None


def _what(name: str, namespace: str) -> str:
    return f'secret "{name}" in namespace "{namespace}"'


def _encode(data: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def _body(
    name: str, data: dict[str, str], labels: dict[str, str], owner: OwnerRef | None, resource_version: str | None
) -> client.V1Secret:
    owners = None
    if owner is not None:
        owners = [
            client.V1OwnerReference(
                api_version=owner.api_version, kind=owner.kind, name=owner.name, uid=owner.uid, controller=True
            )
        ]
    meta = client.V1ObjectMeta(name=name, labels=labels, owner_references=owners, resource_version=resource_version)
    return client.V1Secret(api_version="v1", kind="Secret", metadata=meta, type="Opaque", data=_encode(data))


class SecretClient:
    """Create, read, replace and delete Opaque Secrets in a namespace."""

    def __init__(self, ctx: KubeContext) -> None:
        self._ctx = ctx

    def _api(self) -> client.CoreV1Api:
        return client.CoreV1Api(self._ctx.api_client)

    def get(self, namespace: str, name: str) -> StoredSecret:
        with kube_errors(_what(name, namespace), self._ctx):
            obj = self._api().read_namespaced_secret(name, namespace, _request_timeout=self._ctx.request_timeout)
        meta = obj.metadata or client.V1ObjectMeta()
        raw = obj.data or {}
        return StoredSecret(
            name=name,
            data={k: base64.b64decode(v).decode("utf-8", "replace") for k, v in raw.items()},
            labels=dict(meta.labels or {}),
            owner_uids=[ref.uid for ref in meta.owner_references or []],
            resource_version=meta.resource_version,
        )

    def create(
        self, namespace: str, name: str, data: dict[str, str], *, labels: dict[str, str], owner: OwnerRef | None
    ) -> None:
        with kube_errors(_what(name, namespace), self._ctx):
            self._api().create_namespaced_secret(
                namespace, _body(name, data, labels, owner, None), _request_timeout=self._ctx.request_timeout
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
        with kube_errors(_what(name, namespace), self._ctx):
            self._api().replace_namespaced_secret(
                name,
                namespace,
                _body(name, data, labels, owner, resource_version),
                _request_timeout=self._ctx.request_timeout,
            )

    def delete(self, namespace: str, name: str) -> None:
        with kube_errors(_what(name, namespace), self._ctx):
            self._api().delete_namespaced_secret(name, namespace, _request_timeout=self._ctx.request_timeout)
