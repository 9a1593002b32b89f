"""Kubernetes control-plane fixtures: one real cluster per test session, the Connector CRD, a namespace per test.

Registered in ``tests/conftest.py``; any test may ask for:

- ``control_plane`` (session): a started :class:`sluice.devstack.ControlPlane` (etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler) with two static-token users: ``static-admin`` (``system:masters``)
  and ``static-nobody`` (no rights). Logs are under its ``work_dir/logs``.
- ``kubectl`` (session): ``kubectl(*args, input=None, check=True, kubeconfig=None)`` against that cluster.
- ``crd_installed`` (session): ``crds/connector.yaml`` applied and Established, ``connectors`` served.
- ``namespace`` (function): a fresh namespace whose ``default`` ServiceAccount exists; deleted afterwards.
- :func:`poll`: wait for a condition with a deadline, failing with the last thing seen.

When the binaries of ``hack/build-k8s.sh`` are missing, e2e tests are skipped with the command that builds them —
unless ``CI`` is set, where missing binaries are a broken machine and the tests fail instead.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sluice.devstack import ControlPlane, KubectlError, bin_dir, missing_binaries

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = REPO_ROOT / "crds" / "connector.yaml"
CRD_NAME = "connectors.sluice.dev"

T = TypeVar("T")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_k8s_binaries() -> None:
    """Skip (locally) or fail (under CI) when the control-plane binaries have not been built."""
    missing = missing_binaries()
    if not missing:
        return
    message = f"Kubernetes binaries missing from {bin_dir()} ({', '.join(missing)}); run: bash hack/build-k8s.sh"
    if _in_ci():
        pytest.fail(f"required under CI: {message}", pytrace=False)
    pytest.skip(message)


def poll(
    check: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str = "condition",
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``check`` until it returns something truthy and return that; fail after ``timeout`` seconds.

    ``check`` may raise (e.g. kubectl not finding an object yet): the last exception is part of the failure.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except Exception as err:
            last = err
        if time.monotonic() > deadline:
            extra = f"; {describe()}" if describe else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {message} (last: {last!r}){extra}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The session's control plane; stopped (SIGTERM, then SIGKILL) at the end of the session."""
    require_k8s_binaries()
    plane = ControlPlane(
        tmp_path_factory.mktemp("controlplane"),
        static_users={"static-admin": ["system:masters"], "static-nobody": []},
    )
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


KubectlRunner = Callable[..., Any]


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> KubectlRunner:
    """Run kubectl as the cluster admin: ``kubectl("get", "ns", check=False).stdout``."""
    return control_plane.kubectl


@pytest.fixture(scope="session")
def crd_installed(control_plane: ControlPlane) -> str:
    """Apply the generated Connector CRD, wait until it is Established and served; returns the CRD name."""
    if not CRD_PATH.exists():
        pytest.fail(f"{CRD_PATH.relative_to(REPO_ROOT)} is missing; run: make generate", pytrace=False)
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_PATH))

    def established() -> bool:
        # Not `kubectl wait`: right after creation the CRD has no conditions yet and kubectl wait errors out.
        crd = get_json(control_plane, "crd", CRD_NAME)
        conditions = {c["type"]: c for c in crd.get("status", {}).get("conditions") or []}
        refused = conditions.get("NamesAccepted", {})
        if refused.get("status") == "False":
            pytest.fail(f"CRD names not accepted: {refused.get('message')}", pytrace=False)
        return conditions.get("Established", {}).get("status") == "True"

    poll(established, timeout=60, message=f"CRD {CRD_NAME} to be Established")
    # Established means the apiserver accepted the schema; discovery (what kubectl resolves kinds with) follows
    # a moment later.
    poll(
        lambda: control_plane.kubectl("get", "connectors", "--all-namespaces", check=False).returncode == 0,
        message="the connectors resource to be served",
    )
    return CRD_NAME


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:40].strip("-")


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this test's own, ready for pods (its ``default`` ServiceAccount exists)."""
    yield from own_namespace(control_plane, request, "t")


def own_namespace(control_plane: ControlPlane, request: pytest.FixtureRequest, prefix: str) -> Iterator[str]:
    """Body of a ``namespace`` fixture: ``<prefix>-<test name>-<random>``, deleted in the background afterwards."""
    name = f"{prefix}-{_slug(request.node.name)}-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "namespace", name)
    poll(
        lambda: control_plane.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        message=f"ServiceAccount {name}/default",
    )
    yield name
    # Deletion (finalizers, garbage collection) runs in the background; nothing waits for it.
    control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def get_json(control_plane: ControlPlane, *args: str) -> Any:
    """``kubectl get ... -o json`` parsed."""
    return json.loads(control_plane.kubectl("get", *args, "-o", "json").stdout)


__all__ = [
    "CRD_NAME",
    "CRD_PATH",
    "KubectlError",
    "KubectlRunner",
    "control_plane",
    "crd_installed",
    "get_json",
    "kubectl",
    "namespace",
    "poll",
    "require_k8s_binaries",
]
