"""Many connectors at once all reach Streaming (20 by default; ``SLUICE_E2E_CONNECTORS`` changes the number).

A source server of its own with room for the slots and walsenders, one source and one sink database per
connector, all applied in a single ``kubectl apply``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.postgres import PostgresInstance
from sluice.devstack.processnode import ProcessNode
from tests.e2e.test_operator import TABLES, _condition, _describe, _seed, _status
from tests.support.cluster import poll
from tests.support.operator import OperatorProcess, apply, connector_resource, operator_namespace, secret_resource
from tests.support.pg import PgDatabase, require_postgres, wait_tables_equal

pytestmark = pytest.mark.e2e


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace the test operator watches (``op-*``)."""
    yield from operator_namespace(control_plane, request)


COUNT = int(os.environ.get("SLUICE_E2E_CONNECTORS", "20"))


@pytest.fixture(scope="module")
def pg_many() -> Iterator[PostgresInstance]:
    require_postgres()
    room = COUNT + 10
    instance = PostgresInstance(
        name="many",
        fast=True,
        settings={"max_replication_slots": room, "max_wal_senders": room, "max_connections": 20 + 8 * COUNT},
    )
    instance.start()
    try:
        yield instance
    finally:
        instance.destroy()


def test_many_connectors_reach_streaming(
    control_plane: ControlPlane,
    process_node: ProcessNode,
    sluice_operator: OperatorProcess,
    namespace: str,
    pg_many: PostgresInstance,
    pg_sink: PostgresInstance,
) -> None:
    pairs: list[tuple[str, PgDatabase, PgDatabase]] = []
    objects = []
    for i in range(COUNT):
        name = f"many-{i}-{secrets.token_hex(2)}"
        source = PgDatabase(pg_many, f"src_{name.replace('-', '_')}")
        sink = PgDatabase(pg_sink, f"snk_{name.replace('-', '_')}")
        pg_many.create_database(source.name)
        pg_sink.create_database(sink.name)
        _seed(source, rows=50)
        pairs.append((name, source, sink))
        objects += [
            secret_resource(f"{name}-creds", source, sink),
            connector_resource(name, source, sink, f"{name}-creds", parallel_snapshots_enabled=False),
        ]
    apply(control_plane, namespace, *objects)

    def all_streaming() -> bool:
        return all(
            _condition(_status(control_plane, namespace, name), "Streaming").get("status") == "True"
            for name, _, _ in pairs
        )

    def lagging() -> str:
        names = [
            n
            for n, _, _ in pairs
            if _condition(_status(control_plane, namespace, n), "Streaming").get("status") != "True"
        ]
        detail = _describe(control_plane, process_node, sluice_operator, namespace, names[0]) if names else ""
        return f"not streaming: {names}\n{detail}"

    poll(all_streaming, timeout=600, interval=2, message=f"all {COUNT} connectors Streaming", describe=lagging)
    for _, source, _sink in pairs:
        source.execute("INSERT INTO orders VALUES (999, 'streamed', 1)")
    for _, source, sink in pairs:
        wait_tables_equal(source, sink, TABLES, timeout=120)
