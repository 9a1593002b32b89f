"""The operator end to end: real control plane, process node, real PostgreSQL, ``sluice worker`` in pods.

Each test gets its own namespace and databases. Assertions are on what users see: rows in the sink, the
Connector's status and conditions, pods, Secrets, and the slot/publication on the source.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.support.cluster import poll
from tests.support.operator import OperatorProcess, apply, connector_resource, secret_resource
from tests.support.pg import PgDatabase, wait_tables_equal

pytestmark = pytest.mark.e2e

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
    # least privilege: the worker's Role names only its own Connector
    role = _get(control_plane, namespace, "role", "orders-worker")
    assert role is not None and all(r["resourceNames"] == ["orders"] for r in role["rules"])
