"""Typed helpers for ``Connector`` custom resources (group ``sluice.dev``, version ``v1alpha1``).

Objects travel as plain dicts (the CR's JSON): the spec is validated by ``sluice.models`` before it gets here,
and the apiserver validates it again against the CRD's schema.
"""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client

from sluice.k8s.client import KubeContext
from sluice.k8s.errors import kube_errors

__all__ = ["API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION", "ConnectorClient"]

GROUP = "sluice.dev"
VERSION = "v1alpha1"
PLURAL = "connectors"
KIND = "Connector"
API_VERSION = f"{GROUP}/{VERSION}"

MERGE_PATCH = "application/merge-patch+json"


def _what(name: str | None, namespace: str) -> str:
    if name is None:
        return f'connectors in namespace "{namespace}"'
    return f'connector "{name}" in namespace "{namespace}"'


class ConnectorClient:
    """Create, read, replace, merge-patch and delete Connector resources in a namespace."""

    def __init__(self, ctx: KubeContext) -> None:
        self._ctx = ctx

    def _api(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self._ctx.api_client)

    def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("metadata", {}).get("name")
        with kube_errors(_what(name, namespace), self._ctx):
            raw = self._api().create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, _request_timeout=self._ctx.request_timeout
            )
        return cast(dict[str, Any], raw)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        with kube_errors(_what(name, namespace), self._ctx):
            raw = self._api().get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=self._ctx.request_timeout
            )
        return cast(dict[str, Any], raw)

    def list(self, namespace: str) -> list[dict[str, Any]]:
        with kube_errors(_what(None, namespace), self._ctx):
            raw = self._api().list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, _request_timeout=self._ctx.request_timeout
            )
        items: list[dict[str, Any]] = cast(dict[str, Any], raw).get("items", [])
        return items

    def replace(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT the whole object; ``metadata.resourceVersion`` in ``body`` makes it fail with 409 on a race."""
        name = body["metadata"]["name"]
        with kube_errors(_what(name, namespace), self._ctx):
            raw = self._api().replace_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body, _request_timeout=self._ctx.request_timeout
            )
        return cast(dict[str, Any], raw)

    def merge_patch(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        with kube_errors(_what(name, namespace), self._ctx):
            raw = self._api().patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type=MERGE_PATCH,
                _request_timeout=self._ctx.request_timeout,
            )
        return cast(dict[str, Any], raw)

    def delete(self, namespace: str, name: str) -> None:
        """Delete in the background: the operator's finalizer runs first, then the garbage collector removes
        the children (the credentials Secret) once the Connector is really gone."""
        with kube_errors(_what(name, namespace), self._ctx):
            self._api().delete_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                propagation_policy="Background",
                _request_timeout=self._ctx.request_timeout,
            )
