"""REST API fixtures: the app running against the session's real control plane, with least-privilege credentials.

- ``api_kubeconfig`` (session): the ServiceAccount ``sluice-system/sluice-api`` bound to the ClusterRole of
  ``manifests/rbac/api.yaml`` (so the API's tests also prove its RBAC is sufficient), plus the user roles of
  ``manifests/rbac/user-roles.yaml``.
- ``api_app`` / ``api`` (session): the FastAPI app and a ``TestClient`` on it (auth on, default namespace
  ``default``).
- ``api_user`` (function): ``api_user("editor", "sluice-connector-editor")`` → headers with the bearer token of a
  fresh ServiceAccount in the test's namespace, bound to that ClusterRole there (``None`` = no rights).
- ``api_objects`` (function): what exists in the test's namespace — connector names and Secret names.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sluice.api.app import create_app
from sluice.api.settings import ApiSettings
from sluice.devstack import ControlPlane

REPO_ROOT = Path(__file__).resolve().parents[2]
API_RBAC = REPO_ROOT / "manifests" / "rbac" / "api.yaml"
USER_ROLES = REPO_ROOT / "manifests" / "rbac" / "user-roles.yaml"

Headers = dict[str, str]


@pytest.fixture(scope="session")
def api_kubeconfig(control_plane: ControlPlane, crd_installed: str) -> Path:
    control_plane.kubectl("create", "namespace", "sluice-system", check=False)
    control_plane.kubectl("apply", "-f", str(API_RBAC), "-f", str(USER_ROLES))
    return control_plane.user_kubeconfig(namespace="sluice-system", serviceaccount="sluice-api")


@pytest.fixture(scope="session")
def api_app(api_kubeconfig: Path) -> FastAPI:
    return create_app(ApiSettings(kubeconfig=str(api_kubeconfig), namespace="default"))


@pytest.fixture(scope="session")
def api(api_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(api_app) as client:
        yield client


@pytest.fixture
def api_user(control_plane: ControlPlane, namespace: str) -> Callable[[str, str | None], Headers]:
    def make(name: str, cluster_role: str | None = "sluice-connector-editor") -> Headers:
        token = control_plane.create_user_token(namespace, name)
        if cluster_role is not None:
            control_plane.kubectl(
                "create",
                "rolebinding",
                f"{name}-{cluster_role}",
                f"--clusterrole={cluster_role}",
                f"--serviceaccount={namespace}:{name}",
                "-n",
                namespace,
            )
        return {"Authorization": f"Bearer {token}"}

    return make


def objects_in(control_plane: ControlPlane, namespace: str) -> dict[str, list[str]]:
    out = control_plane.kubectl("get", "connectors,secrets", "-n", namespace, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return {
        "connectors": sorted(i["metadata"]["name"] for i in items if i["kind"] == "Connector"),
        "secrets": sorted(i["metadata"]["name"] for i in items if i["kind"] == "Secret"),
    }


@pytest.fixture
def api_objects(control_plane: ControlPlane, namespace: str) -> Callable[[], dict[str, list[str]]]:
    return lambda: objects_in(control_plane, namespace)


__all__ = ["api", "api_app", "api_kubeconfig", "api_objects", "api_user", "objects_in"]
