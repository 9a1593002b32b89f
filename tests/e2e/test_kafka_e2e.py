"""A Connector with a Kafka sink, applied with kubectl: it reaches Streaming and its change events arrive.

Real control plane, operator and process node (the worker runs in a pod), real PostgreSQL and the session's Kafka
broker; the SASL password comes from a Secret through ``password_secret_ref``, as a user would give it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.kafka import KafkaInstance
from sluice.devstack.processnode import ProcessNode
from tests.support.cluster import poll
from tests.support.kafka import consume_all
from tests.support.operator import OperatorProcess, apply, connector_resource, operator_namespace, secret_resource
from tests.support.pg import PgDatabase

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from operator_namespace(control_plane, request)


def _status(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    out = control_plane.kubectl("get", "connector", name, "-n", namespace, "-o", "json", check=False)
    if out.returncode != 0:
        return {}
    status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
    return status


def _condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), {})


def test_kafka_connector_applied_with_kubectl_streams_events(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    kafka: KafkaInstance,
) -> None:
    name = "orders-kafka"
    source_db.execute("CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL)")
    source_db.execute("INSERT INTO orders SELECT g, 'item-' || g FROM generate_series(1, 50) g")
    secret = secret_resource("kcreds", source_db, source_db)
    secret["stringData"]["kafka"] = kafka.password
    cr = connector_resource(name, source_db, source_db, "kcreds")
    cr["spec"]["sink"] = {
        "kafka": {
            "connection": {
                "brokers": [kafka.sasl_bootstrap],
                "auth": {
                    "protocol": "SaslPlaintext",
                    "mechanism": "ScramSha512",
                    "username": kafka.user,
                    "password_secret_ref": {"name": "kcreds", "key": "kafka"},
                },
                "config": {"transactions": {"enabled": True, "transactional_id": f"{namespace}-{name}"}},
            },
            "format": {"debezium": {}},
            "topic_name_template": f"{namespace}.{{table}}",
        }
    }
    apply(control_plane, namespace, secret, cr)

    def streaming() -> dict[str, Any] | None:
        status = _status(control_plane, namespace, name)
        ok = (
            _condition(status, "Streaming").get("status") == "True"
            and _condition(status, "Ready").get("status") == "True"
        )
        return status if ok else None

    def describe() -> str:
        log = process_node.log_path(namespace, f"{name}-worker-0", "worker")
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log is not None else "(no log)"
        return f"status: {json.dumps(_status(control_plane, namespace, name))[:3000]}\nworker log:\n{tail}"

    status = poll(streaming, timeout=180, message=f"{name} Streaming and Ready", describe=describe)
    assert status["sink_kind"] == "kafka"
    assert status.get("delivery") == "exactly-once"
    source_db.execute("INSERT INTO orders VALUES (1000, 'late')")
    topic = f"{namespace}.orders"

    def arrived() -> list[Any] | None:
        records = consume_all(kafka.bootstrap, [topic], timeout=10)
        events = [json.loads(r.value)["payload"] for r in records if r.value is not None]
        return events if len(events) >= 51 else None

    events = poll(arrived, timeout=90, message="51 events on the topic", describe=describe)
    assert sorted(e["after"]["id"] for e in events if e["op"] == "r") == list(range(1, 51))
    assert [e["after"] for e in events if e["op"] == "c"] == [{"id": 1000, "item": "late"}]
