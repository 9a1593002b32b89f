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
        source_db,
        kafka,
        topic_options={"partitions": 3, "replication_factor": 1},
        limits={"cdc": {"flush_interval_ms": 50}},
    )
    worker = run_worker(write_spec(tmp_path, spec))
    status = worker.wait_for_status(realtime, timeout=90)
    assert status.get("delivery") == "exactly-once"
    topic = f"{spec['id']}.public.acc"
    assert topic_config(kafka.bootstrap, topic)["partitions"] == 3
    snap = wait_records(kafka, [topic], 20)
    events = payloads(snap)
    assert {e["op"] for e in events} == {"r"}
    assert all(e["source"]["ts_ms"] > 0 and e["source"]["lsn"] for e in events)
    assert sorted(e["after"]["id"] for e in events) == list(range(1, 21))
    first = value(snap[0])
    assert first["schema"]["name"] == f"{spec['id']}.public.acc.Envelope"
    assert all(e["source"]["snapshot"] in ("true", "last", "first", "last_in_data_collection") for e in events)
    assert all(
        key(r) == {"schema": key(r)["schema"], "payload": {"id": value(r)["payload"]["after"]["id"]}} for r in snap
    )

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
    five = [
        value(r)["payload"]["after"]["s"]
        for r in stream
        if value(r) is not None and key(r) and key(r)["payload"] == {"id": 5}
    ]
    assert five == ["a", "b"]
    assert len({r.partition for r in records if r.key is not None and key(r)["payload"] == {"id": 5}}) == 1
    assert worker.stop() == 0


def _final_status(worker: WorkerProcess, timeout: float = 120) -> dict[str, Any]:
    code = worker.wait(timeout)
    assert code != 0, worker.output_tail()
    last = worker.last_status()
    assert last is not None, worker.output_tail()
    return last


def test_exactly_once_under_kill_9_at_random_instants(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: RunWorker, tmp_path: Path
) -> None:
    """A read_committed consumer sees each source change once, in commit order per key, however often the worker
    is killed (SIGKILL) mid-stream; a keyless table's changes are counted one by one."""
    keys = 40
    source_db.psql(
        "CREATE TABLE acc (id int PRIMARY KEY, v int NOT NULL);"
        f"INSERT INTO acc SELECT g, 0 FROM generate_series(1, {keys}) g;"
        "CREATE TABLE nokey (seq int NOT NULL, note text); ALTER TABLE nokey REPLICA IDENTITY FULL;"
    )
    spec = kafka_spec(
        source_db,
        kafka,
        topic_options={"partitions": 4},
        fmt={"debezium": {"tombstones_on_delete": False}},
        limits={"cdc": {"flush_interval_ms": 20, "max_buffer_rows": 50}},
    )
    config = write_spec(tmp_path, spec)
    worker = run_worker(config)
    worker.wait_for_status(realtime, timeout=90)
    rng = random.Random(20261202)
    expected_updates: dict[int, int] = defaultdict(int)
    seq = 0
    kills = 0
    with source_db.connect(autocommit=False) as conn:
        for round_ in range(4):
            for _ in range(rng.randint(60, 120)):
                for k in rng.sample(range(1, keys + 1), 3):
                    conn.execute("UPDATE acc SET v = v + 1 WHERE id = %s", (k,))
                    expected_updates[k] += 1
                conn.execute("INSERT INTO nokey VALUES (%s, 'x')", (seq,))
                seq += 1
                if rng.random() < 0.2:  # a bigger transaction now and then: more than one flush batch
                    for _ in range(60):
                        conn.execute("INSERT INTO nokey VALUES (%s, 'big')", (seq,))
                        seq += 1
                conn.commit()
            if round_ < 3:
                time.sleep(rng.uniform(0.0, 0.4))  # the kill lands at a random instant of the stream
                worker.kill()
                kills += 1
                worker = run_worker(config)
    acc_topic, nokey_topic = f"{spec['id']}.public.acc", f"{spec['id']}.public.nokey"
    total = keys + sum(expected_updates.values()) + seq
    records = wait_records(kafka, [acc_topic, nokey_topic], total, timeout=120)
    worker.wait_for_status(realtime, timeout=60)
    # Let the last batch settle, then read everything again: nothing more may arrive.
    time.sleep(0.5)
    records = consume_all(kafka.bootstrap, [acc_topic, nokey_topic], timeout=30)
    assert kills == 3
    per_key: dict[int, list[int]] = defaultdict(list)
    seqs: list[int] = []
    for r in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
        p = value(r)["payload"]
        if r.topic == acc_topic:
            if p["op"] == "r":
                assert p["after"]["v"] == 0
                continue
            assert p["op"] == "u"
            per_key[p["after"]["id"]].append(p["after"]["v"])
        else:
            assert p["op"] == "c"
            seqs.append(p["after"]["seq"])
    for k, n in expected_updates.items():
        assert per_key[k] == list(range(1, n + 1)), f"key {k}: {per_key[k]}"
    assert sorted(seqs) == list(range(seq)), "each keyless change exactly once"
    snapshot_reads = sum(1 for r in records if r.topic == acc_topic and value(r)["payload"]["op"] == "r")
    assert snapshot_reads == keys
    assert worker.stop() == 0


