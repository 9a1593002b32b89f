"""The Kafka sink: each table's changes as Debezium (or native) events on its own topic, keyed by primary key.

Delivery, by ``connection.config.transactions.enabled``:

- **exactly once** (transactions on): one transactional producer (``transactional.id``, default
  ``sluice-<connector id>``). The flow's batch — whole source transactions — is produced inside one Kafka
  transaction together with the connector's checkpoint record (:mod:`.checkpoints`), and :meth:`KafkaSink.commit`
  commits both at once. A restart first initializes the same transactional id, which aborts whatever the previous
  run left open and fences it (a zombie worker can no longer commit), then reads the checkpoint ``read_committed``
  and resumes there. Consumers reading ``read_committed`` see each source change exactly once, in commit order per
  key. A snapshot chunk's rows and its done mark are one Kafka transaction too (chunks take turns on the producer).
- **at least once** (transactions off): an idempotent producer (no duplicates from its own retries); the
  checkpoint record is written after every message of the batch was acknowledged, so a crash in between repeats
  that batch (status says ``at-least-once``).

Keys are the row's key columns (Debezium's key struct), so every change of one row lands in the same partition
(Java's murmur2 partitioner, as Kafka Connect would pick) and stays in order; keyless tables have null keys.
Snapshot rows are ``op: r``; a truncate is one ``op: t`` event per table (null key); with
``tombstones_on_delete`` a delete is followed by a tombstone; with ``emit_tx_metadata`` BEGIN/END events go to
``<prefix>.transaction`` and each event carries its ``transaction`` block.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from sluice.errors import SluiceError
from sluice.models import Connector
from sluice.models.sinks import KafkaSink as KafkaSinkModel
from sluice.worker.checkpoints import Checkpoint
from sluice.worker.encoders import DebeziumEncoder, NativeEncoder, TxContext, dumps, dumps_bytes
from sluice.worker.events import Begin, Change, Commit, Op, RowChange, SchemaChange, TableSchema, Truncate
from sluice.worker.positions import Lsn, Position
from sluice.worker.sinks.base import DeliveryGuarantee, Sink, SnapshotWriter
from sluice.worker.sinks.kafka import checkpoints as cp_log
from sluice.worker.sinks.kafka.errors import KafkaSinkError, classify
from sluice.worker.sinks.kafka.settings import client_settings, producer_settings, transactional_id
from sluice.worker.sinks.kafka.topics import TopicNamer, checkpoint_topic, ensure_topics
from sluice.worker.sources.base import Check, SnapshotChunk

__all__ = ["KafkaAtLeastOnceSink", "KafkaSink"]

log = logging.getLogger(__name__)

#: how long one blocking Kafka call (init, commit, flush) may take before it is a transient failure
_CALL_TIMEOUT_S = 60.0
#: how long listing or creating topics may take (an unreachable cluster fails an attempt after this)
_ADMIN_TIMEOUT_S = 15.0

Message = tuple[str, bytes | None, bytes | None]


def _now_us() -> int:
    return time.time_ns() // 1000


def _position(text: str | None) -> Position | None:
    """A stored position as the encoders want it (the LSN of a PostgreSQL source; others stay opaque)."""
    if text and text.startswith(f"{Lsn.scheme}:"):
        try:
            return Lsn.decode(text)
        except ValueError:
            return None
    return None


class KafkaSink(Sink):
    """See the module docstring. ``KafkaSink(connector)`` gives a :class:`KafkaAtLeastOnceSink` when transactions
    are off, so the class says the guarantee the connector actually gets."""

    kind = "kafka"
    guarantee = DeliveryGuarantee.EXACTLY_ONCE
    #: the flow hands Begin/Commit events to :meth:`apply` (the encoders need each change's transaction)
    transaction_events = True

    def __new__(cls, connector: Connector) -> KafkaSink:
        if cls is KafkaSink and transactional_id(connector.sink.config, connector.id) is None:
            return super().__new__(KafkaAtLeastOnceSink)
        return super().__new__(cls)

    def __init__(self, connector: Connector) -> None:
        super().__init__(connector)
        model: KafkaSinkModel = connector.sink.config
        self.model = model
        self.cid = connector.id
        # Connector ids are unique per namespace only: in a pod the namespace joins them in Kafka's names.
        namespace = os.environ.get("SLUICE_CONNECTOR_NAMESPACE")
        self.scope = f"{namespace}.{connector.id}" if namespace else connector.id
        self.checkpoint_topic = checkpoint_topic(self.scope)
        #: librdkafka settings; they hold secrets: never log them (settings.redacted gives a loggable copy)
        self.settings = producer_settings(model, self.scope)
        self.client = client_settings(model)
        self.txid = transactional_id(model, connector.id)
        self.namer = TopicNamer(model.topic_name_template, connector.id)
        options = model.topic_options
        self.partitions = options.partitions if options is not None else 1
        self.replication_factor = options.replication_factor if options is not None else 1
        fmt = model.format
        self.debezium = fmt.debezium
        source_conn = getattr(connector.source.config, "connection", None)
        database = str(getattr(source_conn, "database", "") or "")
        self.encoder: DebeziumEncoder | None = None
        self.native: NativeEncoder | None = None
        if fmt.debezium is not None:
            self.encoder = DebeziumEncoder(
                connector=connector.id,
                source_kind=connector.source.kind,
                database=database,
                include_before=fmt.debezium.include_before,
                emit_tx_metadata=fmt.debezium.emit_tx_metadata,
                schemas_enable=fmt.debezium.schemas_enable,
            )
            self.tombstones = fmt.debezium.tombstones_on_delete
            self.tx_metadata = fmt.debezium.emit_tx_metadata
        else:
            include_before = getattr(fmt.native, "include_before", True)
            self.native = NativeEncoder(include_before=bool(include_before))
            self.tombstones = False
            self.tx_metadata = False
        self.schemas: dict[str, TableSchema] = {}
        self.topics: dict[str, str] = {}
        self._producer: Producer | None = None
        self._admin: AdminClient | None = None
        self._state: cp_log.State | None = None
        self._in_tx = False
        self._tx_lock = threading.Lock()  # snapshot writers take turns on the one (transactional) producer
        self._state_lock = threading.Lock()
        self._delivery_error: KafkaError | None = None
        self._client_error: KafkaError | None = None
        # the source transaction being encoded
        self._tx: TxContext | None = None
        self._tx_order = 0
        self._tx_counts: Counter[str] = Counter()
        self._snapshot_tx: TxContext | None = None

    # ------------------------------------------------------------------ clients

    def _on_client_error(self, err: KafkaError) -> None:
        # Authentication failures and fatal errors are raised at the next blocking call; brokers down is left to
        # the call's own timeout (librdkafka keeps reconnecting meanwhile).
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL) or (
            err.fatal()
        ):
            self._client_error = err
        else:
            log.debug("kafka client: %s", err.str())

    def _on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None and self._delivery_error is None:
            self._delivery_error = err

    def _raise_pending(self, what: str) -> None:
        # Error callbacks run only when a client is polled.
        for client in (self._admin, self._producer):
            if client is not None:
                client.poll(0)
        err = self._client_error
        if err is not None:
            raise KafkaSinkError(err, what)

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            conf: dict[str, Any] = {**self.client, "error_cb": self._on_client_error}
            self._admin = AdminClient(conf)
        return self._admin

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            conf: dict[str, Any] = {**self.settings, "partitioner": "murmur2_random", "error_cb": self._on_client_error}
            producer = Producer(conf)
            if self.txid is not None:
                self._call(lambda: producer.init_transactions(_CALL_TIMEOUT_S), "initializing transactions")
            self._producer = producer
        return self._producer

    def _call(self, fn: Callable[[], Any], what: str) -> Any:
        try:
            return fn()
        except KafkaException as exc:
            self._raise_pending(what)
            raise KafkaSinkError(exc.args[0], what) from exc

    def classify(self, exc: BaseException) -> SluiceError | None:
        return classify(exc)

    # ------------------------------------------------------------------ checks, topics

    def checks(self) -> list[Check]:
        field = ("sink", "kafka", "connection", "brokers")
        try:
            try:
                md = self.admin.list_topics(timeout=_ADMIN_TIMEOUT_S)
            finally:
                self._raise_pending("connecting")  # an authentication failure says more than a timeout
        except (KafkaException, KafkaSinkError) as exc:
            classified = classify(exc)
            message = classified.message if classified is not None else str(exc)
            fix = classified.fix if classified is not None else ""
            return [Check("kafka connection", False, message, fix, field)]
        return [Check("kafka connection", True, f"{len(md.brokers)} broker(s) reachable", "", field)]

    def _topic(self, schema: TableSchema) -> str:
        label = schema.table.label
        topic = self.topics.get(label)
        if topic is None:
            topic = self.topics[label] = self.namer.topic(schema.table)
        return topic

    def prepare(self, tables: list[TableSchema]) -> None:
        for schema in tables:
            self.schemas[schema.table.label] = schema
            self._topic(schema)
        self._ensure(list(self.topics.values()) + ([self.namer.transaction_topic] if self.tx_metadata else []))
        self._ensure([self.checkpoint_topic], partitions=1, config=cp_log.TOPIC_CONFIG)
        self._raise_pending("creating topics")

    def _ensure(self, topics: list[str], **options: Any) -> None:
        settings: dict[str, Any] = {"partitions": self.partitions, "replication_factor": self.replication_factor}
        settings.update(options)
        try:
            ensure_topics(self.admin, topics, timeout=_ADMIN_TIMEOUT_S, **settings)
        except KafkaSinkError:
            self._raise_pending("creating topics")  # an authentication failure says more than its timeout
            raise

    # ------------------------------------------------------------------ checkpoint records

    def _state_now(self) -> cp_log.State:
        if self._state is None:
            _ = self.producer  # initializing the transactional id first aborts what a previous run left open
            self._state = cp_log.read_state(self.client, self.checkpoint_topic, self.cid)
        return self._state

    def _record(self, key: str, value: str | None) -> Message:
        return (self.checkpoint_topic, key.encode(), None if value is None else value.encode())

    def _checkpoint_records(self, checkpoint: Checkpoint) -> list[Message]:
        plain = Checkpoint(checkpoint.phase, checkpoint.position, checkpoint.snapshot_position)
        return [self._record(self.cid, plain.to_json())]

    def load_checkpoint(self) -> Checkpoint | None:
        return self._state_now().with_done()

    def load_plan(self) -> list[SnapshotChunk]:
        return self._state_now().chunks()

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._tx_lock:
            self._write(self._checkpoint_records(checkpoint))
        state = self._state_now()
        state.checkpoint = checkpoint

    def start_snapshot(self, checkpoint: Checkpoint, chunks: list[SnapshotChunk], tables: list[TableSchema]) -> None:
        # Kafka keeps what it has (a new snapshot appends ``r`` events, as Debezium does); the plan replaces the
        # old one and the chunk marks of chunks being copied again are dropped, with the checkpoint, at once.
        state = self._state_now()
        copying = {(c.table, c.index) for c in chunks if not c.done}
        records = [self._record(cp_log.chunk_key(self.cid, t, i), None) for t, i in sorted(state.done & copying)]
        plan = [{"table": c.table, "index": c.index, "bounds": c.bounds} for c in chunks]
        records.append(self._record(cp_log.plan_key(self.cid), dumps(plan)))
        records.extend(self._checkpoint_records(checkpoint))
        with self._tx_lock:
            self._write(records)
        state.plan = plan
        state.done -= copying
        state.checkpoint = checkpoint
        # source.ts_ms of snapshot rows: when the snapshot started (Debezium: when the row was read)
        self._snapshot_tx = TxContext(None, _position(checkpoint.snapshot_position), datetime.now(UTC), snapshot=True)

    def reset(self) -> None:
        state = self._state_now()
        with self._tx_lock:
            self._write([self._record(k, None) for k in sorted(state.keys | {self.cid})])
        self._state = cp_log.State()

    # ------------------------------------------------------------------ producing

    def _produce(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        producer = self.producer
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=self._on_delivery)
                break
            except BufferError:
                producer.poll(0.1)  # the local queue is full: let deliveries drain it
                self._raise_pending(f"producing to {topic}")
            except KafkaException as exc:
                raise KafkaSinkError(exc.args[0], f"producing to {topic}") from exc
        producer.poll(0)

    def _begin(self) -> None:
        if self.txid is not None and not self._in_tx:
            producer = self.producer
            self._call(producer.begin_transaction, "beginning a transaction")
            self._in_tx = True

    def _commit_tx(self, what: str) -> None:
        """Commit the open transaction (transactions), or wait until every message is acknowledged (without)."""
        producer = self.producer
        if self.txid is not None:
            if not self._in_tx:
                return
            try:
                producer.commit_transaction(_CALL_TIMEOUT_S)
            except KafkaException as exc:
                self._raise_pending(what)
                raise KafkaSinkError(exc.args[0], what) from exc
            finally:
                self._in_tx = False
            return
        deadline = time.monotonic() + _CALL_TIMEOUT_S
        while producer.flush(1.0) > 0:
            self._raise_pending(what)
            if time.monotonic() > deadline:
                raise KafkaSinkError(
                    KafkaError(KafkaError._MSG_TIMED_OUT, f"messages not acknowledged in {_CALL_TIMEOUT_S:.0f}s"),
                    what,
                )
        err, self._delivery_error = self._delivery_error, None
        if err is not None:
            raise KafkaSinkError(err, what)

    def _write(self, records: list[Message]) -> None:
        """Records on their own, made durable (one transaction, or acknowledged)."""
        self._begin()
        for topic, key, value in records:
            self._produce(topic, key, value)
        self._commit_tx("writing the checkpoint")

    def _abort_tx(self) -> None:
        producer = self._producer
        if producer is None:
            return
        if self.txid is not None and self._in_tx:
            try:
                producer.abort_transaction(_CALL_TIMEOUT_S)
            except KafkaException as exc:
                log.warning("aborting the Kafka transaction failed (the next run's start aborts it): %s", exc)
            self._in_tx = False
        elif self.txid is None:
            producer.purge()
            producer.flush(0)
            self._delivery_error = None

    # ------------------------------------------------------------------ encoding

    def _row_messages(self, schema: TableSchema, change: RowChange, tx: TxContext) -> list[Message]:
        if (
            change.op == Op.UPDATE
            and schema.key
            and change.before is not None
            and change.after is not None
            and schema.key_of(change.before) != schema.key_of(change.after)
        ):
            # A key change, as Debezium emits it: a delete of the old key (with its tombstone) and a create of the
            # new one, so each key's partition holds that key's whole story.
            delete = RowChange(Op.DELETE, change.table, change.before, None)
            create = RowChange(Op.INSERT, change.table, None, change.after, change.unchanged)
            return self._row_messages(schema, delete, tx) + self._row_messages(schema, create, tx)
        topic = self._topic(schema)
        if self.encoder is not None:
            label = schema.table.label
            self._tx_order += 1
            self._tx_counts[label] += 1
            record = self.encoder.change(
                schema,
                change,
                tx,
                ts_us=_now_us(),
                total_order=self._tx_order,
                collection_order=self._tx_counts[label],
            )
            key = None if record.key is None else self.encoder.key_json(record).encode()
            out: list[Message] = [(topic, key, self.encoder.value_json(record).encode())]
            if self.tombstones and change.op == Op.DELETE:
                tomb = self.encoder.tombstone(record)
                if tomb is not None:
                    out.append((topic, key, None))
            return out
        assert self.native is not None
        event = self.native.change(schema, change, tx)
        nkey = dumps_bytes(event["key"]) if "key" in event else None
        return [(topic, nkey, dumps_bytes(event))]

    def _truncate_messages(self, schema: TableSchema, tx: TxContext) -> list[Message]:
        topic = self._topic(schema)
        if self.encoder is not None:
            label = schema.table.label
            self._tx_order += 1
            self._tx_counts[label] += 1
            record = self.encoder.truncate(
                schema, tx, ts_us=_now_us(), total_order=self._tx_order, collection_order=self._tx_counts[label]
            )
            return [(topic, None, self.encoder.value_json(record).encode())]
        assert self.native is not None
        return [(topic, None, dumps_bytes(self.native.truncate(schema, tx)))]

    # ------------------------------------------------------------------ snapshot

    def snapshot_writer(self, *, upsert: bool) -> SnapshotWriter:
        return KafkaSnapshotWriter(self)

    def _snapshot_context(self) -> TxContext:
        if self._snapshot_tx is None:
            state = self._state_now()
            where = state.checkpoint.snapshot_position if state.checkpoint is not None else None
            self._snapshot_tx = TxContext(None, _position(where), datetime.now(UTC), snapshot=True)
        return self._snapshot_tx

    def _snapshot_rows(self, chunk: SnapshotChunk, rows: list[tuple[Any, ...]]) -> None:
        schema = self.schemas[chunk.table]
        tx = self._snapshot_context()
        for row in rows:
            change = RowChange(Op.READ, schema.table, None, tuple(row))
            for topic, key, value in self._row_messages(schema, change, tx):
                self._produce(topic, key, value)

    def _chunk_done(self, chunk: SnapshotChunk) -> None:
        if self.txid is None:
            # Without transactions the chunk's rows must be acknowledged before its done mark is written: the mark
            # lives in another partition, which could be acknowledged while a row is refused.
            self._commit_tx(f"delivering snapshot chunk {chunk.table}#{chunk.index}")
        self._produce(*self._record(cp_log.chunk_key(self.cid, chunk.table, chunk.index), "done"))
        self._commit_tx(f"committing snapshot chunk {chunk.table}#{chunk.index}")
        state = self._state_now()
        with self._state_lock:
            state.done.add((chunk.table, chunk.index))

    # ------------------------------------------------------------------ changes

    def apply(self, changes: Sequence[Change | Begin | Commit]) -> None:
        self._raise_pending("producing")
        self._begin()
        for change in changes:
            if isinstance(change, RowChange):
                schema = self.schemas.get(change.table.label)
                if schema is None:
                    log.warning("change of %s, a table the sink was not told about; ignored", change.table.label)
                    continue
                for message in self._row_messages(schema, change, self._tx or TxContext(None, None)):
                    self._produce(*message)
            elif isinstance(change, Begin):
                self._tx = TxContext(change.xid, change.position, change.commit_time)
                self._tx_order = 0
                self._tx_counts = Counter()
                if self.tx_metadata and self.encoder is not None:
                    record = self.encoder.begin(self._tx)
                    self._produce(
                        self.namer.transaction_topic,
                        self.encoder.key_json(record).encode(),
                        self.encoder.value_json(record).encode(),
                    )
            elif isinstance(change, Commit):
                tx = self._tx or TxContext(change.xid, change.position, change.commit_time)
                if tx.position is None:
                    tx = TxContext(tx.xid, change.position, tx.commit_time or change.commit_time)
                if self.tx_metadata and self.encoder is not None:
                    counts = {label: n for label, n in self._tx_counts.items()}
                    record = self.encoder.end(tx, counts)
                    self._produce(
                        self.namer.transaction_topic,
                        self.encoder.key_json(record).encode(),
                        self.encoder.value_json(record).encode(),
                    )
                self._tx = None
            elif isinstance(change, Truncate):
                for table in change.tables:
                    schema = self.schemas.get(table.label)
                    if schema is None:
                        log.warning("truncate of %s, a table the sink does not replicate; ignored", table.label)
                        continue
                    for message in self._truncate_messages(schema, self._tx or TxContext(None, None)):
                        self._produce(*message)
            elif isinstance(change, SchemaChange):
                label = change.schema.table.label
                new = label not in self.schemas
                self.schemas[label] = change.schema
                if new:
                    self._ensure([self._topic(change.schema)])  # a table appeared: its topic, before its rows

    def abort(self) -> None:
        self._abort_tx()
        self._tx = None

    def commit(self, checkpoint: Checkpoint) -> None:
        self._begin()
        if self.txid is None:
            # Without transactions: the batch acknowledged first, then its checkpoint (see _chunk_done).
            self._commit_tx("delivering a batch")
        for message in self._checkpoint_records(checkpoint):
            self._produce(*message)
        self._commit_tx("committing a batch")
        if self._state is not None:
            self._state.checkpoint = checkpoint

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            if self.txid is not None and self._in_tx:
                try:
                    producer.abort_transaction(5)
                except KafkaException as exc:
                    log.debug("abort on close: %s", exc)
                self._in_tx = False
            producer.purge()
            producer.flush(0)
        self._admin = None


class KafkaAtLeastOnceSink(KafkaSink):
    """Transactions off: an idempotent producer; the checkpoint is written once the batch was acknowledged."""

    guarantee = DeliveryGuarantee.AT_LEAST_ONCE


class KafkaSnapshotWriter(SnapshotWriter):
    """Copies chunks through the sink's producer: a chunk's rows and its done mark in one transaction (chunks
    take turns), or acknowledged before the mark (without transactions)."""

    def __init__(self, sink: KafkaSink) -> None:
        self.sink = sink
        self.holding = False

    def _hold(self) -> None:
        if not self.holding:
            self.sink._tx_lock.acquire()
            self.holding = True
            try:
                self.sink._begin()
            except BaseException:
                self._release()
                raise

    def _release(self) -> None:
        if self.holding:
            self.holding = False
            self.sink._tx_lock.release()

    def write(self, chunk: SnapshotChunk, rows: list[tuple[Any, ...]]) -> None:
        self._hold()
        self.sink._snapshot_rows(chunk, rows)

    def done(self, chunk: SnapshotChunk, rows: int) -> None:
        self._hold()
        try:
            self.sink._chunk_done(chunk)
        finally:
            self._release()

    def abort(self) -> None:
        if self.holding:
            try:
                self.sink._abort_tx()
            finally:
                self._release()

    def close(self) -> None:
        self.abort()
