"""A kubectl-applied MySQL -> PostgreSQL Connector streams: real control plane, operator, worker pod on the process
node, a real MariaDB (or MySQL 8) source and a real PostgreSQL sink.

What the user sees: the snapshot and then each change in the sink, the status Streaming/Ready with a binlog
position, and deleting the Connector removes its pods (the MySQL source created nothing to drop at the source).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.support.cluster import poll
from tests.support.mysql import MySqlDatabase
from tests.support.operator import OperatorProcess, apply, connector_resource, operator_namespace
from tests.support.pg import PgDatabase

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from operator_namespace(control_plane, request)


def _status(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    out = control_plane.kubectl("get", "connector", name, "-n", namespace, "-o", "json", check=False)
    cr = json.loads(out.stdout) if out.returncode == 0 else {}
    status: dict[str, Any] = cr.get("status") or {}
    return status


def _condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), {})


def _describe(control_plane: ControlPlane, process_node: ProcessNode, op: OperatorProcess, ns: str, name: str) -> str:
    parts = [f"status: {json.dumps(_status(control_plane, ns, name), indent=1)[:3000]}"]
    log = process_node.log_path(ns, f"{name}-worker-0", "worker")
    if log is not None:
        parts.append("worker log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
    parts.append("operator log:\n" + op.log_tail(40))
    return "\n".join(parts)


@pytest.mark.parametrize("mysql_server", ["mariadb"], indirect=True)
def test_kubectl_applied_mysql_connector_streams_into_postgres(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    mysql_db: MySqlDatabase,
    sink_db: PgDatabase,
) -> None:
    name = "from-mysql"
    mysql_db.execute("CREATE TABLE orders (id bigint unsigned PRIMARY KEY, item varchar(40) NOT NULL, paid tinyint(1))")
    mysql_db.executemany("INSERT INTO orders VALUES (%s, %s, %s)", [(i, f"item-{i}", i % 2) for i in range(1, 201)])
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-creds", "labels": {"sluice.dev/usable-by-connectors": "true"}},
        "stringData": {"source": mysql_db.server.admin_password, "sink": sink_db.instance.superuser.password},
    }
    connector = connector_resource(name, sink_db, sink_db, f"{name}-creds", target_schema="shop")
    source = mysql_db.source_spec()
    source["mysql"]["connection"].pop("password")
    source["mysql"]["connection"]["password_secret_ref"] = {"name": f"{name}-creds", "key": "source"}
    connector["spec"]["source"] = source
    apply(control_plane, namespace, secret, connector)

    def sink_rows() -> list[tuple[Any, ...]]:
        try:
            return [tuple(r) for r in sink_db.execute("SELECT id, item, paid FROM shop.orders ORDER BY id")]
        except Exception:
            return []

    def source_rows() -> list[tuple[Any, ...]]:
        return [
            (int(i), s, None if p is None else bool(p))
            for i, s, p in mysql_db.execute("SELECT * FROM orders ORDER BY id")
        ]

    describe = lambda: _describe(control_plane, process_node, sluice_operator, namespace, name)  # noqa: E731
    poll(lambda: sink_rows() == source_rows(), timeout=120, message="snapshot in the sink", describe=describe)

    def streaming() -> dict[str, Any] | None:
        status = _status(control_plane, namespace, name)
        ok = (
            _condition(status, "Streaming").get("status") == "True"
            and _condition(status, "Ready").get("status") == "True"
        )
        return status if ok else None

    status = poll(streaming, timeout=120, message="Streaming and Ready", describe=describe)
    assert status["source_kind"] == "mysql" and status["sink_kind"] == "postgres"
    mysql_db.execute("INSERT INTO orders VALUES (18446744073709551615, 'max', 1)")
    mysql_db.execute("UPDATE orders SET item = 'changed' WHERE id = 5")
    mysql_db.execute("DELETE FROM orders WHERE id = 6")
    poll(lambda: sink_rows() == source_rows(), timeout=60, message="changes in the sink", describe=describe)
    status = poll(
        lambda: (s := _status(control_plane, namespace, name)).get("position") and "binlog" in s["position"] and s,
        timeout=60,
        message="binlog position in the status",
        describe=describe,
    )
    control_plane.kubectl("delete", "connector", name, "-n", namespace, "--timeout=90s")
    poll(
        lambda: (
            "No resources" in control_plane.kubectl("get", "pods", "-n", namespace, check=False).stderr
            or not control_plane.kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).stdout.strip()
        ),
        timeout=90,
        message="worker pods gone",
    )
