"""A small dict-in, dict-out Kubernetes client for the process node, the operator's child objects and tests.

Why not the generated ``kubernetes.client`` API classes: they convert every object into typed models and pick a
patch content type by themselves (JSON Patch first), which makes "merge this status fragment" awkward and slow
for a loop that reconciles dozens of pods a second. This module reuses the official package only for what it
does well — reading a kubeconfig (client certificates, tokens, CA data) and building the TLS connection pool —
and speaks plain JSON over it.

Every failure becomes :class:`KubeError` with the HTTP status, so callers branch on ``.status`` (404, 409, 422)
instead of parsing messages. Connection failures become :class:`sluice.errors.KubernetesUnavailableError`.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import urllib3

from sluice.errors import KubernetesUnavailableError, SluiceError

__all__ = ["JsonClient", "KubeError", "api_path"]

log = logging.getLogger(__name__)

JsonObj = dict[str, Any]

# Plural resource names for the kinds this project touches; anything else passes its path explicitly.
_CORE = {
    "pods": "/api/v1",
    "secrets": "/api/v1",
    "configmaps": "/api/v1",
    "nodes": "/api/v1",
    "events": "/api/v1",
    "serviceaccounts": "/api/v1",
    "namespaces": "/api/v1",
    "services": "/api/v1",
    "statefulsets": "/apis/apps/v1",
    "roles": "/apis/rbac.authorization.k8s.io/v1",
    "rolebindings": "/apis/rbac.authorization.k8s.io/v1",
    "leases": "/apis/coordination.k8s.io/v1",
    "connectors": "/apis/sluice.dev/v1alpha1",
}
_CLUSTER_SCOPED = {"nodes", "namespaces"}


class KubeError(SluiceError):
    """The API server answered with an error status; ``status`` is the HTTP code, ``reason`` the Status reason."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"Kubernetes API {status} {reason}: {message}".strip())
        self.status = status
        self.kube_reason = reason

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """Conflicts, throttling and server-side failures clear up on a retry; 4xx about the request do not."""
        return self.status in (409, 429) or self.status >= 500


def api_path(plural: str, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
    """The URL path of a collection, an object, or an object's subresource (``status``)."""
    base = _CORE[plural]
    path = base
    if namespace is not None and plural not in _CLUSTER_SCOPED:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name is not None:
        path += f"/{name}"
    if sub is not None:
        path += f"/{sub}"
    return path


class JsonClient:
    """Thread-safe (urllib3 pools are) JSON client bound to one kubeconfig."""

    def __init__(self, kubeconfig: str | Path | None = None, *, timeout: float = 30.0) -> None:
        from kubernetes import client as kclient
        from kubernetes import config as kconfig

        cfg = kclient.Configuration()
        if kubeconfig is None:
            try:
                kconfig.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            except kconfig.ConfigException:
                kconfig.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            kconfig.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig), client_configuration=cfg
            )
        self._cfg = cfg
        self.host = cfg.host.rstrip("/")
        self._timeout = timeout
        cfg.connection_pool_maxsize = 16
        self._pool: urllib3.PoolManager = kclient.rest.RESTClientObject(cfg).pool_manager

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        # In-cluster tokens rotate; the Configuration's refresh hook re-reads the file when needed.
        if self._cfg.refresh_api_key_hook is not None:
            self._cfg.refresh_api_key_hook(self._cfg)
        auth_settings: dict[str, Any] = dict(self._cfg.auth_settings())
        for auth in auth_settings.values():
            if auth.get("in") == "header" and auth.get("value"):
                headers[str(auth["key"])] = str(auth["value"])
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> JsonObj:
        url = self.host + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        try:
            resp = self._pool.request(
                method,
                url,
                body=data,
                headers=self._headers(content_type if data is not None else None),
                timeout=urllib3.Timeout(total=timeout or self._timeout),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise KubernetesUnavailableError(f"cannot reach the Kubernetes API at {self.host}: {exc}") from exc
        text = resp.data.decode() if resp.data else ""
        if resp.status >= 400:
            reason, message = "", text
            try:
                status_obj = json.loads(text)
                reason, message = status_obj.get("reason", ""), status_obj.get("message", text)
            except ValueError:
                pass
            raise KubeError(resp.status, message, reason)
        return json.loads(text) if text else {}

    # -- verbs -------------------------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> JsonObj:
        return self.request("GET", path, params=params)

    def get_or_none(self, path: str) -> JsonObj | None:
        try:
            return self.get(path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, path: str, **params: Any) -> list[JsonObj]:
        items: list[JsonObj] = self.get(path, **params).get("items", [])
        return items

    def create(self, path: str, body: JsonObj) -> JsonObj:
        return self.request("POST", path, body=body)

    def replace(self, path: str, body: JsonObj) -> JsonObj:
        return self.request("PUT", path, body=body)

    def merge_patch(self, path: str, body: JsonObj) -> JsonObj:
        """RFC 7396 merge patch: maps merge, lists are replaced whole, ``None`` deletes a key."""
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    def delete(self, path: str, *, grace_period_seconds: int | None = None, uid: str | None = None) -> JsonObj | None:
        """Delete; a missing object is not an error (returns None). ``uid`` guards against deleting a successor."""
        body: JsonObj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        try:
            return self.request("DELETE", path, body=body)
        except KubeError as exc:
            if exc.status in (404, 409) and (exc.status == 404 or uid is not None):
                return None
            raise

    def watch(self, path: str, *, timeout_seconds: int = 30, **params: Any) -> Iterator[JsonObj]:
        """Yield watch events (``{"type", "object"}``) until the server closes the stream."""
        query = {"watch": "1", "timeoutSeconds": timeout_seconds, **params}
        url = self.host + path + "?" + urllib.parse.urlencode(query)
        try:
            resp = self._pool.request(
                "GET",
                url,
                headers=self._headers(),
                preload_content=False,
                timeout=urllib3.Timeout(connect=10, read=timeout_seconds + 10),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise KubernetesUnavailableError(f"cannot reach the Kubernetes API at {self.host}: {exc}") from exc
        try:
            if resp.status >= 400:
                raise KubeError(resp.status, resp.read().decode())
            buf = b""
            for chunk in resp.stream(4096):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        except urllib3.exceptions.HTTPError as exc:
            log.debug("watch on %s ended: %s", path, exc)
        finally:
            resp.release_conn()
