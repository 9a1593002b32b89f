"""PostgreSQL -> Kafka against a real single-node KRaft broker (started once per session by ``tests.support.kafka``).

What a Debezium user reads off the topics: the envelope (before/after/source/op/ts_ms/transaction), keys from the
primary key (one row's changes in one partition, in order), snapshot rows as ``r``, truncates as ``t``, tombstones
after deletes, schema changes in the next event's schema, topics created with ``topic_options``; and the delivery
guarantee: with transactions, a ``read_committed`` consumer sees every source change exactly once even when the
worker is killed (SIGKILL) at random instants, and across a broker restart; wrong credentials and unreachable
brokers end in a status error that says what to fix.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack.kafka import KafkaInstance
from tests.support.kafka import Record, consume_all, topic_config
from tests.support.pg import PgDatabase, WorkerProcess, connector_spec, write_connector_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RunWorker = Callable[..., WorkerProcess]


def realtime(status: dict[str, Any]) -> bool:
    return status.get("state") == "realtime"


def kafka_spec(
    source: PgDatabase,
    kafka: KafkaInstance,
    *,
    fmt: dict[str, Any] | None = None,
    transactions: bool = True,
    topic_options: dict[str, Any] | None = None,
    auth: dict[str, Any] | None = None,
    brokers: list[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """A PostgreSQL -> Kafka connector spec (the REST/CR form)."""
    spec = connector_spec(source, source, connector_id=f"k-{uuid.uuid4().hex[:10]}", **options)
    connection: dict[str, Any] = {"brokers": brokers or [kafka.bootstrap]}
    if transactions:
        connection["config"] = {"transactions": {"enabled": True}}
    if auth is not None:
        connection["auth"] = auth
    sink: dict[str, Any] = {"connection": connection, "format": fmt or {"debezium": {}}}
    if topic_options is not None:
        sink["topic_options"] = topic_options
    spec["sink"] = {"kafka": sink}
    return spec


def write_spec(tmp_path: Path, spec: dict[str, Any]) -> Path:
    return write_connector_config(tmp_path / f"{spec['id']}.yaml", spec)


def value(record: Record) -> Any:
    return None if record.value is None else json.loads(record.value)


def key(record: Record) -> Any:
    return None if record.key is None else json.loads(record.key)


def payloads(records: list[Record]) -> list[dict[str, Any]]:
    """Values' payloads (schemas.enable: ``{"schema", "payload"}``), tombstones left out."""
    return [v["payload"] for r in records if (v := value(r)) is not None]


def wait_records(kafka: KafkaInstance, topics: list[str], count: int, timeout: float = 60) -> list[Record]:
    """The committed records of ``topics`` once there are at least ``count`` (fails at the deadline)."""
    deadline = time.monotonic() + timeout
    records: list[Record] = []
    while time.monotonic() < deadline:
        records = consume_all(kafka.bootstrap, topics, timeout=10)
        if len(records) >= count:
            return records
        time.sleep(0.2)
    raise AssertionError(f"only {len(records)} of {count} records in {topics} after {timeout}s")


def test_snapshot_and_changes_as_debezium_events(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql(
        "CREATE TABLE acc (id int PRIMARY KEY, v int NOT NULL, s text, amount numeric(10,2));"
        "INSERT INTO acc SELECT g, g, 'r' || g, g * 1.5 FROM generate_series(1, 20) g;"
    )
    spec = kafka_spec(
        source_db, kafka, topic_options={"partitions": 3, "replication_factor": 1}, limits={"cdc": {"flush_interval_ms": 50}}
    )
    worker = run_worker(write_spec(tmp_path, spec))
    status = worker.wait_for_status(realtime, timeout=90)
    assert status.get("delivery") in (None, "exactly-once")
    topic = f"{spec['id']}.public.acc"
    assert topic_config(kafka.bootstrap, topic)["partitions"] == 3
    snap = wait_records(kafka, [topic], 20)
    events = payloads(snap)
    assert {e["op"] for e in events} == {"r"}
    assert sorted(e["after"]["id"] for e in events) == list(range(1, 21))
    first = value(snap[0])
    assert first["schema"]["name"] == f"{spec['id']}.public.acc.Envelope"
    assert all(e["source"]["snapshot"] in ("true", "last", "first", "last_in_data_collection") for e in events)
    assert all(key(r) == {"schema": key(r)["schema"], "payload": {"id": value(r)["payload"]["after"]["id"]}} for r in snap)

    source_db.psql(
        "INSERT INTO acc VALUES (100, 1, 'new', 2.25);"
        "UPDATE acc SET v = v + 1 WHERE id = 3;"
        "DELETE FROM acc WHERE id = 4;"
        "BEGIN; UPDATE acc SET s = 'a' WHERE id = 5; UPDATE acc SET s = 'b' WHERE id = 5; COMMIT;"
        "TRUNCATE acc;"
    )
    # 20 r + c + u + d + tombstone + 2 u + t
    records = wait_records(kafka, [topic], 27)
    stream = [r for r in records if value(r) is None or value(r)["payload"]["op"] != "r"]
    ops = [value(r)["payload"]["op"] if value(r) is not None else "tombstone" for r in stream]
    assert sorted(ops) == sorted(["c", "u", "d", "tombstone", "u", "u", "t"])
    by_op = {value(r)["payload"]["op"]: value(r)["payload"] for r in stream if value(r) is not None}
    c = by_op["c"]
    assert c["after"] == {"id": 100, "v": 1, "s": "new", "amount": base64.b64encode((225).to_bytes(2, "big")).decode()}
    assert c["before"] is None
    assert c["source"]["connector"] == "postgresql"
    assert c["source"]["table"] == "acc" and c["source"]["schema"] == "public"
    assert isinstance(c["source"]["lsn"], int) and isinstance(c["source"]["txId"], int)
    assert c["ts_ms"] > 0 and c["source"]["ts_ms"] > 0
    d = by_op["d"]
    assert d["before"]["id"] == 4 and d["after"] is None
    tomb = next(r for r in stream if r.value is None)
    assert key(tomb)["payload"] == {"id": 4}
    t = by_op["t"]
    assert t["before"] is None and t["after"] is None
    # Every change of one key is in one partition, in source order.
    five = [value(r)["payload"]["after"]["s"] for r in stream if value(r) is not None and key(r) and key(r)["payload"] == {"id": 5}]
    assert five == ["a", "b"]
    assert len({r.partition for r in records if r.key is not None and key(r)["payload"] == {"id": 5}}) == 1
    assert worker.stop() == 0
