"""The general pipeline: preflight -> snapshot -> stream, over any Source and any Sink, in neutral events.

Exactly once (where the sink is transactional) rests on the same three rules for every pair of ends:

1. The sink commits only at source transaction boundaries, together with the checkpoint naming the position of
   the last source commit it holds (:meth:`Sink.commit`).
2. The source is told a position is done (:meth:`ChangeStream.ack`) only once the sink says it is durable.
3. On start the stream resumes at the stored position, and a transaction the source announces as committing
   before that position (:class:`~sluice.worker.events.Begin` ``position``) is skipped whole.

The snapshot is read at one consistent point (the session's position, where the stream then starts), split into
chunks the sink marks done as it commits them, so an interrupted snapshot resumes chunk by chunk (by upsert; a
keyless table cannot be upserted, so a snapshot with one unfinished starts over).

Memory stays bounded: changes are handed to the sink every ``limits.cdc.max_buffer_rows`` rows even inside a
transaction (applied into the open sink batch, not committed), and a snapshot chunk (up to
``limits.snapshot.max_buffer_rows`` rows, one sink commit) is read and written :data:`SNAPSHOT_READ_ROWS` rows at a
time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

from sluice.errors import ReplicationError
from sluice.worker.checkpoints import Checkpoint
from sluice.worker.engine import RunContext
from sluice.worker.events import Begin, Change, Commit, RowChange, SchemaChange, TableSchema
from sluice.worker.positions import Position
from sluice.worker.sinks.base import Sink, SnapshotWriter
from sluice.worker.sources.base import ChangeStream, SnapshotChunk, SnapshotSession, Source
from sluice.worker.status import TableProgress

__all__ = ["SNAPSHOT_READ_ROWS", "Flow"]

#: rows a snapshot reader hands to its writer at a time, at most. A chunk stays one sink commit of up to
#: ``limits.snapshot.max_buffer_rows`` rows, but holding all of it as Python rows before writing cost ~90 MB per
#: copying thread at the 200k default (a MySQL -> Kafka worker peaked at 230 MB); sinks that batch (COPY, 1 MiB
#: webhook requests, the Kafka producer) lose nothing at this size.
SNAPSHOT_READ_ROWS = 20_000

log = logging.getLogger(__name__)

#: how often lag is asked of the source while streaming
_LAG_EVERY_S = 5.0


class Flow:
    """One attempt at running a connector through the interfaces (see the module docstring)."""

    def __init__(self, ctx: RunContext, source: Source, sink: Sink) -> None:
        self.ctx = ctx
        self.source = source
        self.sink = sink
        self.tables: dict[str, TableSchema] = {}

    # ------------------------------------------------------------------ phases

    def run(self) -> None:
        ctx = self.ctx
        ctx.set_state("initialize")
        tables = self.source.discover()
        self.source.preflight(tables)
        self.sink.prepare(tables)
        self.tables = {t.table.label: t for t in tables}
        for label in self.tables:
            ctx.status.tables.setdefault(label, TableProgress())
        checkpoint = self.sink.load_checkpoint()
        if self.source.snapshot_only:
            self._snapshot_only(checkpoint)
            return
        self.source.prepare_stream(tables)
        start = self._start_position(checkpoint)
        if start is not None:
            self._stream(start)

    def _snapshot_only(self, checkpoint: Checkpoint | None) -> None:
        self.ctx.set_state("snapshot")
        tables = list(self.tables.values())
        if checkpoint is not None and checkpoint.phase == "snapshot":
            undone = self._resumable(self.sink.load_plan())
            if undone is not None:
                session = self.source.resume_snapshot()
                try:
                    if not self._copy(session, undone, upsert=True):
                        return
                finally:
                    session.close()
                self._finish_snapshot_only(tables)
                return
        session = self.source.open_snapshot()
        try:
            chunks = self.source.plan(tables, self.ctx.settings.snapshot_max_buffer_rows)
            self.sink.start_snapshot(Checkpoint("snapshot"), chunks, tables)
            self._count_chunks(chunks)
            if not self._copy(session, chunks, upsert=False):
                return
        finally:
            session.close()
        self._finish_snapshot_only(tables)

    def _finish_snapshot_only(self, tables: list[TableSchema]) -> None:
        self.sink.finish_snapshot(tables)
        self.sink.save_checkpoint(Checkpoint("complete"))
        self.ctx.set_state("complete", "complete")

    def _start_position(self, checkpoint: Checkpoint | None) -> Position | None:
        """Where the stream starts: the stored position, or after a (resumed or new) snapshot. None = stopped."""
        source, sink = self.source, self.sink
        tables = list(self.tables.values())
        if checkpoint is not None and checkpoint.phase == "streaming" and checkpoint.position:
            position = source.parse_position(checkpoint.position)
            source.can_resume(position)
            if not source.skip_snapshot and not self._copy_added(checkpoint):
                return None
            return position
        if checkpoint is not None and checkpoint.phase == "snapshot" and checkpoint.snapshot_position:
            position = source.parse_position(checkpoint.snapshot_position)
            undone = self._resumable(sink.load_plan())
            if undone is not None:
                source.can_resume(position)
                self.ctx.set_state("snapshot")
                session = source.resume_snapshot()
                try:
                    if not self._copy(session, undone, upsert=True):
                        return None
                finally:
                    session.close()
                sink.finish_snapshot(tables)
                sink.save_checkpoint(Checkpoint("streaming", position.encode(), position.encode()))
                return position
        session = source.open_snapshot()
        try:
            if session.position is None:
                raise ReplicationError(
                    f"source {source.kind} gave no consistent position for its snapshot",
                    fix="This is a bug in the source; please report it with the worker log.",
                )
            position = session.position
            if source.skip_snapshot:
                sink.start_snapshot(Checkpoint("snapshot", None, position.encode()), [], [])
            else:
                self.ctx.set_state("snapshot")
                chunks = source.plan(tables, self.ctx.settings.snapshot_max_buffer_rows)
                sink.start_snapshot(Checkpoint("snapshot", None, position.encode()), chunks, tables)
                self._count_chunks(chunks)
                if not self._copy(session, chunks, upsert=False):
                    return None
                sink.finish_snapshot(tables)
            sink.save_checkpoint(Checkpoint("streaming", position.encode(), position.encode()))
        finally:
            session.close()
        return position

    def _copy_added(self, checkpoint: Checkpoint) -> bool:
        """Copy tables selected since the snapshot (and unfinished chunks of earlier such copies).

        They joined the stream during this start-up (``prepare_stream``), so the stream carries their changes from
        then on; copying them now with an upsert by key, then replaying the stream over the copy, converges. A
        keyless table cannot be upserted: its existing rows are not copied by the general flow (the table's status
        says so, with the fix); its changes stream. False when stopped before the copy finished.
        """
        sink = self.sink
        plan = sink.load_plan()
        planned = {c.table for c in plan}
        added = [t for label, t in self.tables.items() if label not in planned]
        for t in added:
            if not t.key:
                tp = self.ctx.status.tables[t.table.label]
                tp.error = (
                    f"{t.table.label} joined after the snapshot and has no key: its existing rows were not copied "
                    "(only its changes stream). Re-initialize the connector (ReIntialize) to copy it."
                )
                log.warning("%s", tp.error)
        keyed = [t for t in added if t.key]
        chunks: list[SnapshotChunk] = []
        if keyed:
            log.info("copying tables added since the snapshot: %s", ", ".join(t.table.label for t in keyed))
            chunks = self.source.plan(keyed, self.ctx.settings.snapshot_max_buffer_rows)
            # Truncates the added tables and records the longer plan, the checkpoint unchanged: one transaction.
            sink.start_snapshot(checkpoint, plan + chunks, keyed)
        undone = [c for c in plan + chunks if not c.done and c.table in self.tables and self.tables[c.table].key]
        if not undone:
            return True
        self._count_chunks(plan + chunks)
        self.ctx.set_state("snapshot")
        session = self.source.resume_snapshot()
        try:
            if not self._copy(session, undone, upsert=True):
                return False
        finally:
            session.close()
        sink.finish_snapshot([self.tables[label] for label in sorted({c.table for c in undone})])
        return True

    def _resumable(self, plan: list[SnapshotChunk]) -> list[SnapshotChunk] | None:
        """Unfinished chunks of an interrupted snapshot, or None when it must start over."""
        self._count_chunks(plan)
        undone = [c for c in plan if not c.done]
        if not plan or any(c.table not in self.tables for c in undone):
            return None
        if any(not self.tables[c.table].key for c in undone):
            log.info("interrupted snapshot includes a keyless table: starting the snapshot over")
            return None
        return undone

    # ------------------------------------------------------------------ snapshot

    def _count_chunks(self, chunks: list[SnapshotChunk]) -> None:
        for label, tp in self.ctx.status.tables.items():
            mine = [c for c in chunks if c.table == label]
            tp.chunks_total = len(mine)
            tp.chunks_done = sum(1 for c in mine if c.done)

    def _on_chunk(self, chunk: SnapshotChunk, rows: int) -> None:
        status = self.ctx.status
        tp = status.tables.setdefault(chunk.table, TableProgress())
        tp.phase = "snapshot"
        tp.rows_copied += rows
        tp.chunks_done += 1
        if tp.chunks_done >= tp.chunks_total:
            tp.phase = "copied"
        status.rows_copied += rows
        self.ctx.progress = True
        self.ctx.report()

    def _copy_chunk(
        self,
        session: SnapshotSession,
        writer: SnapshotWriter,
        chunk: SnapshotChunk,
        batch_rows: int,
        halted: Callable[[], bool],
    ) -> int | None:
        """Write one chunk's rows (not yet marked done); its row count, or None when halted midway. A fast path
        for one pair of ends overrides this to move rows without the neutral model."""
        rows = 0
        for batch in session.read(chunk, batch_rows):
            if halted():
                return None
            writer.write(chunk, batch)
            rows += len(batch)
        return rows

    def _copy(self, session: SnapshotSession, chunks: list[SnapshotChunk], *, upsert: bool) -> bool:
        """Copy ``chunks`` with up to ``snapshot_parallelism`` threads; False when stopped before the end."""
        todo: queue.SimpleQueue[SnapshotChunk] = queue.SimpleQueue()
        for c in chunks:
            todo.put(c)
        errors: list[BaseException] = []
        lock = threading.Lock()
        batch_rows = min(self.ctx.settings.snapshot_max_buffer_rows, SNAPSHOT_READ_ROWS)
        stop = self.ctx.stop

        def halted() -> bool:
            return stop.is_set() or bool(errors)

        def work() -> None:
            writer = self.sink.snapshot_writer(upsert=upsert)
            try:
                while not stop.is_set() and not errors:
                    try:
                        chunk = todo.get_nowait()
                    except queue.Empty:
                        return
                    rows = self._copy_chunk(session, writer, chunk, batch_rows, halted)
                    if rows is None:
                        writer.abort()
                        return
                    writer.done(chunk, rows)
                    with lock:
                        self._on_chunk(chunk, rows)
            except BaseException as exc:
                errors.append(exc)
                writer.abort()
            finally:
                writer.close()

        threads = [
            threading.Thread(target=work, name=f"snapshot-{i}", daemon=True)
            for i in range(max(1, min(self.source.snapshot_parallelism, len(chunks))))
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        if stop.is_set():
            return False
        log.info("snapshot: %d chunks copied in %.2fs", len(chunks), time.monotonic() - started)
        return True

    # ------------------------------------------------------------------ stream

    def _stream(self, start: Position) -> None:
        ctx = self.ctx
        status = ctx.status
        status.position = str(start)
        for tp in status.tables.values():
            tp.phase = "streaming"
        ctx.set_state("realtime")
        stream = self.source.stream(start, list(self.tables.values()))
        try:
            _Streaming(self, stream, start).run()
        finally:
            stream.close()
        ctx.set_state("shutdown", "complete")


class _Streaming:
    """The streaming loop's state: the open batch, the transaction being read, positions awaiting durability."""

    def __init__(self, flow: Flow, stream: ChangeStream, start: Position) -> None:
        self.flow = flow
        self.ctx = flow.ctx
        self.sink = flow.sink
        self.stream = stream
        self.start = start
        self.batch: list[Change | Begin | Commit] = []
        #: a sink that encodes each change with its source transaction (Kafka's Debezium ``source`` block) gets the
        #: Begin and Commit events in its ``apply`` too, in order
        self.tx_events = flow.sink.transaction_events
        self.batch_rows = 0  # row changes in the open sink batch (applied or not)
        self.last_commit: Commit | None = None  # the newest whole transaction in the open batch
        self.batch_started = 0.0
        self.in_tx = False
        self.skip = False
        #: where the transaction being read starts in ``batch``, and whether part of it reached the sink already
        self.tx_mark = 0
        self.tx_applied = False
        self.unacked: deque[Position] = deque()

    def run(self) -> None:
        ctx = self.ctx
        settings = ctx.settings
        interval = settings.cdc_flush_interval_ms / 1000.0
        last_lag = 0.0
        while True:
            if ctx.stop.is_set():
                if self.in_tx and self.tx_applied:
                    # Whole transactions only: part of this one is in the open sink batch, so the batch goes;
                    # everything in it is read again after the restart.
                    self.sink.abort()
                    self.batch.clear()
                    self.last_commit = None
                else:
                    if self.in_tx:
                        del self.batch[self.tx_mark :]  # the partial transaction is read again after the restart
                    self._commit()
                self._ack()
                return
            now = time.monotonic()
            event = self.stream.poll(self._timeout())
            now = time.monotonic()
            if event is None:
                # Nothing more is waiting: what the batch holds goes now, as the PostgreSQL fast path does, rather
                # than at the end of the flush interval (which only bounds how long a busy stream batches).
                if self.last_commit is not None and not self.in_tx:
                    self._commit()
                self._ack()
                if now - last_lag >= _LAG_EVERY_S:
                    self._lag()
                    last_lag = now
                ctx.report()
                continue
            if isinstance(event, Begin):
                self.in_tx = True
                self.tx_mark = len(self.batch)
                self.tx_applied = False
                self.skip = event.position is not None and event.position < self.start
                if self.tx_events and not self.skip:
                    self.batch.append(event)
            elif isinstance(event, Commit):
                self.in_tx = False
                if self.skip:
                    self.skip = False
                    continue
                if self.tx_events:
                    self.batch.append(event)
                if self.last_commit is None:
                    self.batch_started = now
                self.last_commit = event
                if event.commit_time is not None:
                    ctx.status.lag_seconds = max(0.0, (datetime.now(UTC) - event.commit_time).total_seconds())
                if self.batch_rows >= settings.cdc_max_buffer_rows or now - self.batch_started >= interval:
                    self._commit()
            elif not self.skip:
                self._change(event)

    def _timeout(self) -> float:
        if self.last_commit is not None and not self.in_tx:
            return 0.0  # a batch to commit: only take what is already waiting
        return 0.1 if self.unacked else 1.0

    def _change(self, change: Change) -> None:
        if isinstance(change, SchemaChange):
            self.flow.tables[change.schema.table.label] = change.schema
            per_row = [name for name, existing in change.existing.items() if existing.per_row]
            if per_row:
                self.batch.append(change)
                self._backfill(change, per_row)
                return
        self.batch.append(change)
        if isinstance(change, RowChange):
            self.batch_rows += 1
        if len(self.batch) >= self.ctx.settings.cdc_max_buffer_rows:
            # Bounded memory: into the open sink batch; it commits at a source commit.
            self._apply()

    def _backfill(self, change: SchemaChange, columns: list[str]) -> None:
        """Columns added with a per-row default: the rows the sink already holds get the source's values.

        The change is applied first (the columns exist), then the source's current values by key, all in the open
        sink batch. Reading the source now, ahead of the stream, converges: every later change of those rows is
        still to come in the stream and is applied after.
        """
        self._apply()
        batch_rows = self.ctx.settings.cdc_max_buffer_rows
        for rows in self.flow.source.backfill_rows(change.schema, columns, batch_rows):
            self.sink.backfill(change, columns, rows)
        self.sink.finish_backfill(change)
        self.tx_applied = self.in_tx

    def _apply(self) -> None:
        if not self.batch:
            return
        # A turn of the loop, also inside a transaction larger than a batch: the liveness heartbeat.
        self.ctx.report()
        self.sink.apply(cast("list[Change]", self.batch))  # Begin/Commit only for sinks with transaction_events
        status = self.ctx.status
        for change in self.batch:
            if isinstance(change, RowChange):
                status.rows_applied += 1
                tp = status.tables.get(change.table.label)
                if tp is not None:
                    tp.rows_applied += 1
        self.batch = []
        self.tx_mark = 0
        self.tx_applied = self.in_tx

    def _commit(self) -> None:
        if self.last_commit is None:
            return
        self._apply()
        position = self.last_commit.position
        self.sink.commit(Checkpoint("streaming", position.encode()))
        self.unacked.append(position)
        self.ctx.status.position = str(position)
        self.ctx.progress = True
        self.last_commit = None
        self.batch_rows = 0
        self.ctx.report()

    def _ack(self) -> None:
        """Tell the source what the sink made durable; when all is, let it move past log without our changes."""
        if self.unacked:
            durable = self.sink.durable(self.unacked[-1])
            if durable is not None:
                while self.unacked and self.unacked[0] <= durable:
                    self.unacked.popleft()
                self.stream.ack(durable)
        if not self.unacked and not self.in_tx and self.last_commit is None and not self.batch:
            self.stream.caught_up()

    def _lag(self) -> None:
        lag = self.stream.lag()
        status = self.ctx.status
        if lag.bytes is not None:
            status.lag_bytes = lag.bytes
        if lag.seconds is not None:
            status.lag_seconds = lag.seconds
        elif self.last_commit is None and not self.in_tx:
            status.lag_seconds = 0.0
