"""The webhook sink: change events POSTed to an HTTP endpoint, at least once, with a stable idempotency key.

Each request is a JSON array of events (:mod:`sluice.worker.encoders`: ``native`` by default, or the Debezium
envelope as Kafka Connect's ``JsonConverter`` writes it with its schema), of one table and one source transaction,
cut as :mod:`.batching` describes, to ``url`` + ``path_template`` (``{schema}``, ``{table}``). Headers:

- ``Idempotency-Key``: stable across retries and restarts (:func:`.batching.idempotency_key`);
- ``Content-Type: application/json``, ``Content-Encoding`` when compressed (``gzip``, ``zstd``, ``br``);
- ``X-Sluice-Connector``, ``X-Sluice-Table`` (``schema.table``), ``X-Sluice-Position`` (the transaction's
  position, or the snapshot chunk), ``X-Sluice-Events`` (events in the body), ``X-Sluice-First-Event`` (the first
  event's place in the transaction);
- the ``auth`` header (bearer, basic or a named header), never logged.

Delivery: requests go out in order from one sender thread while the next ones are encoded. The position advances
only after every request of the transactions it covers answered 2xx: :meth:`WebhookSink.commit` waits for them and
then saves the checkpoint in the connector's store (a ConfigMap in Kubernetes, a file elsewhere). A crash in between
sends those requests again with the same keys — :attr:`DeliveryGuarantee.AT_LEAST_ONCE_KEYED`.

Snapshot rows are ``op: r`` events; each chunk's requests are keyed by the chunk, and the chunk is marked done in the
checkpoint once they all answered 2xx. The checkpoint's ``done_chunks`` also keeps the plan (entries ``plan <json>``)
so an interrupted snapshot resumes chunk by chunk.

With the Debezium format, ``emit_tx_metadata`` sends each transaction's BEGIN and END events as requests of their
own to ``url`` (no path template) with ``X-Sluice-Table: transaction``. Tombstones are a Kafka log compaction
device and are not sent.

TLS: the receiver's certificate and host name are verified against the system's trust store plus
``ssl_root_cert`` (a private CA, PEM); ``ssl_verify: false`` turns verification off (tests only; logged as a
warning). A refused certificate stops the connector with the reason and the fix, unadvanced: it is not retried.

Stopping: :meth:`WebhookSink.stop` (the engine calls it on SIGTERM) cuts a retry back-off short, so a receiver that
keeps failing does not hold the worker past its grace period; the requests not acknowledged are sent again, with the
same keys, by the next run.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

from sluice import __version__
from sluice.errors import ConfigError, SluiceError
from sluice.models import Connector
from sluice.models.sinks import WebhookCompression
from sluice.models.sinks import WebhookSink as WebhookSinkModel
from sluice.worker.checkpoints import Checkpoint, CheckpointStore
from sluice.worker.checkpoints.store import default_store
from sluice.worker.encoders import DebeziumEncoder, NativeEncoder, TxContext
from sluice.worker.encoders.debezium import dumps, epoch_micros
from sluice.worker.events import Begin, Change, Commit, Op, RowChange, SchemaChange, TableSchema, Truncate
from sluice.worker.positions import Lsn, Position
from sluice.worker.sinks.base import DeliveryGuarantee, Sink, SnapshotWriter
from sluice.worker.sinks.webhook.batching import Batcher, Request
from sluice.worker.sinks.webhook.client import (
    CA_FIELD,
    RateLimiter,
    RetryPolicy,
    WebhookClient,
    safe_url,
    tls_error,
    tls_failure,
    verify_context,
)
from sluice.worker.sources.base import Check, SnapshotChunk

__all__ = ["WebhookSink"]

log = logging.getLogger(__name__)

_PLAN = "plan "
_SNAPSHOT_ID = "snapshot-id "
#: requests encoded ahead of the one being sent
_QUEUE_DEPTH = 4


class _TextPosition(Position):
    """A position known only by its encoded text (the sink never parses positions)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def encode(self) -> str:
        return self.text

    def __lt__(self, other: Any) -> bool:
        return NotImplemented

    def __str__(self) -> str:
        return self.text


def _position(text: str | None) -> Position | None:
    if not text:
        return None
    if text.startswith(f"{Lsn.scheme}:"):
        try:
            return Lsn.decode(text)
        except ValueError:
            pass
    return _TextPosition(text)


