"""A kubectl-applied Connector with a webhook sink streams into a receiver: real control plane, operator, worker pod
on the process node, real PostgreSQL, and a real HTTPS receiver in the test process, whose certificate a CA of its
own signed.

What the user sees: the snapshot and then each change arrive at the receiver over TLS verified with the CA given in
the spec (``ssl_root_cert``: the CRD keeps it and the worker pod trusts it) and with the bearer token read from a
Secret, the status says Streaming/Ready with the at-least-once (idempotency keys) guarantee, the checkpoint lives in
the ``<name>-checkpoint`` ConfigMap, and a deleted worker pod comes back without losing a change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.support.cluster import poll
from tests.support.operator import OperatorProcess, apply, connector_resource, operator_namespace, secret_resource
from tests.support.pg import PgDatabase
from tests.support.webhook import Receiver, TlsMaterial, make_tls

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from operator_namespace(control_plane, request)


@pytest.fixture
def tls(tmp_path: Path) -> TlsMaterial:
    return make_tls(tmp_path / "pki")


@pytest.fixture
def hook(tls: TlsMaterial) -> Iterator[Receiver]:
    r = Receiver(tls)
    yield r
    r.close()


def _get(control_plane: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    out = control_plane.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def _status(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (_get(control_plane, namespace, "connector", name) or {}).get("status") or {}
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


def test_kubectl_applied_webhook_connector_streams_into_a_receiver(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    hook: Receiver,
    tls: TlsMaterial,
) -> None:
    name = "hooked"
    assert hook.url.startswith("https://")
    source_db.execute("CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL)")
    source_db.execute("INSERT INTO orders SELECT g, 'item-' || g FROM generate_series(1, 50) g")
    secret = secret_resource(f"{name}-creds", source_db, source_db)
    token = secret["stringData"]["sink"]
    hook.require_auth("authorization", f"Bearer {token}")
    connector = connector_resource(name, source_db, source_db, f"{name}-creds")
    connector["spec"]["sink"] = {
        "webhook": {
            "url": hook.url,
            "path_template": "/cdc/{schema}/{table}",
            "auth": {"bearer": {"token_secret_ref": {"name": f"{name}-creds", "key": "sink"}}},
            "batch": {"max_batch_size": 20},
            "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 1000},
            "ssl_root_cert": tls.ca.cert_pem.decode(),
        }
    }
    connector["spec"].setdefault("limits", {})["cdc"] = {"flush_interval_ms": 100}
    apply(control_plane, namespace, secret, connector)

    def describe() -> str:
        return _describe(control_plane, process_node, sluice_operator, namespace, name)

    poll(
        lambda: len(hook.delivered()) >= 50, timeout=180, message="50 snapshot rows at the receiver", describe=describe
    )
    assert sorted(e["row"]["id"] for e in hook.delivered()) == list(range(1, 51))
    assert all(r.status == 200 for r in hook.requests), "every request carried the Secret's token"
    assert {r.path for r in hook.processed()} == {"/cdc/public/orders"}

    status = poll(
        lambda: (
            s
            if _condition(s := _status(control_plane, namespace, name), "Streaming").get("status") == "True"
            and _condition(s, "Ready").get("status") == "True"
            else None
        ),
        timeout=120,
        message="Streaming and Ready",
        describe=describe,
    )
    assert status["sink_kind"] == "webhook"
    assert "idempotency keys" in json.dumps(status)

    source_db.execute("INSERT INTO orders VALUES (100, 'late')")
    source_db.execute("UPDATE orders SET item = 'changed' WHERE id = 7")
    source_db.execute("DELETE FROM orders WHERE id = 8")
    poll(lambda: len(hook.delivered()) >= 53, timeout=60, message="3 changes", describe=describe)
    changes = hook.delivered()[50:]
    assert [(e["op"], e["key"]["id"]) for e in changes] == [("c", 100), ("u", 7), ("d", 8)]

    # the checkpoint lives in the connector's ConfigMap, after the receiver acknowledged
    def checkpoint() -> dict[str, Any] | None:
        cm = _get(control_plane, namespace, "configmap", f"{name}-checkpoint")
        text = ((cm or {}).get("data") or {}).get("checkpoint.json")
        data: dict[str, Any] | None = json.loads(text) if text else None
        return data if data and data.get("phase") == "streaming" else None

    cp = poll(checkpoint, timeout=30, message="checkpoint ConfigMap", describe=describe)
    assert cp["position"].startswith("pg:")

    # a deleted worker pod comes back and continues: nothing lost (deduplicated on the key)
    control_plane.kubectl("delete", "pod", f"{name}-worker-0", "-n", namespace, "--wait=false")
    source_db.execute("INSERT INTO orders SELECT g, 'after' FROM generate_series(200, 219) g")
    poll(lambda: len(hook.delivered()) >= 73, timeout=180, message="20 rows after the pod restart", describe=describe)
    after = [e for e in hook.delivered() if e["op"] == "c" and e["key"]["id"] >= 200]
    assert sorted(e["key"]["id"] for e in after) == list(range(200, 220))
