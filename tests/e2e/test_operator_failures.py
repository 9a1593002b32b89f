"""Connectors that cannot work end Ready=False with a message saying what to fix — without a restart storm.

"No restart storm" is checked as behaviour, not speed: the worker's restarts are spaced by a back-off that keeps
growing (the process node doubles it from 1 s in tests), so by the time it reaches 8 s only a handful of restarts
have happened.
"""

from __future__ import annotations

import copy
import json
import math
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from sluice import kinds
from sluice.devstack import ControlPlane
from sluice.devstack.postgres import PostgresInstance
from sluice.devstack.processnode import ProcessNode
from tests.e2e.test_operator import _condition, _describe, _get, _seed, _status, _worker_pod
from tests.support.cluster import CRD_PATH, poll
from tests.support.operator import OperatorProcess, apply, connector_resource, operator_namespace, secret_resource
from tests.support.pg import PgDatabase, require_postgres

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the test operator watches (``op-*``)."""
    yield from operator_namespace(control_plane, request)


@pytest.fixture(scope="module")
def pg_no_logical() -> Iterator[PostgresInstance]:
    """A server with ``wal_level=replica``: logical replication impossible until it is changed."""
    require_postgres()
    instance = PostgresInstance(name="nological", fast=True, settings={"wal_level": "replica"})
    instance.start()
    try:
        yield instance
    finally:
        instance.destroy()


def _expect_actionable_failure(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    op: OperatorProcess,
    namespace: str,
    name: str,
    needle: str,
    timeout: float = 90,
) -> dict[str, Any]:
    def failed() -> dict[str, Any] | None:
        status = _status(control_plane, namespace, name)
        ready = _condition(status, "Ready")
        ok = ready.get("status") == "False" and re.search(needle, ready.get("message", ""), re.IGNORECASE)
        return status if ok else None

    status = poll(
        failed,
        timeout=90,
        message=f"Ready=False mentioning {needle!r}",
        describe=lambda: _describe(control_plane, process_node, op, namespace, name),
    )
    ready = _condition(status, "Ready")
    # The worker's error, with its fix, word for word in the condition.
    error = status.get("last_error") or {}
    assert error.get("message") and error.get("fix"), error
    assert f"{error['message']} Fix: {error['fix']}" in ready["message"], ready

    def backoff() -> tuple[float, int] | None:
        """(current back-off, restart count) read from one and the same pod status."""
        pod = _worker_pod(control_plane, namespace, name)
        cs = (((pod or {}).get("status") or {}).get("containerStatuses") or [{}])[0]
        match = re.search(r"back-off (\d+)s", cs.get("state", {}).get("waiting", {}).get("message", ""))
        if match is None or float(match.group(1)) < 8:
            return None
        return float(match.group(1)), int(cs.get("restartCount", 0))

    seconds, restarts = poll(
        backoff,
        timeout=150,
        message="restart back-off grown to 8 s or more",
        describe=lambda: _describe(control_plane, process_node, op, namespace, name),
    )
    # A doubling back-off from 1 s reaches `seconds` after log2(seconds) + 1 restarts; one more for timing slack.
    assert restarts <= math.log2(seconds) + 2, (seconds, restarts)
    status = _status(control_plane, namespace, name)
    assert _condition(status, "Ready")["status"] == "False"
    assert _condition(status, "Degraded")["status"] == "True"
    return status


def test_wrong_password(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = f"badpw-{secrets.token_hex(3)}"
    _seed(source_db)
    creds = secret_resource(f"{name}-creds", source_db, sink_db)
    creds["stringData"]["source"] = "not-the-password"
    apply(control_plane, namespace, creds, connector_resource(name, source_db, sink_db, f"{name}-creds"))
    _expect_actionable_failure(control_plane, process_node, sluice_operator, namespace, name, r"password|authenticat")


def test_wal_level_not_logical(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    pg_no_logical: PostgresInstance,
    sink_db: PgDatabase,
) -> None:
    name = f"nowal-{secrets.token_hex(3)}"
    dbname = f"src_{secrets.token_hex(4)}"
    pg_no_logical.create_database(dbname)
    source = PgDatabase(pg_no_logical, dbname)
    _seed(source)
    apply(
        control_plane,
        namespace,
        secret_resource(f"{name}-creds", source, sink_db),
        connector_resource(name, source, sink_db, f"{name}-creds"),
    )
    _expect_actionable_failure(control_plane, process_node, sluice_operator, namespace, name, r"wal_level")


def test_missing_table(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    name = f"notable-{secrets.token_hex(3)}"
    _seed(source_db)
    catalog = {
        "default_action": "Exclude",
        "schemas": [
            {"name": "public", "action": "Include", "tables": [{"name": "no_such_table", "action": "Include"}]}
        ],
    }
    apply(
        control_plane,
        namespace,
        secret_resource(f"{name}-creds", source_db, sink_db),
        connector_resource(name, source_db, sink_db, f"{name}-creds", catalog=catalog),
    )
    _expect_actionable_failure(
        control_plane, process_node, sluice_operator, namespace, name, r"no_such_table", timeout=45
    )


def _crd_without_kind_rules() -> dict[str, Any]:
    """The shipped CRD as an older Sluice had it: every kind accepted."""
    crd = yaml.safe_load(CRD_PATH.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for part in ("source", "sink"):
        node = spec["properties"][part]
        node["x-kubernetes-validations"] = [
            r for r in node["x-kubernetes-validations"] if r.get("reason") != "FieldValueForbidden"
        ]
    return crd


def _accepted(control_plane: ControlPlane, namespace: str, cr: dict[str, Any]) -> bool:
    probe = copy.deepcopy(cr)
    probe["metadata"]["name"] = "probe-" + cr["metadata"]["name"]
    result = control_plane.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(probe), check=False
    )
    return result.returncode == 0


def test_stored_connector_of_an_unavailable_kind_gets_no_worker_and_says_why(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    source_db: PgDatabase,
    sink_db: PgDatabase,
) -> None:
    """A Connector stored while the CRD accepted every kind (an older Sluice) is not run: Ready=False
    UnsupportedKind with the CRD's and the API's words, no StatefulSet, no pod; it can still be deleted."""
    name = f"clickhouse-{secrets.token_hex(3)}"
    cr = connector_resource(name, source_db, sink_db, f"{name}-creds")
    cr["spec"]["sink"] = {
        "clickhouse": {"connection": {"http_url": "http://127.0.0.1:9", "user": "u"}, "target_database": "dw"}
    }
    assert not _accepted(control_plane, namespace, cr), "the shipped CRD must refuse a clickhouse sink"
    older = _crd_without_kind_rules()
    try:
        control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(older))
        poll(lambda: _accepted(control_plane, namespace, cr), timeout=60, message="the older CRD served")
        apply(control_plane, namespace, secret_resource(f"{name}-creds", source_db, sink_db), cr)
    finally:
        control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_PATH))
        poll(lambda: not _accepted(control_plane, namespace, cr), timeout=60, message="the shipped CRD back")

    def refused() -> dict[str, Any] | None:
        status = _status(control_plane, namespace, name)
        return status if _condition(status, "Ready").get("reason") == "UnsupportedKind" else None

    status = poll(
        refused,
        timeout=60,
        message="Ready=False UnsupportedKind",
        describe=lambda: _describe(control_plane, process_node, sluice_operator, namespace, name),
    )
    refusal = kinds.unavailable("sink", "clickhouse")
    ready = _condition(status, "Ready")
    assert ready["status"] == "False"
    assert ready["message"] == refusal.text
    assert status["status"]["type"] == "failed"
    error = status["last_error"]
    assert (error["reason"], error["message"], error["fix"]) == ("UnsupportedKind", refusal.message, refusal.fix)
    assert status["sink_kind"] == "clickhouse"
    # The pass that wrote this status would have created the worker before it: there is none, nor a pod.
    assert _get(control_plane, namespace, "statefulset", f"{name}-worker") is None
    assert _worker_pod(control_plane, namespace, name) is None
    events = control_plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "UnsupportedKind" in events

    # Updates that leave the kind alone still pass the apiserver (validation ratcheting), so the operator can keep
    # it annotated and its status current; and it can be deleted (the finalizer cleans the postgres source up).
    control_plane.kubectl("annotate", "connector", name, "-n", namespace, "example.com/touched=yes")
    control_plane.kubectl("delete", "connector", name, "-n", namespace, "--timeout=90s")
    assert _get(control_plane, namespace, "connector", name) is None
    assert _get(control_plane, namespace, "statefulset", f"{name}-worker") is None