def _compressor(kind: WebhookCompression) -> tuple[str | None, Callable[[bytes], bytes]]:
    if kind == WebhookCompression.GZIP:
        return "gzip", lambda b: gzip.compress(b, compresslevel=5, mtime=0)
    if kind == WebhookCompression.ZSTD:
        import zstandard

        compressor = zstandard.ZstdCompressor(level=3)
        lock = threading.Lock()

        def zstd(b: bytes) -> bytes:
            with lock:
                return compressor.compress(b)

        return "zstd", zstd
    if kind == WebhookCompression.BR:
        import brotli  # type: ignore[import-untyped]

        return "br", lambda b: bytes(brotli.compress(b, quality=4))
    return None, lambda b: b


def _auth_headers(model: WebhookSinkModel) -> dict[str, str]:
    auth = model.auth
    if auth is None:
        return {}
    import base64

    if auth.bearer is not None:
        if auth.bearer.token is None:
            raise ConfigError(
                "sink.webhook.auth.bearer: no token",
                fix="Set sink.webhook.auth.bearer.token_secret_ref (or token).",
            )
        return {"Authorization": f"Bearer {auth.bearer.token.get_secret_value()}"}
    if auth.basic is not None:
        if auth.basic.password is None:
            raise ConfigError(
                "sink.webhook.auth.basic: no password",
                fix="Set sink.webhook.auth.basic.password_secret_ref (or password).",
            )
        pair = f"{auth.basic.username}:{auth.basic.password.get_secret_value()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if auth.header is not None:
        if auth.header.value is None:
            raise ConfigError(
                "sink.webhook.auth.header: no value",
                fix="Set sink.webhook.auth.header.value_secret_ref (or value).",
            )
        return {auth.header.name: auth.header.value.get_secret_value()}
    return {}


@dataclass
class _Failure:
    error: BaseException


class _Sender:
    """Sends requests in order from one thread; the caller waits on :meth:`drain`. Errors surface on the next call."""

    def __init__(self, send: Callable[[Request], None]) -> None:
        self._send = send
        self._queue: queue.Queue[Request | None] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._failure: _Failure | None = None
        self._idle = threading.Condition()
        self._outstanding = 0
        self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                return
            try:
                if self._failure is None:
                    self._send(request)
            except BaseException as exc:
                self._failure = _Failure(exc)
            finally:
                with self._idle:
                    self._outstanding -= 1
                    self._idle.notify_all()

    def _raise(self) -> None:
        if self._failure is not None:
            raise self._failure.error

    def put(self, request: Request) -> None:
        self._raise()
        with self._idle:
            self._outstanding += 1
        self._queue.put(request)

    def drain(self) -> None:
        """Wait until every request put so far answered 2xx (raises the first failure)."""
        with self._idle:
            while self._outstanding:
                self._idle.wait(0.5)
        self._raise()

    def reset(self) -> None:
        """Abandon what is queued (the requests are sent again later, with the same keys) and clear any failure."""
        if self._failure is None:
            self._failure = _Failure(RuntimeError("abandoned"))  # makes the thread skip what is queued
        self.drain_quietly()
        self._failure = None

    def drain_quietly(self) -> None:
        with self._idle:
            while self._outstanding:
                self._idle.wait(0.5)

    def close(self) -> None:
        """Stop the thread without waiting for a request that is still being retried (it is sent again later)."""
        if self._failure is None:
            self._failure = _Failure(RuntimeError("closed"))
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1)
        self._thread.join(timeout=2)


