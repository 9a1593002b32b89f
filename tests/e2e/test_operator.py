"""The operator end to end: real control plane, process node, real PostgreSQL, ``sluice worker`` in pods.

Each test gets its own namespace and databases. Assertions are on what users see: rows in the sink, the
Connector's status and conditions, pods, Secrets, and the slot/publication on the source.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.support.cluster import poll
from tests.support.operator import OperatorProcess, apply, connector_resource, operator_namespace, secret_resource
from tests.support.pg import PgDatabase, wait_tables_equal

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the test operator watches (``op-*``)."""
    yield from operator_namespace(control_plane, request)


TABLES = {"orders": ["id"]}


def _get(control_plane: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    out = control_plane.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def _status(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    cr = _get(control_plane, namespace, "connector", name) or {}
    status: dict[str, Any] = cr.get("status") or {}
    return status


def _condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), {})


def _seed(source: PgDatabase, rows: int = 100) -> None:
    source.execute("CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL, qty int NOT NULL)")
    source.execute("INSERT INTO orders SELECT g, 'item-' || g, g %% 7 FROM generate_series(1, %s) g", (rows,))


def _describe(
    control_plane: ControlPlane, process_node: ProcessNode, op: OperatorProcess, namespace: str, name: str
) -> str:
    parts = [f"status: {json.dumps(_status(control_plane, namespace, name), indent=1)[:3000]}"]
    pods = control_plane.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    parts.append(f"pods:\n{pods}")
    log = process_node.log_path(namespace, f"{name}-worker-0", "worker")
    if log is not None:
        parts.append("worker log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
    parts.append("operator log:\n" + op.log_tail(40))
    return "\n".join(parts)


def _wait_streaming(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    op: OperatorProcess,
    namespace: str,
    name: str,
    timeout: float = 120,
) -> dict[str, Any]:
    def streaming() -> dict[str, Any] | None:
        status = _status(control_plane, namespace, name)
        ok = (
            _condition(status, "Streaming").get("status") == "True"
            and _condition(status, "Ready").get("status") == "True"
        )
        return status if ok else None

    return poll(
        streaming,
        timeout=timeout,
        message=f"connector {name} Streaming and Ready",
        describe=lambda: _describe(control_plane, process_node, op, namespace, name),
    )


def test_sample_applied_with_kubectl_replicates_and_streams(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    _seed(source_db)
    apply(
        control_plane,
        namespace,
        secret_resource("creds", source_db, sink_db),
        connector_resource("orders", source_db, sink_db, "creds"),
    )
    wait_tables_equal(source_db, sink_db, TABLES, timeout=120)
    status = _wait_streaming(control_plane, process_node, sluice_operator, namespace, "orders")
    source_db.execute("INSERT INTO orders VALUES (1000, 'late', 1)")
    source_db.execute("UPDATE orders SET qty = 99 WHERE id = 5")
    source_db.execute("DELETE FROM orders WHERE id = 6")
    wait_tables_equal(source_db, sink_db, TABLES, timeout=60)
    status = poll(
        lambda: (s := _status(control_plane, namespace, "orders")).get("lag_bytes") is not None and s,
        timeout=30,
        message="lag in status",
    )
    assert status["state"] == "realtime"
    assert status["observedGeneration"] == 1
    assert status["run_id"] and status["created_at"]
    assert status["source_kind"] == "postgres" and status["sink_kind"] == "postgres"
    assert isinstance(status["lag_bytes"], int)
    # kubectl shows it: printer columns come from the status
    table = control_plane.kubectl("get", "connectors", "-n", namespace).stdout
    assert "orders" in table and "realtime" in table
    # the operator's Prometheus endpoint mirrors the status
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{sluice_operator.metrics_port}/metrics", timeout=10) as resp:
        metrics = resp.read().decode()
    assert f'sluice_connector_ready{{connector="orders",namespace="{namespace}"}} 1.0' in metrics
    assert "sluice_operator_reconciles_total" in metrics
    # least privilege: the worker's Role names only its own Connector and its own checkpoint ConfigMap; the one
    # rule without names is `create configmaps` (a create's name is in the body, unknown when it is authorized).
    role = _get(control_plane, namespace, "role", "orders-worker")
    assert role is not None
    unnamed = [r for r in role["rules"] if "resourceNames" not in r]
    assert unnamed == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}], role["rules"]
    for rule in role["rules"]:
        if "resourceNames" in rule:
            expected = ["orders-checkpoint"] if rule["resources"] == ["configmaps"] else ["orders"]
            assert rule["resourceNames"] == expected, rule


def _unique(prefix: str) -> str:
    import secrets

    return f"{prefix}-{secrets.token_hex(3)}"


