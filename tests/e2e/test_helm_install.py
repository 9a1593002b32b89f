"""``helm install`` of charts/sluice on the real control plane: every object is accepted by the apiserver, and the
RBAC it grants lets the operator do its work — including granting a worker's Role (the RBAC escalation check).

Pod replicas are 0: the process node runs container commands, not images, so the operator and API pods of an
image-based install cannot run here; the operator itself is exercised end to end by the other e2e tests.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from tests.support.cluster import get_json
from tests.unit.test_helm import CHART, _helm

pytestmark = pytest.mark.e2e

RELEASE = "helm-e2e"


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_helm_install_grants_what_the_operator_needs(control_plane: ControlPlane, namespace: str) -> None:
    helm = [_helm(), "--kubeconfig", str(control_plane.kubeconfig_path)]
    _run(
        [
            *helm,
            "install",
            RELEASE,
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            "operator.replicas=0",
            "--set",
            "api.replicas=0",
            # The session's fixtures applied the same CRD with kubectl first; server-side apply would otherwise
            # refuse to take over the fields kubectl owns (as on a cluster where the CRD was kubectl-applied).
            "--force-conflicts",
        ]
    )
    try:
        assert get_json(control_plane, "crd", "connectors.sluice.dev")["spec"]["group"] == "sluice.dev"
        deployment = get_json(control_plane, "deployment", "sluice-operator", "-n", namespace)
        assert "--all-namespaces" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        operator_sa = f"system:serviceaccount:{namespace}:sluice-operator"
        api_sa = f"system:serviceaccount:{namespace}:sluice-api"
        for who, verb, resource in [
            (operator_sa, "patch", "connectors.sluice.dev/status"),
            (operator_sa, "create", "statefulsets.apps"),
            (operator_sa, "delete", "pods"),
            (operator_sa, "create", "rolebindings.rbac.authorization.k8s.io"),
            (api_sa, "create", "connectors.sluice.dev"),
            (api_sa, "create", "subjectaccessreviews.authorization.k8s.io"),
        ]:
            out = control_plane.kubectl("auth", "can-i", verb, resource, "--as", who, "-n", "default", check=False)
            assert out.stdout.strip() == "yes", f"{who} may not {verb} {resource}: {out.stdout}{out.stderr}"
        assert control_plane.kubectl("auth", "can-i", "create", "pods", "--as", api_sa, check=False).returncode != 0

        # The operator may grant a worker its Role only if it holds those rights itself (escalation check).
        template: dict[str, Any] = get_json(control_plane, "clusterrole", f"{RELEASE}-sluice-worker-template")
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "probe-worker", "namespace": namespace},
            "rules": template["rules"],
        }
        control_plane.kubectl("create", "--as", operator_sa, "-f", "-", input=json.dumps(role))
    finally:
        _run([*helm, "uninstall", RELEASE, "--namespace", namespace], check=False)
    gone = control_plane.kubectl("get", "clusterrole", f"{RELEASE}-sluice-operator", check=False)
    assert gone.returncode != 0