class WebhookSink(Sink):
    """POSTs change events to ``sink.webhook.url`` (see the module docstring)."""

    kind: ClassVar[str] = "webhook"
    guarantee: ClassVar[DeliveryGuarantee] = DeliveryGuarantee.AT_LEAST_ONCE_KEYED
    #: the general flow passes Begin/Commit in apply(): the keys are scoped by source transaction
    transaction_events: ClassVar[bool] = True

    def __init__(self, connector: Connector, store: CheckpointStore | None = None) -> None:
        super().__init__(connector)
        model = connector.sink.webhook
        if model is None:
            raise ConfigError("sink.webhook is missing", fix="Give the connector a sink.webhook block.")
        self.model = model
        self.url = model.url
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(
                f"sink.webhook.url must start with http:// or https:// (got {safe_url(self.url)!r})",
                fix="Give the receiver's full URL, e.g. https://hooks.example.com/cdc.",
            )
        self._store = store
        # built now: a CA that cannot be loaded refuses the spec before the run starts (and in validate)
        self.verify = verify_context(model.ssl_root_cert, verify=model.ssl_verify)
        if not model.ssl_verify and self.url.startswith("https://"):
            log.warning("sink.webhook.ssl_verify is false: the receiver's certificate is not verified")
        #: set by stop() (and close()): a retry back-off ends at once
        self._stop = threading.Event()
        batch = model.batch
        self.max_events = batch.max_batch_size if batch else None
        self.max_bytes = batch.max_payload_bytes if batch else 1048576
        retry = model.retry
        self.retry = RetryPolicy(
            max_retries=retry.max_retries if retry else None,
            initial_backoff_s=(retry.initial_backoff_ms if retry else 1000) / 1000.0,
            max_backoff_s=(retry.max_backoff_ms if retry else 180000) / 1000.0,
            max_retry_duration_s=(retry.max_retry_duration_ms if retry else 3600000) / 1000.0,
        )
        rate = model.rate_limit
        self.limiter = RateLimiter(
            rate.max_requests_per_second if rate else None, rate.max_bytes_per_second if rate else None
        )
        self.encoding, self.compress = _compressor(model.compression)
        self.auth_headers = _auth_headers(model)
        fmt = model.format
        self.debezium: DebeziumEncoder | None = None
        self.native: NativeEncoder | None = None
        if fmt is not None and fmt.debezium is not None:
            d = fmt.debezium
            self.debezium = DebeziumEncoder(
                connector=connector.id,
                source_kind=connector.source.kind,
                database=_database(connector),
                include_before=d.include_before,
                emit_tx_metadata=d.emit_tx_metadata,
                schemas_enable=d.schemas_enable,
            )
        else:
            self.native = NativeEncoder()
        self.schemas: dict[str, TableSchema] = {}
        self._client: WebhookClient | None = None
        self._sender: _Sender | None = None
        self._checkpoint: Checkpoint | None = None
        #: the last commit position seen or stored: names a position-less transaction (see _scope)
        self._prev_commit: str | None = None
        #: the checkpoint's done_chunks: the snapshot's id, its plan and the chunks done (kept in every save)
        self._entries: list[str] = []
        self._snapshot_position: str | None = None
        self._lock = threading.Lock()
        # the open transaction
        self._tx: TxContext | None = None
        self._place = 0
        self._counts: dict[str, int] = {}
        self._batcher: Batcher | None = None
        self._urls: dict[str, str] = {}

    # -- plumbing ---------------------------------------------------------------------------------------------

    @property
    def store(self) -> CheckpointStore:
        if self._store is None:
            self._store = default_store(self.connector)
        return self._store

    @property
    def client(self) -> WebhookClient:
        if self._client is None:
            headers = {"User-Agent": f"sluice/{__version__}", **self.auth_headers}
            self._client = WebhookClient(
                verify=self.verify,
                timeout_s=self.model.request_timeout_ms / 1000.0,
                retry=self.retry,
                limiter=self.limiter,
                headers=headers,
                stop=self._stop,
            )
        return self._client

    def url_for(self, table: str) -> str:
        url = self._urls.get(table)
        if url is None:
            template = self.model.path_template
            if not template or table == "":
                url = self.url
            else:
                schema, _, name = table.partition(".")
                path = template.replace("{schema}", quote(schema, safe="")).replace("{table}", quote(name, safe=""))
                url = self.url.rstrip("/") + "/" + path.lstrip("/")
            self._urls[table] = url
        return url

    def send(self, request: Request) -> None:
        """POST one request until 2xx (in the calling thread)."""
        body = self.compress(request.body)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": request.key,
            "X-Sluice-Connector": self.connector.id,
            "X-Sluice-Table": request.table or "transaction",
            "X-Sluice-Position": request.scope,
            "X-Sluice-Events": str(request.count),
            "X-Sluice-First-Event": str(request.first),
        }
        if self.encoding:
            headers["Content-Encoding"] = self.encoding
        self.client.post(request.url, body, headers)

    @property
    def sender(self) -> _Sender:
        if self._sender is None:
            self._sender = _Sender(self.send)
        return self._sender

    def _new_batcher(self, emit: Callable[[Request], None]) -> Batcher:
        return Batcher(self.connector.id, max_events=self.max_events, max_bytes=self.max_bytes, emit=emit)

    def _encode(self, schema: TableSchema, change: RowChange, tx: TxContext, total: int, per_table: int) -> bytes:
        if self.debezium is not None:
            return self.debezium.change_json(
                schema,
                change,
                tx,
                ts_us=epoch_micros(datetime.now(UTC)),
                total_order=total,
                collection_order=per_table,
            ).encode()
        assert self.native is not None
        return self.native.change_json(schema, change, tx)

    def _encode_truncate(self, schema: TableSchema, tx: TxContext, total: int, per_table: int) -> bytes:
        if self.debezium is not None:
            rec = self.debezium.truncate(
                schema, tx, ts_us=epoch_micros(datetime.now(UTC)), total_order=total, collection_order=per_table
            )
            return self.debezium.value_json(rec).encode()
        assert self.native is not None
        return dumps(self.native.truncate(schema, tx)).encode()

    def _schema(self, label: str) -> TableSchema:
        schema = self.schemas.get(label)
        if schema is None:
            raise SluiceError(
                f"the webhook sink got a change of {label}, which the source never described",
                fix="This is a bug; please report it with the worker log.",
            )
        return schema

    # -- Sink ---------------------------------------------------------------------------------------------------

    def classify(self, exc: BaseException) -> SluiceError | None:
        return exc if isinstance(exc, SluiceError) else None

    def checks(self) -> list[Check]:
        import httpx

        where = safe_url(self.url)
        try:
            with httpx.Client(
                verify=self.verify,
                timeout=self.model.request_timeout_ms / 1000.0,
                headers=self.auth_headers,
                trust_env=False,
            ) as client:
                response = client.request("HEAD", self.url)
        except httpx.HTTPError as exc:
            failure = tls_failure(exc)
            if failure is not None:
                err = tls_error(where, failure)
                return [Check("webhook TLS", False, err.message, fix=err.fix, field=CA_FIELD)]
            return [
                Check(
                    "webhook reachable",
                    False,
                    f"cannot reach {where}: {type(exc).__name__}",
                    fix="Check sink.webhook.url and the network path to the receiver.",
                    field=("sink", "webhook", "url"),
                )
            ]
        checks = [Check("webhook reachable", True, f"{where} answered HTTP {response.status_code}")]
        if self.url.startswith("https://"):
            if self.verify is False:
                tls = Check("webhook TLS", True, f"the certificate of {where} is not verified (ssl_verify is false)")
            else:
                trusted = "the system's trust store" + (" and ssl_root_cert" if self.model.ssl_root_cert else "")
                tls = Check("webhook TLS", True, f"the certificate of {where} is trusted by {trusted}")
            checks.append(tls)
        if response.status_code in (401, 403):
            checks.append(
                Check(
                    "webhook authentication",
                    False,
                    f"{where} answered HTTP {response.status_code} to the configured credential",
                    fix="Check sink.webhook.auth (the credential, or the Secret key its *_secret_ref names).",
                    field=("sink", "webhook", "auth"),
                )
            )
        return checks

    def prepare(self, tables: list[TableSchema]) -> None:
        for t in tables:
            self.schemas[t.table.label] = t

    def load_checkpoint(self) -> Checkpoint | None:
        cp = self.store.load()
        self._remember(cp)
        return cp

    def _remember(self, cp: Checkpoint | None) -> None:
        self._prev_commit = cp.position if cp is not None else None
        self._checkpoint = cp
        self._entries = list(cp.done_chunks) if cp is not None else []
        self._snapshot_position = cp.snapshot_position if cp is not None else None

    def _save(self, cp: Checkpoint) -> None:
        """Store ``cp`` with the snapshot plan, its done marks and the snapshot's position (they outlive it)."""
        if cp.position is not None:
            self._prev_commit = cp.position
        if cp.snapshot_position:
            self._snapshot_position = cp.snapshot_position
        full = Checkpoint(cp.phase, cp.position, self._snapshot_position, list(self._entries))
        self.store.save(full)
        self._checkpoint = full

    def start_snapshot(self, checkpoint: Checkpoint, chunks: list[SnapshotChunk], tables: list[TableSchema]) -> None:
        with self._lock:
            fresh = checkpoint.phase != "streaming"
            ident = None if fresh else next((e for e in self._entries if e.startswith(_SNAPSHOT_ID)), None)
            done = set() if fresh else {e for e in self._entries if not e.startswith((_PLAN, _SNAPSHOT_ID))}
            entries = [ident or _SNAPSHOT_ID + uuid.uuid4().hex]
            for c in chunks:
                bounds = json.dumps({"t": c.table, "i": c.index, "b": c.bounds}, sort_keys=True, separators=(",", ":"))
                entries.append(_PLAN + bounds)
                if c.done:
                    done.add(f"{c.table}#{c.index}")
            self._entries = entries + sorted(done)
            if fresh:
                self._snapshot_position = checkpoint.snapshot_position
            self._save(checkpoint)

    def load_plan(self) -> list[SnapshotChunk]:
        if self._checkpoint is None:
            self._remember(self.store.load())
        done = {e for e in self._entries if not e.startswith((_PLAN, _SNAPSHOT_ID))}
        plan = []
        for e in self._entries:
            if e.startswith(_PLAN):
                data = json.loads(e[len(_PLAN) :])
                label, index = str(data["t"]), int(data["i"])
                plan.append(SnapshotChunk(label, index, dict(data["b"]), f"{label}#{index}" in done))
        return plan

    def _snapshot_scope(self) -> str:
        ident = next((e[len(_SNAPSHOT_ID) :] for e in self._entries if e.startswith(_SNAPSHOT_ID)), "")
        return f"snapshot:{ident or self._snapshot_position or ''}"

    def snapshot_writer(self, *, upsert: bool) -> SnapshotWriter:
        return _Writer(self)

    def chunk_done(self, chunk: SnapshotChunk) -> None:
        with self._lock:
            mark = f"{chunk.table}#{chunk.index}"
            if mark not in self._entries:
                self._entries.append(mark)
            self._save(self._checkpoint or Checkpoint("snapshot"))

    # -- streaming ----------------------------------------------------------------------------------------------

    def begin_transaction(self, begin: Begin) -> None:
        """The flow's transaction boundary: the events that follow belong to this transaction."""
        self._finish_open()
        self._tx = TxContext(xid=begin.xid, position=begin.position, commit_time=begin.commit_time)
        self._place = 0
        self._counts = {}
        scope = self._scope(begin.position)
        if self._batcher is None:
            self._batcher = self._new_batcher(self.sender.put)
        self._batcher.start(scope)
        if self.debezium is not None and self.debezium.emit_tx_metadata:
            rec = self.debezium.begin(self._tx)
            self._metadata(scope + "|BEGIN", self.debezium.value_json(rec).encode())

    def end_transaction(self, commit: Commit) -> None:
        """The transaction's events are all applied: its last request goes out."""
        if self._batcher is not None:
            self._batcher.flush()
        tx = self._tx
        if tx is not None and self.debezium is not None and self.debezium.emit_tx_metadata:
            if tx.commit_time is None and commit.commit_time is not None:
                tx = TxContext(tx.xid, tx.position, commit.commit_time)
            rec = self.debezium.end(tx, dict(self._counts))
            self._metadata(self._scope(tx.position) + "|END", self.debezium.value_json(rec).encode())
        self._tx = None
        self._prev_commit = commit.position.encode()

    def _scope(self, position: Position | None) -> str:
        """What names a transaction in its idempotency keys, the same after a restart.

        Its own position when the source announces it (PostgreSQL); otherwise (MySQL: a transaction's position is
        known at its commit) the commit position of the transaction before it — every transaction follows exactly
        one, and a restart resumes right after the stored one.
        """
        if position is not None:
            return position.encode()
        return f"after:{self._prev_commit}"

    def _metadata(self, scope: str, event: bytes) -> None:
        batcher = self._new_batcher(self.sender.put)
        batcher.start(scope)
        batcher.add("", self.url, event, 1)
        batcher.flush()

    def _finish_open(self) -> None:
        if self._batcher is not None:
            self._batcher.flush()

    def apply(self, changes: Sequence[Change | Begin | Commit]) -> None:
        """Encode and queue ``changes``; with :attr:`transaction_events` the flow passes each transaction's Begin
        and Commit too, which scope the idempotency keys."""
        tx = self._tx
        if tx is None and changes and not isinstance(changes[0], Begin):
            # Changes outside an announced transaction (a flow without transaction_events): each apply is its own
            # scope, and keys do not survive a restart that batches differently.
            self.begin_transaction(Begin(xid=f"apply-{uuid.uuid4().hex}"))
        tx = self._tx or TxContext(xid=None, position=None)
        if self._batcher is None:
            self._batcher = self._new_batcher(self.sender.put)
        batcher = self._batcher
        assert batcher is not None
        for change in changes:
            if isinstance(change, Begin):
                self.begin_transaction(change)
                tx, batcher = self._tx or tx, self._batcher or batcher
            elif isinstance(change, Commit):
                self.end_transaction(change)
            elif isinstance(change, RowChange):
                label = change.table.label
                schema = self._schema(label)
                self._place += 1
                n = self._counts[label] = self._counts.get(label, 0) + 1
                event = self._encode(schema, change, tx, self._place, n)
                batcher.add(label, self.url_for(label), event, self._place)
            elif isinstance(change, Truncate):
                for table in change.tables:
                    label = table.label
                    schema = self._schema(label)
                    self._place += 1
                    n = self._counts[label] = self._counts.get(label, 0) + 1
                    event = self._encode_truncate(schema, tx, self._place, n)
                    batcher.add(label, self.url_for(label), event, self._place)
            elif isinstance(change, SchemaChange):
                self.schemas[change.schema.table.label] = change.schema

    def abort(self) -> None:
        if self._batcher is not None:
            self._batcher.discard()
        self._tx = None
        if self._sender is not None:
            self._sender.reset()

    def commit(self, checkpoint: Checkpoint) -> None:
        self._finish_open()
        if self._sender is not None:
            self._sender.drain()
        self.save_checkpoint(checkpoint)

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._lock:
            self._save(checkpoint)

    def reset(self) -> None:
        self.store.clear()
        self._remember(None)

    def stop(self) -> None:
        """Cut a retry back-off short: the request waiting in it fails with a TransientError, so the open batch and
        the snapshot chunk in flight are not acknowledged (the next run sends them again with the same keys).
        A request already on the wire finishes (within ``request_timeout_ms``), and no retry starts after this."""
        self._stop.set()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()  # first: cuts a backoff short, so the sender thread ends
            self._client = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None


