"""charts/sluice: ``helm lint`` and ``helm template`` with a real helm binary (hack/build-helm.sh), and the chart's
copies of the CRD, the RBAC rules and the monitoring files checked against their sources (CI fails on drift).

Without helm the helm tests skip locally and fail under CI (``CI=true``), like the control-plane tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sluice"
HELM_VERSION = "v4.3.2"


def _helm() -> str:
    cache = Path(os.environ.get("SLUICE_CACHE", Path.home() / ".cache" / "sluice"))
    built = cache / "helm" / HELM_VERSION / "bin" / "helm"
    found = str(built) if built.exists() else shutil.which("helm")
    if found:
        return found
    message = f"helm not found ({built} or PATH); run: bash hack/build-helm.sh"
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"required under CI: {message}", pytrace=False)
    pytest.skip(message)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_helm(), *args], capture_output=True, text=True, timeout=120, check=False)


def render(*sets: str, namespace: str = "sluice-system") -> list[dict[str, Any]]:
    argv = ["template", "sluice", str(CHART), "--namespace", namespace, "--include-crds"]
    for s in sets:
        argv += ["--set", s]
    out = helm(*argv)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def _container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    container: dict[str, Any] = find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
    return container


# -- copies that must not drift --------------------------------------------------------------------------------


def test_chart_crd_and_monitoring_files_are_the_generated_ones() -> None:
    assert (CHART / "crds" / "connector.yaml").read_bytes() == (ROOT / "crds" / "connector.yaml").read_bytes(), (
        "charts/sluice/crds/connector.yaml drifted; fix: cp crds/connector.yaml charts/sluice/crds/"
    )
    for name in ("prometheus-rules.yaml", "sluice-dashboard.json"):
        assert (CHART / "files" / name).read_bytes() == (ROOT / "deploy" / "monitoring" / name).read_bytes(), (
            f"charts/sluice/files/{name} drifted; fix: cp deploy/monitoring/{name} charts/sluice/files/"
        )


def _manifest_rules() -> dict[tuple[str, str], Any]:
    out = {}
    for path in (ROOT / "manifests" / "rbac").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in ("ClusterRole", "Role"):
                out[(doc["kind"], doc["metadata"]["name"])] = doc["rules"]
    return out


def test_chart_rbac_rules_equal_the_manifests() -> None:
    docs = render()
    expected = _manifest_rules()
    assert expected
    for (kind, name), rules in expected.items():
        assert find(docs, kind, name)["rules"] == rules, f"{kind} {name} differs from manifests/rbac"


# -- lint and template ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sets",
    [
        [],
        [
            "metrics.podMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
            "metrics.dashboard.enabled=true",
            "operator.watchNamespaces={a,b}",
            "api.auth.enabled=false",
        ],
    ],
    ids=["defaults", "everything-on"],
)
def test_helm_lint_is_clean(sets: list[str]) -> None:
    argv = ["lint", "--strict", str(CHART)]
    for s in sets:
        argv += ["--set", s]
    out = helm(*argv)
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_render_is_the_kustomize_install() -> None:
    docs = render()
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    assert find(docs, "CustomResourceDefinition", "connectors.sluice.dev")["spec"]["group"] == "sluice.dev"
    operator = _container(docs, "sluice-operator")
    assert operator["image"] == "ghcr.io/sluice-dev/sluice:0.1.0"
    assert (
        "--all-namespaces" in operator["args"] and "--worker-image=ghcr.io/sluice-dev/sluice:0.1.0" in operator["args"]
    )
    assert "--lag-threshold-bytes=1073741824" in operator["args"]
    api = _container(docs, "sluice-api")
    assert "--no-auth" not in api["args"]
    assert all(d["metadata"].get("namespace") in (None, "sluice-system") for d in docs)
    binding = find(docs, "ClusterRoleBinding", "sluice-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sluice-operator", "namespace": "sluice-system"}]


def test_values_turn_on_namespaces_no_auth_and_monitoring() -> None:
    docs = render(
        "image.tag=9.9.9",
        "operator.watchNamespaces={a,b}",
        "api.auth.enabled=false",
        "metrics.podMonitor.enabled=true",
        "metrics.prometheusRule.enabled=true",
        "metrics.dashboard.enabled=true",
        "metrics.dashboard.namespace=grafana",
        namespace="cdc",
    )
    operator = _container(docs, "sluice-operator")
    assert "--namespace=a" in operator["args"] and "--namespace=b" in operator["args"]
    assert (
        "--all-namespaces" not in operator["args"]
        and "--worker-image=ghcr.io/sluice-dev/sluice:9.9.9" in operator["args"]
    )
    assert "--no-auth" in _container(docs, "sluice-api")["args"]

    monitor = find(docs, "PodMonitor", "sluice")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["cdc", "a", "b"]}
    rules = find(docs, "PrometheusRule", "sluice")
    source = yaml.safe_load((ROOT / "deploy" / "monitoring" / "prometheus-rules.yaml").read_text())
    assert rules["spec"] == source["spec"]  # alert templates such as {{ $labels.connector }} are left to Prometheus
    dashboard = find(docs, "ConfigMap", "sluice-dashboard")
    assert (
        dashboard["metadata"]["namespace"] == "grafana" and dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    )
    assert json.loads(dashboard["data"]["sluice-dashboard.json"]) == json.loads(
        (ROOT / "deploy" / "monitoring" / "sluice-dashboard.json").read_text()
    )


def test_a_second_release_gets_its_own_cluster_scoped_names() -> None:
    out = helm("template", "other", str(CHART), "--namespace", "x")
    assert out.returncode == 0, out.stderr
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(out.stdout) if d and d["kind"].startswith("Cluster")}
    assert names and all(n.startswith("other-") for n in names)
