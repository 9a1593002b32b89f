"""Which Secrets a kubectl-applied connector may use, and inline credentials (`sluice.models.secret_access`).

- A connector whose ``*_secret_ref`` names a Secret without ``sluice.dev/usable-by-connectors: "true"`` gets
  Ready=False reason SecretNotAllowed with the fix, and no worker pod; labelling the Secret lets it run.
- A connector holding a password inline gets a Warning event and a CredentialsInline condition naming the
  ``*_secret_ref`` to use instead.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.e2e.test_operator import TABLES, _condition, _get, _seed, _status, _wait_streaming, _worker_pod
from tests.support.cluster import poll
from tests.support.operator import OperatorProcess, apply, connector_resource, operator_namespace, secret_resource
from tests.support.pg import PgDatabase, connector_spec, wait_tables_equal

pytestmark = pytest.mark.e2e

LABEL = "sluice.dev/usable-by-connectors"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the test operator watches (``op-*``)."""
    yield from operator_namespace(control_plane, request)


def _events(control_plane: ControlPlane, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    out = control_plane.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"reason={reason}", "-o", "json"
    ).stdout
    return [e for e in json.loads(out)["items"] if e["involvedObject"]["name"] == name]


def test_unlabelled_secret_is_refused_until_it_is_labelled(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = f"unlabelled-{secrets.token_hex(3)}"
    _seed(source_db)
    creds = secret_resource(f"{name}-creds", source_db, sink_db)
    del creds["metadata"]["labels"]
    apply(control_plane, namespace, creds, connector_resource(name, source_db, sink_db, f"{name}-creds"))

    def refused() -> dict[str, Any] | None:
        ready = _condition(_status(control_plane, namespace, name), "Ready")
        return ready if ready.get("reason") == "SecretNotAllowed" else None

    ready = poll(refused, timeout=60, message="Ready=False reason SecretNotAllowed")
    assert ready["status"] == "False"
    assert f'Secret "{name}-creds"' in ready["message"], ready
    assert f"kubectl label secret {name}-creds {LABEL}=true" in ready["message"], ready
    assert "source.postgres.connection.password_secret_ref" in ready["message"], ready
    assert _events(control_plane, namespace, name, "SecretNotAllowed"), "a Warning event says so too"
    # No worker: the StatefulSet (if any) runs no replica, so no pod ever receives the Secret's values.
    sts = _get(control_plane, namespace, "statefulset", f"{name}-worker")
    assert sts is None or sts["spec"]["replicas"] == 0, sts
    assert _worker_pod(control_plane, namespace, name) is None

    control_plane.kubectl("label", "secret", f"{name}-creds", f"{LABEL}=true", "-n", namespace)
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    wait_tables_equal(source_db, sink_db, TABLES, timeout=60)


def test_inline_credentials_get_a_warning_event_and_a_condition(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = f"inline-{secrets.token_hex(3)}"
    spec = connector_spec(source_db, sink_db, connector_id=name)
    spec.pop("id")
    password = spec["source"]["postgres"]["connection"]["password"]
    cr = {"apiVersion": "sluice.dev/v1alpha1", "kind": "Connector", "metadata": {"name": name}, "spec": spec}
    apply(control_plane, namespace, cr)

    def warned() -> list[dict[str, Any]] | None:
        return _events(control_plane, namespace, name, "InlineCredentials") or None

    events = poll(warned, timeout=60, message="a Warning event InlineCredentials")
    assert events[0]["type"] == "Warning"
    message = events[0]["message"]
    assert "source.postgres.connection.password_secret_ref" in message, message
    assert "sink.postgres.connection.password_secret_ref" in message, message
    assert password not in message
    cond = _condition(_status(control_plane, namespace, name), "CredentialsInline")
    assert cond.get("status") == "True" and cond.get("reason") == "InlineCredentials", cond
    assert "password_secret_ref" in cond["message"]
    assert password not in json.dumps(_status(control_plane, namespace, name))