class _Writer(SnapshotWriter):
    """Snapshot rows of one copying thread: sent from this thread, keyed by chunk and row place."""

    def __init__(self, sink: WebhookSink) -> None:
        self.sink = sink
        # requests go out from a thread of their own while this one reads and encodes the next rows
        self.sender = _Sender(sink.send)
        self.batcher = sink._new_batcher(self.sender.put)
        self.place = 0
        self.chunk: tuple[str, int] | None = None
        # source.ts_ms of snapshot rows: when this copy (or its resumption) started, as the Kafka sink does
        self.tx = TxContext(
            xid=None, position=_position(sink._snapshot_position), commit_time=datetime.now(UTC), snapshot=True
        )

    def write(self, chunk: SnapshotChunk, rows: list[tuple[Any, ...]]) -> None:
        sink = self.sink
        ident = (chunk.table, chunk.index)
        if self.chunk != ident:
            self.batcher.start(f"{sink._snapshot_scope()}:{chunk.table}#{chunk.index}")
            self.chunk = ident
            self.place = 0
        schema = sink._schema(chunk.table)
        url = sink.url_for(chunk.table)
        label = chunk.table
        add = self.batcher.add
        place = self.place
        if sink.native is not None:
            for event in sink.native.snapshot_json(schema, rows, self.tx):
                place += 1
                add(label, url, event, place)
        else:
            table = schema.table
            for row in rows:
                place += 1
                event = sink._encode(schema, RowChange(Op.READ, table, None, row), self.tx, place, place)
                add(label, url, event, place)
        self.place = place

    def done(self, chunk: SnapshotChunk, rows: int) -> None:
        self.batcher.flush()
        self.sender.drain()
        self.chunk = None
        self.sink.chunk_done(chunk)

    def abort(self) -> None:
        self.batcher.discard()
        self.sender.reset()
        self.chunk = None

    def close(self) -> None:
        self.sender.close()


def _database(connector: Connector) -> str:
    source = connector.source
    for part in (getattr(source, source.kind, None),):
        conn = getattr(part, "connection", None)
        for attr in ("dbname", "database"):
            value = getattr(conn, attr, None) or getattr(part, attr, None)
            if isinstance(value, str):
                return value
    return ""
