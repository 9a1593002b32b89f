"""One connector's run: set-up, snapshot, then the change stream into the sink — exactly once.

Exactly once rests on three rules:

1. The sink commits only at source transaction boundaries, and the commit carries the end LSN of the last source
   transaction it contains (``sluice.checkpoints.position``, written in the same sink transaction).
2. The slot is told "flushed" only for positions whose sink commit is durable (the sink commits asynchronously
   for latency, then the worker waits for the sink's WAL flush position to pass the commit before confirming).
3. On start the stream resumes at max(slot confirmed_flush, sink applied_lsn), and any transaction whose commit
   LSN is below the stored position is skipped.

Memory is bounded whatever the transaction size: pending changes are applied into the open sink transaction every
``limits.cdc.max_buffer_rows`` rows (without committing), and transactions that PostgreSQL streams while still in
progress are spilled to a temporary file until their Stream Commit, then replayed the same way.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import IO, Any

import psycopg

from sluice.errors import ConfigError, ReplicationError, SchemaChangeError, TransientError
from sluice.worker.config import WorkerSettings
from sluice.worker.drivers.postgres.connection import conninfo_kwargs, pool_size
from sluice.worker.engine import RunContext
from sluice.worker.events import Column, ColumnType, SchemaChange, TableId, TableSchema, TypeKind
from sluice.worker.fastpath.applier import Applier
from sluice.worker.fastpath.apply import (
    EncodedChanges,
    TableChanges,
    encode_table_changes,
    forget_stages,
    truncate_tables,
)
from sluice.worker.fastpath.snapshot import SnapshotCopier, plan_chunks
from sluice.worker.positions import format_lsn, parse_lsn
from sluice.worker.sinks.postgres.ddl import SinkTable, ensure_key, ensure_table, ensure_types, sink_columns
from sluice.worker.sinks.postgres.schema_change import (
    apply_schema_change,
    backfill,
    finish_backfill,
    plan_schema_change,
)
from sluice.worker.sinks.postgres.state import ConnectorState, StateStore
from sluice.worker.sources.postgres import pgoutput as po
from sluice.worker.sources.postgres.preflight import preflight
from sluice.worker.sources.postgres.publication import ensure_publication, publication_name_for, publication_tables
from sluice.worker.sources.postgres.schema_changes import backfill_rows, existing_values
from sluice.worker.sources.postgres.slot import create_slot, drop_slot, slot_name_for, slot_position
from sluice.worker.sources.postgres.stream import ReplicationStream
from sluice.worker.sources.postgres.tables import SourceColumn, discover_tables, excluded_columns, load_user_types
from sluice.worker.spill import spill_dir
from sluice.worker.status import TableProgress

__all__ = ["PgToPgPipeline"]

log = logging.getLogger(__name__)

_PG_EPOCH = 946_684_800  # 2000-01-01 in Unix seconds
_LEN = struct.Struct("!I")
_CHUNK = struct.Struct("!BIII")  # flags, rows, label length, data length
_ROW_KINDS = frozenset(b"IUD")
#: logical_decoding_work_mem of the replication connection (kB), unless the source sets less
_STREAM_WORK_MEM_KB = 4096

#: advisory lock key serializing DDL of workers that share a sink database
_SETUP_LOCK = 0x51C3_0001


def _spill_file() -> IO[bytes]:
    """A new spill file in the spill directory; a directory that cannot take one is a set-up error, not transient."""
    try:
        return tempfile.TemporaryFile(prefix="sluice-tx-", dir=spill_dir())
    except OSError as exc:
        raise ConfigError(
            f"cannot create a spill file for a large transaction in {spill_dir() or 'the temporary directory'}: "
            f"{exc.strerror or exc}",
            fix="Give the worker a writable spill directory: SLUICE_SPILL_DIR (in a pod, the operator mounts the "
            "'spill' emptyDir volume there); the root filesystem of a worker pod is read-only.",
        ) from exc


@dataclass
class _Spill:
    """A transaction PostgreSQL streams while it is still in progress, kept on disk until it commits.

    Row changes of the top-level transaction to keyed tables are folded and encoded as staging COPY data while
    they stream in (usually before the source has even committed), so the Stream Commit only loads and merges
    bytes. Everything else — subtransaction changes (an abort may discard them), keyless tables, relation and
    truncate messages — is kept as the raw message and decoded at the Stream Commit. Records keep stream order:
    folded changes are written out before any raw record that follows them.
    """

    file: IO[bytes]
    aborted_subxids: set[int] = field(default_factory=set)
    #: folded, not yet encoded changes of the top-level transaction, by relation oid
    pending: dict[int, TableChanges] = field(default_factory=dict)
    pending_rows: int = 0
    #: a relation changed shape inside this transaction: keep every later message raw
    raw_only: bool = False
    #: encoded chunks written so far; the first ``applied`` of them are already in the open sink transaction
    chunks: int = 0
    applied: int = 0
    #: may no longer be applied ahead of its commit (something else needed the sink, or raw changes came between)
    no_speculation: bool = False

    def write(self, payload: bytes) -> None:
        self.file.write(b"R" + _LEN.pack(len(payload)))
        self.file.write(payload)

    def write_encoded(self, enc: EncodedChanges) -> None:
        label = enc.table.label.encode()
        self.file.write(b"C" + _CHUNK.pack(enc.flags, enc.count, len(label), len(enc.data)))
        self.file.write(label)
        self.file.write(enc.data)
        self.chunks += 1

    def replay(self) -> Any:
        """Yields raw message bytes, or (table label, flags, count, COPY data) of an encoded chunk."""
        self.file.flush()
        self.file.seek(0)
        read = self.file.read
        while True:
            tag = read(1)
            if tag == b"R":
                (n,) = _LEN.unpack(read(4))
                yield read(n)
            elif tag == b"C":
                flags, count, nlabel, ndata = _CHUNK.unpack(read(_CHUNK.size))
                label = read(nlabel).decode()
                yield (label, flags, count, read(ndata))
            else:
                return


class PgToPgPipeline:
    """PostgreSQL -> PostgreSQL, one attempt: set-up, snapshot, stream (see the module docstring).

    The engine (:mod:`sluice.worker.engine`) owns retries, stop and status; this class does the work for one
    attempt, with the PostgreSQL source's and sink's connection settings.
    """

    def __init__(self, ctx: RunContext, source: Any, sink: Any) -> None:
        connector = ctx.connector
        self.ctx = ctx
        self.connector = connector
        self.reporter = ctx.reporter
        self.stop = ctx.stop
        self.settings: WorkerSettings = ctx.settings
        self.status = ctx.status
        self.pg_source = source
        self.pg_sink = sink
        self.source = connector.source.config
        self.sink = connector.sink.config
        rt = self.source.replication_type
        self.logical = rt.logical_replication
        app = f"sluice-{connector.id}"[:63]
        self.src_kw = conninfo_kwargs(self.source.connection, application_name=app)
        self.snk_kw = conninfo_kwargs(self.sink.connection, application_name=app)
        self.slot_name = slot_name_for(connector.id)
        self.publication = (self.logical.publication_name if self.logical else None) or publication_name_for(
            connector.id
        )
        self.state_store = StateStore(connector.id)
        #: keyless tables copied after the first snapshot -> their copy's position (see _copy_keyless)
        self._floors: dict[str, int] = {}

    def run(self) -> None:
        self._run_once()

    def _report(self, *, force: bool = False) -> None:
        self.ctx.report(force=force)

    def _set_state(self, state: str, status: str = "start") -> None:
        self.ctx.set_state(state, status)

    # ------------------------------------------------------------------ set-up

    def _connect_sink(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(**self.snk_kw)
        conn.execute("SET search_path = pg_catalog")
        # Staging tables are temporary: let a whole batch stay in memory instead of spilling to disk.
        conn.execute("SET temp_buffers = '128MB'")
        conn.commit()
        return conn

    def _run_once(self) -> None:
        self._set_state("initialize")
        with psycopg.connect(**self.src_kw, autocommit=True) as src, self._connect_sink() as snk:
            self.src = src
            self.snk = snk
            # Workers of several connectors may share a sink database: serialize their DDL (CREATE SCHEMA IF NOT
            # EXISTS and friends race with each other otherwise).
            snk.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
            self.state_store.ensure(snk)
            snk.commit()
            pub_tables = None
            if self.logical and self.logical.publication_name:
                pub_tables = publication_tables(src, self.logical.publication_name) or set()
            tables = discover_tables(
                src,
                catalog=self.source.catalog,
                partitions_as_root=self.source.partitions_as_root,
                publication_tables=pub_tables,
            )
            preflight(
                src,
                logical=self.logical is not None,
                slot_name=self.slot_name,
                publication_name=self.logical.publication_name if self.logical else None,
                tables=tables,
            )
            if self.logical and not self.logical.publication_name:
                ensure_publication(
                    src,
                    self.publication,
                    [(t.schema, t.name) for t in tables],
                    via_root=self.source.partitions_as_root,
                )
            oids: set[int] = set()
            for t in tables:
                oids |= t.user_type_oids
            snk.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
            ensure_types(snk, load_user_types(src, oids))
            self.tables: dict[str, SinkTable] = {}
            self.by_source: dict[tuple[str, str], SinkTable] = {}
            for t in tables:
                st = ensure_table(snk, self.sink.target_schema, t)
                self._sync_sink_columns(st)
                self.tables[st.label] = st
                self.by_source[(t.schema, t.name)] = st
                self.status.tables.setdefault(st.label, TableProgress())
            snk.commit()
            if self.logical is None:
                self._snapshot_only()
            else:
                self._logical()

    def _sync_sink_columns(self, table: SinkTable) -> None:
        """An existing sink table is described as it really is, so schema differences are seen, not assumed."""
        existing = sink_columns(self.snk, table.schema, table.name)
        by_name = {c.name: c for c in table.source.columns}
        cols = []
        for name, (type_sql, not_null) in existing.items():
            src_col = by_name.get(name)
            if src_col is not None and src_col.type_sql == type_sql:
                # The sink's own nullability: a change the sink has not applied yet must still show as one.
                cols.append(replace(src_col, not_null=not_null))
            else:
                cols.append(SourceColumn(name, type_sql, 0, not_null, False, src_col.text_compare if src_col else True))
        table.columns = cols

    # ------------------------------------------------------------------ snapshot

    def _copier(self, snapshot_name: str | None, upsert: bool) -> SnapshotCopier:
        parallel = self.source.parallel_snapshots_enabled
        workers = min(pool_size(self.source.connection, 3), 8) if parallel else 1
        if parallel and self.source.connection.max_pool_size:
            workers = max(1, self.source.connection.max_pool_size - 1)

        def on_chunk(chunk: Any, rows: int) -> None:
            tp = self.status.tables[chunk.table_name]
            tp.phase = "snapshot"
            tp.rows_copied += rows
            tp.chunks_done += 1
            if tp.chunks_done >= tp.chunks_total:
                tp.phase = "copied"
            self.status.rows_copied += rows
            self.ctx.progress = True
            self._report()

        return SnapshotCopier(
            source_kwargs=self.src_kw,
            sink_kwargs=self.snk_kw,
            tables=self.tables,
            state=self.state_store,
            workers=workers,
            snapshot_name=snapshot_name,
            upsert=upsert,
            stop=self.stop,
            on_chunk=on_chunk,
        )

    def _run_copy(self, snapshot_name: str | None, upsert: bool, chunks: list[Any]) -> bool:
        """Copy chunks; keys are built after a plain copy (bulk index build), before an upserting one."""
        if upsert:
            self._ensure_keys()
        started = time.monotonic()
        done = self._copier(snapshot_name, upsert=upsert).run(chunks)
        if done:
            copied = time.monotonic()
            log.info("snapshot: %d chunks copied in %.2fs", len(chunks), copied - started)
            self._ensure_keys()
            log.info("snapshot: keys built in %.2fs", time.monotonic() - copied)
        return done

    def _ensure_keys(self) -> None:
        for table in self.tables.values():
            ensure_key(self.snk, table)
        self.snk.commit()

    def _start_plan(self, state: ConnectorState) -> list[Any]:
        """Truncate the sink tables, record the plan and the state, in one sink transaction."""
        chunks = plan_chunks(
            self.src,
            list(self.tables.values()),
            self.settings.snapshot_max_buffer_rows,
            self.source.parallel_snapshots_enabled,
        )
        truncate_tables(self.snk, list(self.tables.values()))
        self.state_store.forget_tables(self.snk, list(self.tables))  # floors of earlier copies too
        self.state_store.save(self.snk, state)
        self.state_store.save_plan(self.snk, chunks)
        self.snk.commit()
        self._count_chunks(chunks)
        return chunks

    def _count_chunks(self, chunks: list[Any]) -> None:
        for label, tp in self.status.tables.items():
            mine = [c for c in chunks if c.table_name == label]
            tp.chunks_total = len(mine)
            tp.chunks_done = sum(1 for c in mine if c.done)

    def _resume_plan(self) -> list[Any] | None:
        """Unfinished chunks of an interrupted snapshot, or None when it must start over (keyless tables)."""
        plan = self.state_store.load_plan(self.snk)
        self._count_chunks(plan)
        undone = [c for c in plan if not c.done]
        if any(not self.tables[c.table_name].key for c in undone if c.table_name in self.tables):
            log.info("interrupted snapshot includes a keyless table: starting the snapshot over")
            return None
        if any(c.table_name not in self.tables for c in undone):
            return None
        return undone

    def _snapshot_only(self) -> None:
        state = self.state_store.load(self.snk)
        self._set_state("snapshot")
        if state is not None and state.phase == "snapshot" and state.slot_name is None:
            undone = self._resume_plan()
            if undone is not None:
                if not self._run_copy(None, True, undone):
                    return
                self._finish_snapshot_only()
                return
        with psycopg.connect(**self.src_kw) as exporter:
            exporter.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            row = exporter.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            chunks = self._start_plan(ConnectorState("snapshot", None, 0, 0))
            if not self._run_copy(row[0], False, chunks):
                return
        self._finish_snapshot_only()

    def _finish_snapshot_only(self) -> None:
        self.state_store.save(self.snk, ConnectorState("complete", None, 0, 0))
        self.snk.execute("DELETE FROM sluice.snapshot_chunks WHERE connector_id = %s", (self.connector.id,))
        self.snk.commit()
        self._set_state("complete", "complete")

    # ------------------------------------------------------------------ logical replication

    def _logical(self) -> None:
        assert self.logical is not None
        state = self.state_store.load(self.snk)
        exists, confirmed, active = slot_position(self.src, self.slot_name)
        if active:
            raise TransientError(f"replication slot {self.slot_name} is in use by another process")
        if state is not None and state.phase == "streaming" and not exists:
            raise ReplicationError(
                f"replication slot {self.slot_name} is gone, so changes made since position "
                f"{format_lsn(state.applied_lsn)} cannot be read any more",
                fix="Re-initialize the connector (ReIntialize command, or the sluice.dev/command annotation) to take "
                "a new snapshot.",
            )
        resumable = state is not None and exists and state.phase in ("snapshot", "streaming")
        if resumable and state is not None and state.phase == "snapshot":
            undone = self._resume_plan()
            if undone is None:
                resumable = False
            else:
                self._set_state("snapshot")
                if not self._run_copy(None, True, undone):
                    return
                state.phase = "streaming"
                self.state_store.save(self.snk, state)
                self.snk.commit()
        if not resumable:
            if exists:
                drop_slot(self.src, self.slot_name)
            created = create_slot(self.src_kw, self.slot_name)
            try:
                cp = created.consistent_point
                if self.logical.skip_snapshots:
                    state = ConnectorState("streaming", self.slot_name, cp, cp)
                    self.state_store.save(self.snk, state)
                    self.state_store.save_plan(self.snk, [])
                    self.snk.commit()
                else:
                    self._set_state("snapshot")
                    chunks = self._start_plan(ConnectorState("snapshot", self.slot_name, cp, cp))
                    if not self._run_copy(created.snapshot_name, False, chunks):
                        return
                    state = ConnectorState("streaming", self.slot_name, cp, cp)
                    self.state_store.save(self.snk, state)
                    self.snk.commit()
            finally:
                created.release()
            confirmed = 0
        elif not self._copy_added_tables():
            return
        assert state is not None
        self._ensure_keys()
        start = max(state.applied_lsn, confirmed)
        self._floors = {t: lsn for t, lsn in self.state_store.load_floors(self.snk).items() if lsn > start}
        self._stream(start)

    def _copy_added_tables(self) -> bool:
        """Copy tables selected since the first snapshot (and unfinished chunks of earlier such copies).

        They joined the publication during this start-up, so the stream carries their changes from that point on;
        copying them afterwards under a fresh snapshot with an upsert by key, then replaying the stream over the
        copy, converges exactly. A keyless table cannot be upserted: :meth:`_copy_keyless` copies it at a known
        position instead. False when stopped before the copy finished.
        """
        assert self.logical is not None
        if self.logical.skip_snapshots:
            return True
        plan = self.state_store.load_plan(self.snk)
        planned = {c.table_name for c in plan}
        added = [t for label, t in self.tables.items() if label not in planned]
        floors = self.state_store.load_floors(self.snk)
        # Keyless tables: new ones, and those whose copy was interrupted (a partial copy cannot be upserted).
        keyless = [t for t in added if not t.key]
        keyless += [
            self.tables[label]
            for label in sorted({c.table_name for c in plan if not c.done and c.table_name in floors})
            if label in self.tables and self.tables[label] not in keyless
        ]
        if keyless and not self._copy_keyless(keyless):
            return False
        added = [t for t in added if t.key]
        chunks: list[Any] = []
        if added:
            log.info("copying tables added since the snapshot: %s", ", ".join(t.label for t in added))
            chunks = plan_chunks(
                self.src, added, self.settings.snapshot_max_buffer_rows, self.source.parallel_snapshots_enabled
            )
            truncate_tables(self.snk, added)
            self.state_store.save_plan(self.snk, chunks, replace=False)
            self.snk.commit()
        undone = [c for c in plan + chunks if not c.done and c.table_name in self.tables]
        undone = [c for c in undone if self.tables[c.table_name].key]
        if not undone:
            return True
        self._count_chunks(plan + chunks)
        self._set_state("snapshot")
        return self._run_copy(None, True, undone)

    def _copy_keyless(self, tables: list[SinkTable]) -> bool:
        """Copy keyless tables that joined after the first snapshot, exactly, without a key to upsert on.

        A temporary slot exports a snapshot at its consistent point C: the copy holds every transaction that
        committed before C. C is stored as the tables' floor, and the stream drops their changes from
        transactions that committed before it (see :meth:`_table_changes`), so nothing arrives twice. The floor
        commits together with the truncate and the plan; an interrupted copy starts over.
        """
        labels = [t.label for t in tables]
        log.info("copying keyless tables added since the snapshot: %s", ", ".join(labels))
        created = create_slot(self.src_kw, self.slot_name[:55] + "_tmpcopy", temporary=True)
        try:
            chunks = plan_chunks(
                self.src, tables, self.settings.snapshot_max_buffer_rows, self.source.parallel_snapshots_enabled
            )
            truncate_tables(self.snk, tables)
            self.state_store.forget_tables(self.snk, labels)
            self.state_store.save_plan(self.snk, chunks, replace=False)
            for label in labels:
                self.state_store.save_floor(self.snk, label, created.consistent_point)
            self.snk.commit()
            self._count_chunks(self.state_store.load_plan(self.snk))
            self._set_state("snapshot")
            return self._copier(created.snapshot_name, upsert=False).run(chunks)
        finally:
            created.release()

    # ------------------------------------------------------------------ streaming

    def _stream(self, start_lsn: int) -> None:
        version = int(self.src.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
        # A transaction is streamed once its decoded changes exceed logical_decoding_work_mem (default 64MB). A
        # lower bound for this connection starts streaming — and applying ahead into the sink — while a big source
        # transaction is still running, instead of sending most of it after its commit. A lower setting of the
        # source (database or role) is kept.
        work_mem_kb = None
        row = self.src.execute("SELECT setting::bigint FROM pg_settings WHERE name = 'logical_decoding_work_mem'")
        current = row.fetchone()
        if version >= 140000 and current is not None and int(current[0]) > _STREAM_WORK_MEM_KB:
            work_mem_kb = _STREAM_WORK_MEM_KB
        self.applied_lsn = start_lsn
        self.status.position = format_lsn(start_lsn)
        for tp in self.status.tables.values():
            tp.phase = "streaming"
        self._set_state("realtime")
        stream = ReplicationStream(
            self.src_kw,
            slot=self.slot_name,
            publication=self.publication,
            start_lsn=start_lsn,
            streaming=version >= 140000,
            work_mem_kb=work_mem_kb,
        )
        # The sink commits asynchronously (like native subscriptions): a commit does not wait for its WAL flush,
        # which keeps single-row latency low. The slot is told "flushed" only for source positions whose sink
        # commit is known durable (sink WAL flushed past it), so a sink crash never loses a confirmed change.
        self.snk.execute("SET synchronous_commit = off")
        # Merges join a small staging table to a large target by key: always through the key's index. Statistics
        # of a target just truncated or loaded in the same transaction would otherwise invite nested-loop seq scans.
        self.snk.execute("SET enable_seqscan = off")
        # ... and that penalty cost would trigger JIT compilation (~200 ms) of every merge: never worth it here.
        self.snk.execute("SET jit = off")
        self.snk.commit()
        self._meta = psycopg.connect(**self.snk_kw, autocommit=True)
        self._unflushed: deque[tuple[int, int]] = deque()  # (source end LSN, sink WAL position after commit)
        self._applier = Applier(self.snk, self._meta, self.state_store, self._on_sink_commit)
        self._decoder = po.PgOutputDecoder()
        self._pending: dict[int, TableChanges] = {}
        self._pending_rows = 0  # in memory, not yet applied to the sink
        self._uncommitted = False  # applied to the open sink transaction, not yet committed
        self._batch_end = 0  # end LSN of the last whole source transaction in the open batch
        self._batch_commit_ts = 0
        self._batch_started = 0.0
        self._in_tx = False
        self._skip_tx = False
        self._spills: dict[int, _Spill] = {}
        self._speculating: _Spill | None = None  # a streamed transaction applied ahead of its commit
        self._stream_xid: int | None = None
        self._tx_lsn = 0  # commit position of the transaction being read
        self._type_cache: dict[tuple[int, int], str] = {}
        interval = self.settings.cdc_flush_interval_ms / 1000.0
        last_feedback = time.monotonic()
        last_lag = 0.0
        last_durable = 0.0
        try:
            while True:
                if self.stop.is_set() and not self._in_tx and self._stream_xid is None:
                    self._abandon_speculation()
                    self._commit_batch(stream)
                    self._durable_barrier(stream)
                    break
                if self.stop.is_set() and self._in_tx:
                    # Whole transactions only: drop the partial one; it is sent again after the restart.
                    self._speculating = None
                    self._applier.sync()
                    self.snk.rollback()
                    self._durable_barrier(stream)
                    break
                self._applier.check()
                msg = stream.read()
                now = time.monotonic()
                if msg is None:
                    if self._batch_end and not self._in_tx:
                        self._commit_batch(stream)
                    elif (
                        not self._in_tx
                        and not self._spills
                        and not self._pending_rows
                        and not self._uncommitted
                        and not self._applier.busy()
                        and not self._unflushed
                    ):
                        # Idle: everything sent so far is applied, so the slot may move past WAL without our
                        # changes instead of retaining it forever.
                        end = stream.wal_end
                        if end > stream.flushed and end >= self.applied_lsn:
                            stream.confirm(end)
                    if self._unflushed and now - last_durable >= 0.1:
                        self._confirm_durable(stream)
                        last_durable = now
                    if now - last_feedback > 5:
                        stream.confirm(stream.flushed)
                        last_feedback = now
                    if now - last_lag > 5:
                        self._update_lag()
                        last_lag = now
                    self._report()
                    timeout = 1.0
                    if self._batch_end:
                        timeout = max(0.0, interval - (now - self._batch_started))
                    stream.wait(min(timeout, 0.1 if self._unflushed else 1.0))
                    continue
                self._handle(bytes(msg.payload), stream)
                if (
                    self._batch_end
                    and not self._in_tx
                    and (
                        self._pending_rows >= self.settings.cdc_max_buffer_rows or now - self._batch_started >= interval
                    )
                ):
                    self._commit_batch(stream)
        finally:
            for spill in self._spills.values():
                spill.file.close()
            self._applier.close()
            stream.close()
            self._meta.close()
        self._set_state("shutdown", "complete")

    def _update_lag(self) -> None:
        with contextlib.suppress(psycopg.Error):
            row = self.src.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (format_lsn(self.applied_lsn),))
            r = row.fetchone()
            if r is not None:
                self.status.lag_bytes = max(0, int(r[0]))
        if not self._batch_end and not self._in_tx:
            self.status.lag_seconds = 0.0

    def _handle(self, payload: bytes, stream: ReplicationStream) -> None:
        dec = self._decoder
        kind = payload[0]
        if not dec.in_stream:
            if kind == 0x49:  # Insert: the hot path of bulk loads, straight from the wire into a COPY line
                if not self._skip_tx:
                    self._insert(payload)
                return
            if kind in _ROW_KINDS:
                self._row_change(po.decode_row_change(payload, False))
                return
        elif kind != 0x45 and kind != 0x53:  # not Stream Stop/Start
            # Part of an in-progress transaction: to disk until its Stream Commit (relations decoded now too).
            assert self._stream_xid is not None
            current = self._spills[self._stream_xid]
            if kind in _ROW_KINDS:
                if not current.raw_only:
                    if kind == 0x49:
                        if _LEN.unpack_from(payload, 1)[0] == self._stream_xid and self._fold_streamed_insert(
                            current, payload
                        ):
                            return
                    else:
                        row = po.decode_row_change(payload, True)
                        if row[1] == self._stream_xid and self._fold_streamed(current, row):
                            return
            elif kind in (0x52, 0x59):  # R, Y
                prior = dec.relations.get(_LEN.unpack_from(payload, 5)[0]) if kind == 0x52 else None
                meta = dec.decode(payload)
                if isinstance(meta, po.Relation) and not current.raw_only and not self._same_shape(prior, meta):
                    current.raw_only = True
            self._spill_encode(current)
            if kind not in (0x52, 0x59):
                # A raw change between encoded chunks: the replay must keep their order, so nothing of this
                # transaction may be applied ahead of its commit any more.
                self._abandon_speculation(current)
            current.write(payload)
            return
        msg = dec.decode(payload)
        if isinstance(msg, po.StreamStart):
            self._stream_xid = msg.xid
            if msg.xid not in self._spills:
                self._spills[msg.xid] = _Spill(_spill_file())
        elif isinstance(msg, po.StreamStop):
            self._stream_xid = None
        elif isinstance(msg, po.StreamAbort):
            spill = self._spills.get(msg.xid)
            if spill is not None:
                if msg.xid == msg.subxid:
                    self._abandon_speculation(spill)
                    spill.file.close()
                    del self._spills[msg.xid]
                else:
                    spill.aborted_subxids.add(msg.subxid)
        elif isinstance(msg, po.StreamCommit):
            spill = self._spills.pop(msg.xid, None)
            if spill is None:
                return
            try:
                self._spill_encode(spill)
                log.debug("stream commit of xid %d: replaying %d spilled bytes", msg.xid, spill.file.tell())
                self._begin(msg.commit_lsn, spill)
                if self._skip_tx:
                    self._abandon_speculation(spill)
                applied = spill.applied if self._speculating is spill else 0
                self._speculating = None
                replay = po.PgOutputDecoder(in_stream=True, relations=dec.relations)
                aborted = spill.aborted_subxids
                for raw in spill.replay():
                    if isinstance(raw, tuple):
                        self._apply_encoded_chunk(*raw, already=applied > 0)
                        applied -= 1
                        continue
                    if raw[0] in _ROW_KINDS:
                        row_change = po.decode_row_change(raw, True)
                        if row_change[1] not in aborted:
                            self._row_change(row_change)
                        continue
                    change = replay.decode(raw)
                    if getattr(change, "xid", None) in aborted:
                        continue
                    self._change(change, stream)
                self._end(msg.end_lsn, msg.commit_ts)
            finally:
                spill.file.close()
        elif isinstance(msg, po.Begin):
            self._begin(msg.final_lsn)
        elif isinstance(msg, po.Commit):
            self._end(msg.end_lsn, msg.commit_ts)
        else:
            self._change(msg, stream)

    def _same_shape(self, prior: po.Relation | None, rel: po.Relation) -> bool:
        """Whether changes of ``rel`` can be encoded for the sink table as it is now (no schema change between)."""
        if prior is not None and (prior.namespace, prior.name, prior.columns) != (rel.namespace, rel.name, rel.columns):
            return False
        table = self.by_source.get((rel.namespace, rel.name))
        if table is None:
            return True  # not replicated: its changes are dropped either way
        excluded = excluded_columns(self.source.catalog, rel.namespace, rel.name)
        wanted = {c.name: c.type_oid for c in rel.columns if c.name not in excluded}
        return wanted == {c.name: c.type_oid for c in table.columns}

    def _spill_changes(self, spill: _Spill, oid: int) -> TableChanges | bool:
        """The pending changes of ``oid`` in a streamed transaction; True: not replicated; False: keep it raw."""
        tc = spill.pending.get(oid)
        if tc is not None:
            return tc
        rel = self._decoder.relations.get(oid)
        if rel is None:
            return False
        table = self.by_source.get((rel.namespace, rel.name))
        if table is None:
            return True
        if not table.key or table.label in self._floors:
            return False  # decided at the commit (its position is not known before)
        names = [c.name for c in rel.columns]
        sink_names = table.column_names
        positions = None if names == sink_names else [names.index(n) for n in sink_names]
        tc = spill.pending[oid] = TableChanges(table=table, positions=positions)
        return tc

    def _fold_streamed_insert(self, spill: _Spill, payload: bytes) -> bool:
        """:meth:`_fold_streamed` for an Insert, straight from its message (xid already checked)."""
        tc = self._spill_changes(spill, _LEN.unpack_from(payload, 5)[0])
        if isinstance(tc, bool):
            return tc
        if payload[9] != 0x4E:
            raise ReplicationError("insert message without its 'N' tuple marker")
        tc.insert_wire(payload, 10)
        spill.pending_rows += 1
        if spill.pending_rows >= self.settings.cdc_max_buffer_rows:
            self._spill_encode(spill)
        return True

    def _fold_streamed(self, spill: _Spill, change: po.RowChange) -> bool:
        """Fold a top-level row change of a streamed transaction; False if it must stay a raw message."""
        kind, _xid, oid, _old_kind, old, new = change
        tc = self._spill_changes(spill, oid)
        if isinstance(tc, bool):
            return tc
        if kind == 0x49:
            tc.insert(new)  # type: ignore[arg-type]
        elif kind == 0x55:
            if tc.needs_move(old, new):  # type: ignore[arg-type]
                return False  # kept raw: replayed at the commit, where it is applied on its own
            tc.update(old, new)  # type: ignore[arg-type]
        else:
            tc.delete(old)  # type: ignore[arg-type]
        spill.pending_rows += 1
        if spill.pending_rows >= self.settings.cdc_max_buffer_rows:
            self._spill_encode(spill)
        return True

    def _spill_encode(self, spill: _Spill) -> None:
        """Write the folded changes of a streamed transaction to its spill file as encoded COPY data."""
        self._report()  # a turn of the loop inside a large transaction: the liveness heartbeat (worker/health.py)
        if not spill.pending_rows:
            return
        for tc in spill.pending.values():
            for enc in encode_table_changes(tc):
                ahead = self._may_speculate(spill)
                spill.write_encoded(enc)
                if ahead:
                    self._applier.apply(enc)
                    spill.applied += 1
        spill.pending.clear()
        spill.pending_rows = 0

    def _may_speculate(self, spill: _Spill) -> bool:
        """Whether the next chunk of ``spill`` may go into the sink before its transaction commits.

        Applying ahead overlaps the sink's merges with the rest of the stream. It needs the sink to itself: it
        starts only when the sink has nothing uncommitted and nothing waiting, with the transaction's first chunk,
        and it is rolled back (:meth:`_abandon_speculation`) as soon as anything else needs the sink; the chunks
        are on disk anyway, so the Stream Commit then replays them all.
        """
        if spill.no_speculation:
            return False
        if self._speculating is spill:
            return True
        if (
            self._speculating is not None
            or spill.chunks
            or self._in_tx
            or self._batch_end
            or self._pending_rows
            or self._uncommitted
        ):
            spill.no_speculation = True
            return False
        self._speculating = spill
        return True

    def _abandon_speculation(self, spill: _Spill | None = None) -> None:
        """Roll back what was applied ahead of a commit (of ``spill``, or of any transaction when None)."""
        if spill is not None:
            spill.no_speculation = True
        current = self._speculating
        if current is None or (spill is not None and current is not spill):
            return
        current.no_speculation = True
        self._speculating = None
        if current.applied:
            self._applier.sync()
            self.snk.rollback()
            forget_stages(self.snk)  # temporary staging tables created since were rolled back
            current.applied = 0

    def _apply_encoded_chunk(self, label: str, flags: int, count: int, data: bytes, *, already: bool = False) -> None:
        """Replay one encoded chunk of a committed streamed transaction, after what came before it."""
        if self._skip_tx:
            return
        self._uncommitted = True
        if not already:
            self._flush_pending()
            self._applier.apply(EncodedChanges(table=self.tables[label], data=data, count=count, flags=flags))
        self._count_applied(label, count)

    def _begin(self, commit_lsn: int, spill: _Spill | None = None) -> None:
        if self._speculating is not None and self._speculating is not spill:
            self._abandon_speculation()  # another transaction needs the sink first
        self._in_tx = True
        self._tx_lsn = commit_lsn
        # Already in the sink: a transaction whose commit record lies before the stored position.
        self._skip_tx = commit_lsn < self.applied_lsn

    def _end(self, end_lsn: int, commit_ts: int) -> None:
        self._in_tx = False
        if self._skip_tx:
            self._skip_tx = False
            return
        if not self._batch_end:
            self._batch_started = time.monotonic()
        self._batch_end = end_lsn
        self._batch_commit_ts = commit_ts

    def _change(self, msg: po.Message, stream: ReplicationStream) -> None:
        if isinstance(msg, po.Relation):
            self._on_relation(msg)
            return
        if self._skip_tx or isinstance(msg, po.TypeMessage | po.Origin | po.LogicalMessage):
            return
        if isinstance(msg, po.Truncate):
            targets = []
            self._flush_pending(msg.relation_oids)
            for oid in msg.relation_oids:
                rel = self._decoder.relations.get(oid)
                table = self.by_source.get((rel.namespace, rel.name)) if rel else None
                if table is not None and not self._below_floor(table):
                    targets.append(table)
            self._applier.sync()
            truncate_tables(self.snk, targets)
            self._uncommitted = True
            return
        tc = self._pending.get(msg.relation_oid)  # type: ignore[union-attr]
        if tc is None:
            tc = self._table_changes(msg.relation_oid)  # type: ignore[union-attr]
            if tc is None:
                return
        if isinstance(msg, po.Insert):
            tc.insert(msg.new)
        elif isinstance(msg, po.Update):
            tc.update(msg.old, msg.new)
        elif isinstance(msg, po.Delete):
            tc.delete(msg.old)
        self._pending_rows += 1
        if self._pending_rows >= self.settings.cdc_max_buffer_rows:
            # Bounded memory: apply into the open sink transaction; it commits at a source commit.
            self._flush_pending()

    def _insert(self, payload: bytes) -> None:
        """An Insert outside a stream block: 'I', relation oid, 'N', tuple."""
        oid = _LEN.unpack_from(payload, 1)[0]
        tc = self._pending.get(oid)
        if tc is None:
            tc = self._table_changes(oid)
            if tc is None:
                return
        if payload[5] != 0x4E:
            raise ReplicationError("insert message without its 'N' tuple marker")
        tc.insert_wire(payload, 6)
        self._pending_rows += 1
        if self._pending_rows >= self.settings.cdc_max_buffer_rows:
            self._flush_pending()

    def _row_change(self, change: po.RowChange) -> None:
        if self._skip_tx:
            return
        kind, _xid, oid, _old_kind, old, new = change
        tc = self._pending.get(oid)
        if tc is None:
            tc = self._table_changes(oid)
            if tc is None:
                return
        if kind == 0x49:
            tc.insert(new)  # type: ignore[arg-type]
        elif kind == 0x55:
            if tc.needs_move(old, new):  # type: ignore[arg-type]
                # Everything before it first, then the move on its own, in commit order.
                self._flush_pending([oid])
                self._applier.apply(tc.move(old, new))  # type: ignore[arg-type]
                self._uncommitted = True
                self._count_applied(tc.table.label, 1)
                return
            tc.update(old, new)  # type: ignore[arg-type]
        else:
            tc.delete(old)  # type: ignore[arg-type]
        self._pending_rows += 1
        if self._pending_rows >= self.settings.cdc_max_buffer_rows:
            self._flush_pending()

    def _flush_pending(self, oids: Any = None) -> None:
        """Hand pending changes to the applier thread (into the open sink transaction, not committed)."""
        self._report()  # a turn of the loop inside a large transaction: the liveness heartbeat (worker/health.py)
        for oid in list(self._pending) if oids is None else oids:
            tc = self._pending.get(oid)
            if tc is None or not len(tc):
                continue
            n = len(tc)
            self._pending[oid] = TableChanges(table=tc.table, positions=tc.positions)
            self._applier.apply(tc)
            self._pending_rows -= n
            self._uncommitted = True
            self._count_applied(tc.table.label, n)

    def _count_applied(self, label: str, n: int) -> None:
        """Count ``n`` applied changes once, for the connector and for their table."""
        self.status.rows_applied += n
        tp = self.status.tables.get(label)
        if tp is not None:
            tp.rows_applied += n

    def _table_changes(self, oid: int) -> TableChanges | None:
        rel = self._decoder.relations.get(oid)
        if rel is None:
            raise ReplicationError(f"change for unknown relation oid {oid} (no Relation message seen)")
        table = self.by_source.get((rel.namespace, rel.name))
        if table is None or self._below_floor(table):
            return None
        names = [c.name for c in rel.columns]
        sink_names = table.column_names
        positions = None if names == sink_names else [names.index(n) for n in sink_names]
        tc = TableChanges(table=table, positions=positions)
        self._pending[oid] = tc
        return tc

    def _below_floor(self, table: SinkTable) -> bool:
        """Whether the current transaction is already in the copy of a keyless table added later."""
        floor = self._floors.get(table.label)
        return floor is not None and self._tx_lsn < floor

    def _commit_batch(self, stream: ReplicationStream) -> None:
        if not self._batch_end:
            return
        self._flush_pending()
        end = self._batch_end
        self._applier.commit(end, self._batch_commit_ts)
        self._uncommitted = False
        self.applied_lsn = end
        self._batch_end = 0
        if len(self._unflushed) > 1000:
            self._confirm_durable(stream)
        self._report()

    def _on_sink_commit(self, end: int, commit_ts: int, sink_lsn: int) -> None:
        """Called by the applier thread once a batch committed in the sink."""
        self._unflushed.append((end, sink_lsn))
        self.status.position = format_lsn(end)
        self.status.lag_seconds = max(0.0, time.time() - (_PG_EPOCH + commit_ts / 1_000_000))
        self.ctx.progress = True

    def _confirm_durable(self, stream: ReplicationStream) -> None:
        """Confirm to the slot every applied position whose sink commit has reached the sink's disk."""
        if not self._unflushed:
            return
        row = self._meta.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
        flushed = parse_lsn(row[0] if row else None)
        best = 0
        while self._unflushed and self._unflushed[0][1] <= flushed:
            best = self._unflushed.popleft()[0]
        if best:
            stream.confirm(best)

    def _durable_barrier(self, stream: ReplicationStream) -> None:
        """On shutdown: one synchronous commit flushes every earlier asynchronous one; then confirm them all."""
        self._applier.sync()
        self.snk.execute("SET LOCAL synchronous_commit = on")
        self.state_store.set_applied(self.snk, self.applied_lsn)
        self.snk.commit()
        if self._unflushed:
            stream.confirm(self._unflushed[-1][0])
            self._unflushed.clear()

    # ------------------------------------------------------------------ schema changes

    def _source_type(self, oid: int, typmod: int) -> str:
        key = (oid, typmod)
        if key not in self._type_cache:
            row = self.src.execute("SELECT format_type(%s, %s)", (oid, typmod if typmod != -1 else None)).fetchone()
            self._type_cache[key] = str(row[0]) if row else "unknown"
        return self._type_cache[key]

    def _on_relation(self, rel: po.Relation) -> None:
        table = self.by_source.get((rel.namespace, rel.name))
        if table is None:
            return
        excluded = excluded_columns(self.source.catalog, rel.namespace, rel.name)
        wanted = [c for c in rel.columns if c.name not in excluded]
        not_null = dict(
            self.src.execute(
                "SELECT a.attname, a.attnotnull FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
                "AND a.attnum > 0 AND NOT a.attisdropped",
                (rel.namespace, rel.name),
            ).fetchall()
        )
        schema = TableSchema(
            table=TableId(rel.namespace, rel.name),
            columns=tuple(
                Column(
                    c.name,
                    ColumnType(
                        TypeKind.NATIVE, native=self._source_type(c.type_oid, c.type_modifier), dialect="postgres"
                    ),
                    nullable=not not_null.get(c.name, False),
                )
                for c in wanted
            ),
            key=tuple(table.key),
        )
        # Changes pending under the old shape go first.
        self._flush_pending([rel.oid])
        self._pending.pop(rel.oid, None)
        steps = plan_schema_change(table, schema)
        if not steps:
            return
        self._applier.sync()
        added = [s.column for s in steps if s.kind == "Add"]
        # What rows that were there before hold in added columns (a constant, or values to copy by key).
        change = SchemaChange(schema=schema, existing=existing_values(self.src, rel.namespace, rel.name, added))
        try:
            apply_schema_change(self.snk, table, change, self.sink.migration_strategy)
        except SchemaChangeError as err:
            self.status.tables[table.label].phase = "failed"
            self.status.tables[table.label].error = err.message
            raise
        per_row = [name for name, ev in change.existing.items() if ev.per_row]
        if per_row and table.key:
            # The source's current values: any later change of these rows still follows in the stream.
            n = 0
            for rows in backfill_rows(
                self.src, rel.namespace, rel.name, table.key, per_row, self.settings.snapshot_max_buffer_rows
            ):
                n += backfill(self.snk, table, per_row, rows)
            finish_backfill(self.snk, table, change)
            log.info("%s: %s of %d existing rows copied from the source", table.label, "/".join(per_row), n)
        oids = {c.name: c.type_oid for c in wanted}  # source OIDs, as _same_shape compares them
        table.columns = [replace(c, type_oid=oids.get(c.name, c.type_oid)) for c in table.columns]
        self._uncommitted = True
