"""``helm install`` of charts/sluice on the real control plane.

- Every object is accepted by the apiserver, and the RBAC it grants lets the operator do its work — including
  granting a worker's Role (the RBAC escalation check); pod replicas 0.
- The chart's own operator and API pods, run by the process node under the chart's ServiceAccounts and RBAC, take
  a PostgreSQL → PostgreSQL Connector to Streaming with the source's rows, and later changes, in the sink: the same
  result as the operator e2e (tests/e2e/test_operator.py), which runs the operator as a local process instead.
  This works because the chart states the container ``command`` (the process node ignores images and their
  ENTRYPOINT). The operator watches only the test's namespace (a session operator may watch others); the chart's
  ports stay as they are, the process node maps each pod's declared ports to host ports of its own.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.support.cluster import get_json, poll
from tests.support.operator import apply, connector_resource, secret_resource
from tests.support.pg import PgDatabase, wait_tables_equal
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


# -- the chart's operator, running -------------------------------------------------------------------------------

OPERATOR_RELEASE = "helm-op"
TABLES = {"orders": ["id"]}


def _log(process_node: ProcessNode, namespace: str, pod: str, container: str, lines: int = 40) -> str:
    path = process_node.log_path(namespace, pod, container)
    text = path.read_text(errors="replace") if path is not None else "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _http_get(url: str, token: str | None = None) -> tuple[int, Any]:
    resp = httpx.get(url, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=10)
    return resp.status_code, resp.json() if resp.content else None


def _pod(control_plane: ControlPlane, namespace: str, app: str) -> dict[str, Any] | None:
    """The app's Ready pod (the process node runs the chart's readiness probes), if any."""
    pods = get_json(control_plane, "pods", "-n", namespace, "-l", f"app.kubernetes.io/name={app}")["items"]
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions") or []}
        if conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
            return pod  # type: ignore[no-any-return]
    return None


def _wait_equal(source: PgDatabase, sink: PgDatabase, timeout: float, describe: Callable[[], str]) -> None:
    try:
        wait_tables_equal(source, sink, TABLES, timeout=timeout)
    except AssertionError as err:
        pytest.fail(f"{err}\n{describe()}")


def _connector_status(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    out = control_plane.kubectl("get", "connector", name, "-n", namespace, "-o", "json", check=False)
    if out.returncode != 0:
        return {}
    status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
    return status


def _conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c.get("type", ""): c.get("status", "") for c in status.get("conditions") or []}


def test_chart_operator_and_api_take_a_connector_to_streaming(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    crd_installed: str,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    helm = [_helm(), "--kubeconfig", str(control_plane.kubeconfig_path)]
    # Ports stay the chart's: the process node gives each pod's declared ports host ports of their own.
    values = {
        "operator.replicas": "1",
        "operator.watchNamespaces": f"{{{namespace}}}",
        "operator.refreshSeconds": "2",
        "operator.workerSpillSize": "3Gi",
        "api.replicas": "1",
    }
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    # Replication slots are named per PostgreSQL server: a name of its own, whatever else the session runs.
    name = f"helm-{secrets.token_hex(3)}"
    slot = f"sluice_{name.replace('-', '_')}"
    operator_pod = api_pod = ""

    def describe() -> str:
        status = json.dumps(_connector_status(control_plane, namespace, name), indent=1)[:3000]
        pods = control_plane.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        return (
            f"status: {status}\npods:\n{pods}\noperator log:\n{_log(process_node, namespace, operator_pod, 'operator')}"
            f"\nworker log:\n{_log(process_node, namespace, f'{name}-worker-0', 'worker')}"
            f"\napi log:\n{_log(process_node, namespace, api_pod, 'api')}"
        )

    try:
        _run([*helm, "install", OPERATOR_RELEASE, str(CHART), "--namespace", namespace, *sets, "--force-conflicts"])
        for app in ("sluice-operator", "sluice-api"):
            pod = poll(
                lambda app=app: _pod(control_plane, namespace, app),  # type: ignore[misc]
                timeout=60,
                message=f"the chart's {app} pod Ready on the process node",
                describe=describe,
            )
            assert pod["spec"]["nodeName"] == process_node.name and pod["spec"]["serviceAccountName"] == app
            if app == "sluice-operator":
                operator_pod = pod["metadata"]["name"]
            else:
                api_pod = pod["metadata"]["name"]
        poll(
            lambda: "operator started" in _log(process_node, namespace, operator_pod, "operator", lines=400),
            timeout=60,
            message="the chart's operator to lead and start",
            describe=describe,
        )

        source_db.execute("CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL, qty int NOT NULL)")
        source_db.execute("INSERT INTO orders SELECT g, 'item-' || g, g %% 7 FROM generate_series(1, %s) g", (100,))
        apply(
            control_plane,
            namespace,
            secret_resource("creds", source_db, sink_db),
            connector_resource(name, source_db, sink_db, "creds"),
        )
        _wait_equal(source_db, sink_db, 120, describe)
        poll(
            lambda: (
                {"Streaming", "Ready"}
                <= {t for t, v in _conditions(_connector_status(control_plane, namespace, name)).items() if v == "True"}
            ),
            timeout=120,
            message=f"connector {name} Streaming and Ready",
            describe=describe,
        )
        source_db.execute("INSERT INTO orders VALUES (1000, 'late', 1)")
        source_db.execute("UPDATE orders SET qty = 99 WHERE id = 5")
        source_db.execute("DELETE FROM orders WHERE id = 6")
        _wait_equal(source_db, sink_db, 60, describe)
        assert _connector_status(control_plane, namespace, name)["state"] == "realtime"

        # The values reached the operator: its worker's spill volume is sized by operator.workerSpillSize ...
        sts = get_json(control_plane, "statefulset", f"{name}-worker", "-n", namespace)
        volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
        assert volumes["spill"]["emptyDir"]["sizeLimit"] == "3Gi"
        # ... and it is the chart's operator that reports the connector, on operator.metricsPort.
        metrics_port = process_node.host_port(namespace, operator_pod, 9090)
        assert metrics_port is not None
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert f'sluice_connector_ready{{connector="{name}",namespace="{namespace}"}} 1.0' in metrics

        # The chart's API pod, under its ServiceAccount, answers for the connector: the caller's token checked with a
        # TokenReview and the read with a SubjectAccessReview against the chart's user roles.
        api = f"http://127.0.0.1:{process_node.host_port(namespace, api_pod, 8000)}"
        assert _http_get(f"{api}/readyz")[0] == 200
        viewer = control_plane.create_user_token(namespace, "viewer")
        control_plane.kubectl(
            "create", "rolebinding", "viewer", f"--clusterrole={OPERATOR_RELEASE}-sluice-connector-viewer",
            f"--serviceaccount={namespace}:viewer", "-n", namespace,
        )  # fmt: skip
        url = f"{api}/api/v1/connectors/{name}?namespace={namespace}"

        def authorized() -> tuple[int, Any] | None:
            answer = _http_get(url, viewer)
            return answer if answer[0] != 403 else None  # RBAC caches take a moment to see the new binding

        code, body = poll(authorized, timeout=30, message="the viewer's binding to apply")
        assert code == 200, body
        assert body["connector"]["id"] == name and body["status"]["state"] == "realtime", body
        nobody = control_plane.create_user_token(namespace, "nobody")
        assert _http_get(url, nobody)[0] == 403
        # Their liveness probes (operator /healthz on its health port, API /healthz) held all along.
        for app in ("sluice-operator", "sluice-api"):
            live = _pod(control_plane, namespace, app)
            assert live is not None and live["status"]["containerStatuses"][0]["restartCount"] == 0, app

        # Deleting the Connector goes through the chart operator's finalizer: the slot is dropped.
        assert source_db.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == 1
        control_plane.kubectl("delete", "connector", name, "-n", namespace, "--timeout=90s")
        assert source_db.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == 0
    finally:
        # A Connector left behind keeps the operator's finalizer: remove it while the operator still runs.
        control_plane.kubectl(
            "delete", "connector", "--all", "-n", namespace, "--timeout=60s", "--ignore-not-found", check=False
        )
        _run([*helm, "uninstall", OPERATOR_RELEASE, "--namespace", namespace], check=False)
