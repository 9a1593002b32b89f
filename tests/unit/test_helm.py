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
            "metrics.serviceMonitor.enabled=true",
            "operator.watchNamespaces={a,b}",
            "operator.workerSpillSize=500Mi",
            "api.auth.enabled=false",
            "api.port=9000",
        ],
        ["operator.metricsPort=0", "operator.healthPort=0", "metrics.serviceMonitor.enabled=true"],
    ],
    ids=["defaults", "everything-on", "ports-off"],
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
    assert "--worker-spill-size=10Gi" in operator["args"]
    assert [p["containerPort"] for p in operator["ports"]] == [9090, 8080]
    assert operator["livenessProbe"]["httpGet"]["port"] == "health"
    api = _container(docs, "sluice-api")
    assert "--no-auth" not in api["args"]
    assert "--port=8000" in api["args"] and api["ports"] == [{"name": "http", "containerPort": 8000}]
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
    assert all(e["honorLabels"] is True for e in monitor["spec"]["podMetricsEndpoints"])
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


# -- commands, ports and worker defaults ------------------------------------------------------------------------


def _entrypoint() -> list[str]:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT "):
            entrypoint: list[str] = json.loads(line.removeprefix("ENTRYPOINT "))
            return entrypoint
    raise AssertionError("Dockerfile has no ENTRYPOINT")


def _manifest_container(path: str) -> dict[str, Any]:
    deployment = yaml.safe_load((ROOT / "manifests" / path).read_text())
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_pods_state_the_image_entrypoint_as_their_command() -> None:
    # The process node runs `command` + `args` and ignores images: a pod relying on the ENTRYPOINT cannot run there.
    docs = render()
    entrypoint = _entrypoint()
    assert entrypoint == ["sluice"]
    for deployment, manifest, role in (
        ("sluice-operator", "operator/deployment.yaml", "operator"),
        ("sluice-api", "api/deployment.yaml", "api"),
    ):
        chart = _container(docs, deployment)
        kustomize = _manifest_container(manifest)
        assert chart["command"] == kustomize["command"] == entrypoint, deployment
        assert chart["args"][0] == kustomize["args"][0] == role, deployment


def test_ports_set_to_zero_are_off() -> None:
    docs = render(
        "operator.metricsPort=0", "operator.healthPort=0", "metrics.serviceMonitor.enabled=true", "api.port=9000"
    )
    operator = _container(docs, "sluice-operator")
    assert "--metrics-port=0" in operator["args"] and "--health-port=0" in operator["args"]
    assert "ports" not in operator and "livenessProbe" not in operator
    template = find(docs, "Deployment", "sluice-operator")["spec"]["template"]
    assert "annotations" not in template["metadata"]
    # no metrics endpoint, nothing to monitor
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert not [d for d in docs if d["metadata"]["name"] == "sluice-operator-metrics"]
    api = _container(docs, "sluice-api")
    assert "--port=9000" in api["args"] and api["ports"] == [{"name": "http", "containerPort": 9000}]
    service = find(docs, "Service", "sluice-api")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


def test_one_port_off_keeps_the_other() -> None:
    operator = _container(render("operator.metricsPort=0"), "sluice-operator")
    assert operator["ports"] == [{"name": "health", "containerPort": 8080}] and "livenessProbe" in operator
    operator = _container(render("operator.healthPort=0"), "sluice-operator")
    assert operator["ports"] == [{"name": "metrics", "containerPort": 9090}] and "livenessProbe" not in operator


def test_worker_spill_size_reaches_the_operator() -> None:
    operator = _container(render("operator.workerSpillSize=2Gi"), "sluice-operator")
    assert "--worker-spill-size=2Gi" in operator["args"] and "--worker-spill-size=10Gi" not in operator["args"]


def test_service_monitor_selects_the_operator_metrics_service() -> None:
    docs = render(
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prometheus",
        "metrics.serviceMonitor.interval=15s",
        "operator.metricsPort=9191",
        namespace="cdc",
    )
    assert not [d for d in docs if d["kind"] == "PodMonitor"]  # each monitor has its own switch
    monitor = find(docs, "ServiceMonitor", "sluice-operator")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["cdc"]}
    # honorLabels: the series' namespace label is the connector's, not the operator's
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "interval": "15s", "honorLabels": True}]
    service = find(docs, "Service", "sluice-operator-metrics")
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    # the API's Service is not selected: the API serves no Prometheus metrics
    api_labels = find(docs, "Service", "sluice-api")["metadata"]["labels"]
    assert not all(api_labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9191, "targetPort": "metrics"}]
    pod_labels = find(docs, "Deployment", "sluice-operator")["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    port_names = [p["name"] for p in _container(docs, "sluice-operator")["ports"]]
    assert "metrics" in port_names
