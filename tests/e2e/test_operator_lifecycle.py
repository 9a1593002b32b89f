"""Operator lifecycle: REST-created connectors, one-shot commands, force delete, and two operator replicas."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.e2e.test_operator import TABLES, _get, _seed, _start, _status, _wait_streaming, _worker_pod
from tests.support.cluster import poll
from tests.support.operator import (
    OperatorProcess,
    apply,
    connector_resource,
    operator_namespace,
    start_operator,
    stop_operator,
)
from tests.support.pg import PgDatabase, connector_spec, wait_tables_equal

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the test operator watches (``op-*``)."""
    yield from operator_namespace(control_plane, request)


def test_connector_posted_to_the_rest_api_streams(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
    api: TestClient,
    api_user: Callable[[str, str | None], dict[str, str]],
) -> None:
    _seed(source_db)
    headers = api_user("editor", "sluice-connector-editor")
    body = connector_spec(source_db, sink_db)  # inline passwords: the API moves them into a Secret
    resp = api.post(f"/api/v1/connectors?namespace={namespace}", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    name = resp.json()["connector"]["id"]
    wait_tables_equal(source_db, sink_db, TABLES, timeout=120)
    _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    got = api.get(f"/api/v1/connectors/{name}?namespace={namespace}", headers=headers).json()
    state = got["status"]["state"]
    assert state == "realtime" or (isinstance(state, dict) and "realtime" in state), got
    assert got["run_id"]

    # The operator records each transition it sees; the history endpoint shows them in the reference's form.
    def streaming_event() -> list[dict[str, Any]] | None:
        resp = api.get(f"/api/v1/connector/history/{name}?namespace={namespace}", headers=headers)
        assert resp.status_code == 200, resp.text
        events: list[dict[str, Any]] = resp.json()["events"]
        return (
            events
            if any(
                e.get("state") in ("realtime", {"realtime": {}})
                or (isinstance(e.get("state"), dict) and "realtime" in e["state"])
                for e in events
            )
            else None
        )

    events = poll(streaming_event, timeout=60, message="a realtime event in the history")
    assert all(e["connector_id"] == name and e["created_at"] and e["component"] for e in events)
    assert len({e["id"] for e in events}) == len(events)


def test_restart_command_annotation_starts_a_new_run_and_is_removed(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = f"cmd-{secrets.token_hex(3)}"
    _seed(source_db)
    _start(control_plane, namespace, source_db, sink_db, name)
    first = _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    pod = _worker_pod(control_plane, namespace, name)
    assert pod is not None

    # Stop is not a one-shot command: the operator never writes spec, so it refuses the annotation with the fix.
    control_plane.kubectl("annotate", "connector", name, "-n", namespace, "sluice.dev/command=Stop")

    def refused() -> str | None:
        cr = _get(control_plane, namespace, "connector", name) or {}
        if "sluice.dev/command" in (cr["metadata"].get("annotations") or {}):
            return None
        out = control_plane.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "reason=CommandRefused", "-o", "json"
        ).stdout
        items = [e for e in json.loads(out)["items"] if e["involvedObject"]["name"] == name]
        return items[0]["message"] if items and items[0]["type"] == "Warning" else None

    message = poll(refused, timeout=60, message="the Stop annotation removed with a CommandRefused Warning event")
    assert "spec.disabled: true" in message, message
    cr = _get(control_plane, namespace, "connector", name) or {}
    assert not (cr.get("spec") or {}).get("disabled"), "the operator must not write spec"
    still = _worker_pod(control_plane, namespace, name)
    assert still is not None and still["metadata"]["uid"] == pod["metadata"]["uid"], "the worker must keep running"

    control_plane.kubectl("annotate", "connector", name, "-n", namespace, "sluice.dev/command=Restart")

    def new_run() -> dict[str, Any] | None:
        cr = _get(control_plane, namespace, "connector", name) or {}
        if "sluice.dev/command" in (cr["metadata"].get("annotations") or {}):
            return None
        status = cr.get("status") or {}
        return status if status.get("run_id") not in (None, first["run_id"]) else None

    poll(new_run, timeout=60, message="a new run id and the command annotation removed")
    new_pod = poll(
        lambda: (
            (p := _worker_pod(control_plane, namespace, name)) and p["metadata"]["uid"] != pod["metadata"]["uid"] and p
        ),
        timeout=60,
        message="the worker pod replaced",
    )
    assert new_pod["metadata"]["annotations"]["sluice.dev/run-id"] != first["run_id"]
    source_db.execute("INSERT INTO orders VALUES (5000, 'after-restart', 1)")
    wait_tables_equal(source_db, sink_db, TABLES, timeout=90)
    events = control_plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "CommandApplied" in events


def test_force_delete_finishes_with_an_unreachable_source(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = f"unreach-{secrets.token_hex(3)}"
    cr = connector_resource(name, source_db, sink_db, f"{name}-creds")
    cr["spec"]["source"]["postgres"]["connection"]["port"] = 1  # nothing listens there
    apply(
        control_plane,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-creds", "labels": {"sluice.dev/usable-by-connectors": "true"}},
            "stringData": {"source": "x", "sink": "y"},
        },
        cr,
    )
    poll(lambda: _status(control_plane, namespace, name).get("conditions"), timeout=60, message="status written")
    control_plane.kubectl("delete", "connector", name, "-n", namespace, "--wait=false")

    def blocked() -> bool:
        events = control_plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        return "CleanupBlocked" in events

    poll(blocked, timeout=60, message="the finalizer to report that the source is unreachable")
    assert _get(control_plane, namespace, "connector", name) is not None  # still there: cleanup pending
    control_plane.kubectl("annotate", "connector", name, "-n", namespace, "sluice.dev/force-delete=true")
    poll(
        lambda: _get(control_plane, namespace, "connector", name) is None,
        timeout=60,
        message="the connector deleted after the force annotation",
    )


def test_two_operator_replicas_one_leads_the_other_takes_over(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
    tmp_path: Path,
) -> None:
    lease = f"sluice-operator-{secrets.token_hex(3)}"
    first = start_operator(control_plane, tmp_path / "a", "--lease-name", lease, namespace="nowhere")
    try:
        poll(lambda: "operator started" in first.log_path.read_text(), timeout=60, message="first replica leads")
        second = start_operator(control_plane, tmp_path / "b", "--lease-name", lease, namespace="nowhere")
        try:
            poll(
                lambda: "waits as standby" in second.log_path.read_text(),
                timeout=60,
                message="second replica waits as standby",
            )
            assert "operator started" not in second.log_path.read_text()
            stop_operator(first)  # a clean stop releases the lease: the standby takes over at once
            poll(
                lambda: "operator started" in second.log_path.read_text(),
                timeout=60,
                message="second replica takes over",
            )
            holder = json.loads(control_plane.kubectl("get", "lease", lease, "-n", "default", "-o", "json").stdout)[
                "spec"
            ]["holderIdentity"]
            assert holder and holder in second.log_path.read_text()
        finally:
            stop_operator(second)
    finally:
        stop_operator(first)
    # the session operator was never disturbed
    assert sluice_operator.popen.poll() is None


def test_reinitialize_command_snapshots_again(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = f"reinit-{secrets.token_hex(3)}"
    _seed(source_db)
    _start(control_plane, namespace, source_db, sink_db, name)
    first = _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    wait_tables_equal(source_db, sink_db, TABLES, timeout=60)
    # Damage the sink behind the connector's back: only a new snapshot can repair it.
    sink_db.execute("DELETE FROM orders WHERE id <= 50")
    sink_db.execute("UPDATE orders SET item = 'damaged' WHERE id = 60")
    control_plane.kubectl("annotate", "connector", name, "-n", namespace, "sluice.dev/command=ReIntialize")
    wait_tables_equal(source_db, sink_db, TABLES, timeout=120)
    status = _wait_streaming(control_plane, process_node, sluice_operator, namespace, name)
    assert status["run_id"] != first["run_id"]
    assert not status.get("reinitialize")
    events = control_plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "Reinitialized" in events