def test_broker_restart_mid_stream_loses_and_repeats_nothing(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql("CREATE TABLE t (id int PRIMARY KEY, v int);")
    spec = kafka_spec(source_db, kafka, limits={"cdc": {"flush_interval_ms": 50}})
    worker = run_worker(write_spec(tmp_path, spec))
    worker.wait_for_status(realtime, timeout=90)
    topic = f"{spec['id']}.public.t"
    source_db.psql("INSERT INTO t SELECT g, g FROM generate_series(1, 100) g;")
    wait_records(kafka, [topic], 100)
    kafka.stop()
    try:
        source_db.psql("INSERT INTO t SELECT g, g FROM generate_series(101, 200) g;")
        # The worker notices (a retry in its status) or simply waits inside its commit; either way it keeps running.
        time.sleep(1.0)
        assert worker.returncode is None, worker.output_tail()
    finally:
        kafka.start()
    source_db.psql("INSERT INTO t SELECT g, g FROM generate_series(201, 300) g;")
    records = wait_records(kafka, [topic], 300, timeout=120)
    ids = sorted(value(r)["payload"]["after"]["id"] for r in records)
    assert ids == list(range(1, 301))
    assert worker.returncode is None
    assert worker.stop() == 0


def test_wrong_credentials_stop_with_the_fix(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql("CREATE TABLE t (id int PRIMARY KEY);")
    auth = {"protocol": "SaslPlaintext", "mechanism": "ScramSha256", "username": kafka.user, "password": "wrong"}
    spec = kafka_spec(source_db, kafka, auth=auth, brokers=[kafka.sasl_bootstrap])
    last = _final_status(run_worker(write_spec(tmp_path, spec)))
    error = last["last_error"]
    assert "username and password" in error["fix"], error
    assert "wrong" not in json.dumps(last)


def test_right_credentials_with_each_mechanism(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
    for mechanism in ("Plain", "ScramSha256", "ScramSha512"):
        auth = {"protocol": "SaslPlaintext", "mechanism": mechanism, "username": kafka.user, "password": kafka.password}
        spec = kafka_spec(source_db, kafka, auth=auth, brokers=[kafka.sasl_bootstrap])
        worker = run_worker(write_spec(tmp_path, spec))
        worker.wait_for_status(realtime, timeout=90)
        assert len(wait_records(kafka, [f"{spec['id']}.public.t"], 1)) == 1
        assert worker.stop() == 0


def test_unreachable_brokers_are_retried_then_reported_with_the_fix(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql("CREATE TABLE t (id int PRIMARY KEY);")
    spec = kafka_spec(source_db, kafka, brokers=["127.0.0.1:1"], retry_window_seconds=2)
    worker = run_worker(write_spec(tmp_path, spec))
    worker.wait_for_status(lambda s: s.get("status") == "retry", timeout=60)
    last = _final_status(worker)
    assert "brokers" in last["last_error"]["fix"]


def test_gssapi_is_refused_naming_the_field(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: RunWorker, tmp_path: Path
) -> None:
    spec = kafka_spec(source_db, kafka, auth={"protocol": "SaslSsl", "mechanism": "GssApi"})
    worker = run_worker(write_spec(tmp_path, spec))
    assert worker.wait(60) != 0
    assert "sink.kafka.connection.auth.mechanism" in worker.output_tail()


def test_native_format_without_transactions_is_at_least_once(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');"
        "CREATE TABLE other (id int PRIMARY KEY);"
    )
    spec = kafka_spec(
        source_db,
        kafka,
        fmt={"native": {}},
        transactions=False,
        limits={"cdc": {"flush_interval_ms": 50}},
    )
    spec["sink"]["kafka"]["topic_name_template"] = "native-{prefix}-{table}"
    worker = run_worker(write_spec(tmp_path, spec))
    status = worker.wait_for_status(realtime, timeout=90)
    assert status.get("delivery") == "at-least-once"
    source_db.psql("UPDATE t SET v = 'b' WHERE id = 1; DELETE FROM t WHERE id = 1;")
    topic = f"native-{spec['id']}-t"
    records = wait_records(kafka, [topic], 3)
    events = [value(r) for r in records]
    assert [e["op"] for e in events] == ["r", "u", "d"]
    assert events[0]["row"] == {"id": 1, "v": "a"} and events[0]["key"] == {"id": 1}
    assert events[1]["row"] == {"id": 1, "v": "b"}
    assert [key(r) for r in records] == [{"id": 1}] * 3
    assert worker.stop() == 0


def test_schema_change_and_transaction_metadata(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql("CREATE TABLE t (id int PRIMARY KEY, a int);")
    spec = kafka_spec(
        source_db,
        kafka,
        fmt={"debezium": {"emit_tx_metadata": True}},
        limits={"cdc": {"flush_interval_ms": 50}},
    )
    worker = run_worker(write_spec(tmp_path, spec))
    worker.wait_for_status(realtime, timeout=90)
    source_db.psql(
        "BEGIN; INSERT INTO t VALUES (1, 1); INSERT INTO t VALUES (2, 2); COMMIT;"
        "ALTER TABLE t ADD COLUMN b text; INSERT INTO t VALUES (3, 3, 'three');"
    )
    topic = f"{spec['id']}.public.t"
    records = wait_records(kafka, [topic], 3)
    fields = [[f["field"] for f in value(r)["schema"]["fields"] if f["field"] == "after"] for r in records]
    assert all(fields)
    after_fields = [
        [c["field"] for c in next(f for f in value(r)["schema"]["fields"] if f["field"] == "after")["fields"]]
        for r in records
    ]
    assert after_fields[0] == ["id", "a"] and after_fields[-1] == ["id", "a", "b"]
    assert value(records[-1])["payload"]["after"] == {"id": 3, "a": 3, "b": "three"}
    block = value(records[1])["payload"]["transaction"]
    assert block["total_order"] == 2 and block["data_collection_order"] == 2
    tx = payloads(wait_records(kafka, [f"{spec['id']}.transaction"], 4))
    assert [e["status"] for e in tx[:2]] == ["BEGIN", "END"]
    assert tx[1]["event_count"] == 2 and tx[1]["id"] == block["id"]
    assert tx[1]["data_collections"] == [{"data_collection": "public.t", "event_count": 2}]
    assert worker.stop() == 0


def test_a_zombie_producer_is_fenced_and_its_open_transaction_dropped(
    source_db: PgDatabase, kafka: KafkaInstance
) -> None:
    """Two sinks with one transactional id: the newer one's start fences the older (its commit fails as a
    conflict) and aborts what the older left open; only committed batches are visible."""
    from sluice.errors import ConflictError
    from sluice.models import Connector
    from sluice.worker.checkpoints import Checkpoint
    from sluice.worker.events import Begin, Column, ColumnType, Commit, Op, RowChange, TableId, TableSchema, TypeKind
    from sluice.worker.positions import Lsn
    from sluice.worker.sinks.kafka.sink import KafkaSink

    connector = Connector.model_validate(kafka_spec(source_db, kafka))
    schema = TableSchema(TableId("public", "t"), (Column("id", ColumnType(TypeKind.INT, bits=32), False),), ("id",))
    t = schema.table
    old = KafkaSink(connector)
    new = KafkaSink(connector)
    try:
        old.prepare([schema])
        assert old.load_checkpoint() is None
        old.apply([Begin("1", Lsn(90)), RowChange(Op.INSERT, t, None, (1,)), Commit("1", Lsn(100))])
        old.commit(Checkpoint("streaming", Lsn(100).encode()))
        old.apply([Begin("2", Lsn(190)), RowChange(Op.INSERT, t, None, (2,)), Commit("2", Lsn(200))])
        new.prepare([schema])
        checkpoint = new.load_checkpoint()  # initializing the same transactional id fences the old producer
        assert checkpoint is not None and checkpoint.position == Lsn(100).encode()
        with pytest.raises(Exception) as info:
            old.commit(Checkpoint("streaming", Lsn(200).encode()))
        assert isinstance(old.classify(info.value), ConflictError)
        new.apply([Begin("2", Lsn(190)), RowChange(Op.INSERT, t, None, (2,)), Commit("2", Lsn(200))])
        new.commit(Checkpoint("streaming", Lsn(200).encode()))
    finally:
        old.close()
        new.close()
    records = consume_all(kafka.bootstrap, [f"{connector.id}.public.t"])
    assert [value(r)["payload"]["after"]["id"] for r in records] == [1, 2]


def test_interrupted_snapshot_resumes_by_chunk_without_repeating_rows(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: RunWorker, tmp_path: Path
) -> None:
    """Killed once some chunks are committed: the next run copies only the others, and each row is read once."""
    rows = 300000
    source_db.psql(
        f"CREATE TABLE big (id int PRIMARY KEY, pad text); INSERT INTO big SELECT g, repeat('x', 50) "
        f"FROM generate_series(1, {rows}) g; ANALYZE big;"
    )
    spec = kafka_spec(source_db, kafka, limits={"snapshot": {"max_buffer_rows": 5000}})
    config = write_spec(tmp_path, spec)
    topic = f"{spec['id']}.public.big"
    worker = run_worker(config)
    deadline = time.monotonic() + 90
    while not consume_all(kafka.bootstrap, [topic], timeout=5):
        assert time.monotonic() < deadline, worker.output_tail()
    worker.kill()
    assert "chunks copied" not in worker.stderr_file.read_text(), "killed after the snapshot: make the table bigger"
    worker = run_worker(config)
    worker.wait_for_status(realtime, timeout=120)
    copied = [line for line in worker.stderr_file.read_text().splitlines() if "chunks copied" in line]
    assert copied, worker.output_tail()
    resumed_chunks = int(copied[0].split("snapshot: ")[1].split()[0])
    total_chunks = worker.last_status()["tables"]["public.big"]["chunks_total"]  # type: ignore[index]
    assert 0 < resumed_chunks < total_chunks
    records = consume_all(kafka.bootstrap, [topic], timeout=60, at_least=rows)
    ids = [value(r)["payload"]["after"]["id"] for r in records]
    assert len(ids) == rows and sorted(ids) == list(range(1, rows + 1))
    assert worker.stop() == 0


def test_tls_with_the_brokers_ca_and_refused_with_another(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: RunWorker, tmp_path: Path
) -> None:
    from sluice.devstack.pki import CertificateAuthority

    source_db.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);")
    spec = kafka_spec(
        source_db, kafka, auth={"protocol": "Ssl", "ssl_ca_pem": kafka.ca_pem}, brokers=[kafka.ssl_bootstrap]
    )
    worker = run_worker(write_spec(tmp_path, spec))
    worker.wait_for_status(realtime, timeout=90)
    assert len(wait_records(kafka, [f"{spec['id']}.public.t"], 1)) == 1
    assert worker.stop() == 0
    other = CertificateAuthority(tmp_path / "other-ca", common_name="unrelated").cert_pem.decode()
    spec = kafka_spec(source_db, kafka, auth={"protocol": "Ssl", "ssl_ca_pem": other}, brokers=[kafka.ssl_bootstrap])
    last = _final_status(run_worker(write_spec(tmp_path, spec)))
    assert "ssl_ca_pem" in last["last_error"]["fix"], last["last_error"]