def _worker_pod(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    return _get(control_plane, namespace, "pod", f"{name}-worker-0")


def _start(
    control_plane: ControlPlane, namespace: str, source: PgDatabase, sink: PgDatabase, name: str, **options: Any
) -> None:
    apply(
        control_plane,
        namespace,
        secret_resource(f"{name}-creds", source, sink),
        connector_resource(name, source, sink, f"{name}-creds", **options),
    )


def test_spec_edit_rolls_the_worker_with_nothing_lost(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = _unique("edit")
    _seed(source_db)
    _start(control_plane, namespace, source_db, sink_db, name)
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    before = _worker_pod(control_plane, namespace, name)
    assert before is not None
    source_db.execute("INSERT INTO orders SELECT g, 'before-edit', 1 FROM generate_series(101, 200) g")
    control_plane.kubectl(
        "patch",
        "connector",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"limits": {"cdc": {"flush_interval_ms": 100}}}}),
    )
    # writes continue while the pod is replaced
    source_db.execute("INSERT INTO orders SELECT g, 'during-edit', 2 FROM generate_series(201, 300) g")

    def rolled() -> dict[str, Any] | None:
        pod = _worker_pod(control_plane, namespace, name)
        if pod is None or pod["metadata"]["uid"] == before["metadata"]["uid"]:
            return None
        return pod if pod["status"].get("phase") == "Running" else None

    after = poll(
        rolled,
        timeout=90,
        message="a new worker pod after the spec edit",
        describe=lambda: _describe(control_plane, process_node, sluice_operator, namespace, name),
    )
    config_hash = "sluice.dev/config-hash"
    assert after["metadata"]["annotations"][config_hash] != before["metadata"]["annotations"][config_hash]
    source_db.execute("INSERT INTO orders SELECT g, 'after-edit', 3 FROM generate_series(301, 400) g")
    wait_tables_equal(source_db, sink_db, TABLES, timeout=90)
    status = _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    assert status["observedGeneration"] == 2
    assert sink_db.scalar("SELECT count(*) FROM orders") == 400


def test_disable_then_enable_loses_nothing(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = _unique("pause")
    _seed(source_db)
    _start(control_plane, namespace, source_db, sink_db, name)
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    control_plane.kubectl(
        "patch", "connector", name, "-n", namespace, "--type=merge", "-p", '{"spec": {"disabled": true}}'
    )
    poll(lambda: _worker_pod(control_plane, namespace, name) is None, timeout=60, message="worker pod gone")
    source_db.execute("INSERT INTO orders SELECT g, 'while-disabled', 1 FROM generate_series(101, 300) g")

    def disabled() -> dict[str, Any] | None:
        status = _status(control_plane, namespace, name)
        wal = _condition(status, "WalRetained")
        ok = status.get("state") == "disabled" and wal.get("status") == "True" and "behind" in wal.get("message", "")
        return status if ok else None

    status = poll(
        disabled,
        timeout=60,
        message="state disabled with WalRetained",
        describe=lambda: _describe(control_plane, process_node, sluice_operator, namespace, name),
    )
    assert _condition(status, "Ready")["status"] == "False"
    assert "slot" in _condition(status, "WalRetained")["message"]
    # the slot is kept on the source
    slot = f"sluice_{name.replace('-', '_')}"
    assert source_db.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == 1
    control_plane.kubectl(
        "patch", "connector", name, "-n", namespace, "--type=merge", "-p", '{"spec": {"disabled": false}}'
    )
    wait_tables_equal(source_db, sink_db, TABLES, timeout=90)
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    assert sink_db.scalar("SELECT count(*) FROM orders") == 300


def test_killed_worker_is_restarted_with_nothing_lost(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    import os
    import signal

    name = _unique("kill")
    _seed(source_db)
    _start(control_plane, namespace, source_db, sink_db, name)
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    pod = _worker_pod(control_plane, namespace, name)
    assert pod is not None
    (cs,) = pod["status"]["containerStatuses"]
    pid = int(cs["containerID"].removeprefix("process://"))
    os.killpg(pid, signal.SIGKILL)
    source_db.execute("INSERT INTO orders SELECT g, 'after-kill', 1 FROM generate_series(101, 250) g")

    def restarted() -> dict[str, Any] | None:
        status = _status(control_plane, namespace, name)
        return status if (status.get("restarts") or 0) >= 1 and status.get("last_restart_time") else None

    poll(
        restarted,
        timeout=60,
        message="restart recorded in status",
        describe=lambda: _describe(control_plane, process_node, sluice_operator, namespace, name),
    )
    wait_tables_equal(source_db, sink_db, TABLES, timeout=90)
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    assert sink_db.scalar("SELECT count(*) FROM orders") == 250
    pod = _worker_pod(control_plane, namespace, name)
    assert pod is not None and pod["status"]["containerStatuses"][0]["restartCount"] >= 1


def test_delete_removes_slot_publication_pods_and_secrets(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = _unique("gone")
    slot = f"sluice_{name.replace('-', '_')}"
    _seed(source_db)
    _start(control_plane, namespace, source_db, sink_db, name)
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    assert source_db.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == 1
    assert source_db.scalar("SELECT count(*) FROM pg_publication WHERE pubname = %s", (slot,)) == 1
    control_plane.kubectl("delete", "connector", name, "-n", namespace, "--timeout=90s")
    assert source_db.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == 0
    assert source_db.scalar("SELECT count(*) FROM pg_publication WHERE pubname = %s", (slot,)) == 0

    def children_gone() -> bool:
        for kind, child in (
            ("pod", f"{name}-worker-0"),
            ("statefulset", f"{name}-worker"),
            ("secret", f"{name}-worker-config"),
            ("role", f"{name}-worker"),
            ("serviceaccount", f"{name}-worker"),
        ):
            if _get(control_plane, namespace, kind, child) is not None:
                return False
        return True

    poll(children_gone, timeout=60, message="children garbage-collected")


def test_user_publication_is_kept_on_delete(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = _unique("mypub")
    _seed(source_db)
    source_db.execute("CREATE PUBLICATION users_pub FOR TABLE orders")
    _start(control_plane, namespace, source_db, sink_db, name, publication_name="users_pub")
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    control_plane.kubectl("delete", "connector", name, "-n", namespace, "--timeout=90s")
    slot = f"sluice_{name.replace('-', '_')}"
    assert source_db.scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)) == 0
    assert source_db.scalar("SELECT count(*) FROM pg_publication WHERE pubname = 'users_pub'") == 1
