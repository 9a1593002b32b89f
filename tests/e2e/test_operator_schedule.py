"""A snapshot connector on a schedule: one run per tick, ``scheduled`` between runs, a new run_id per run."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.e2e.test_operator import TABLES, _condition, _describe, _seed, _status, _worker_pod
from tests.support.cluster import poll
from tests.support.operator import OperatorProcess, apply, connector_resource, operator_namespace, secret_resource
from tests.support.pg import PgDatabase, wait_tables_equal

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the test operator watches (``op-*``)."""
    yield from operator_namespace(control_plane, request)


def test_scheduled_snapshot_runs_once_per_tick(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = f"sched-{secrets.token_hex(3)}"
    _seed(source_db)
    cr = connector_resource(name, source_db, sink_db, f"{name}-creds", replication="snapshot")
    cr["spec"]["schedule"] = {"rate": {"value": 1, "unit": "Minute"}}
    apply(control_plane, namespace, secret_resource(f"{name}-creds", source_db, sink_db), cr)
    wait_tables_equal(source_db, sink_db, TABLES, timeout=120)

    def scheduled() -> dict[str, Any] | None:
        status = _status(control_plane, namespace, name)
        ok = (
            status.get("state") == "scheduled"
            and status.get("next_run_at")
            and _condition(status, "Ready").get("status") == "True"
            and _worker_pod(control_plane, namespace, name) is None
        )
        return status if ok else None

    describe = lambda: _describe(control_plane, process_node, sluice_operator, namespace, name)  # noqa: E731
    first = poll(scheduled, timeout=120, message="state scheduled between runs, no worker pod", describe=describe)
    assert "Next run at" in _condition(first, "Ready")["message"]
    source_db.execute("INSERT INTO orders VALUES (777, 'next-tick', 1)")
    # the next tick copies the new row under a new run id, then the connector is scheduled again
    wait_tables_equal(source_db, sink_db, TABLES, timeout=150)
    second = poll(
        lambda: (s := scheduled()) and s["run_id"] != first["run_id"] and s,
        timeout=120,
        message="a second run with its own run_id",
        describe=describe,
    )
    assert second["next_run_at"] != first["next_run_at"]
