"""The PostgreSQL source behind :class:`~sluice.worker.sources.base.Source`: pgoutput into neutral events.

What it reuses rather than repeats: :mod:`.tables` (which tables, their columns and keys), :mod:`.preflight` (every
check, one implementation), :mod:`.publication`, :mod:`.slot` (the slot with its exported snapshot),
:mod:`.stream` (the replication connection), :mod:`.pgoutput` (the wire format), :mod:`.types` (logical types and
value loaders) and :mod:`.decode` (messages -> events). The PG->PG fast path uses this class for set-up
(``conn``, ``kwargs``, ``slot_name``, ``publication``, ``pg_tables``) and keeps its own wire-to-COPY loop.

- Snapshot: the slot is created with an exported snapshot; each :meth:`_Snapshot.read` imports it on a connection
  of its own (``REPEATABLE READ``; ``SET TRANSACTION SNAPSHOT``), so chunks can be read from several threads at
  once, and reads a CTID page range with a text ``COPY`` loaded by psycopg into Python values.
- Stream: protocol version 2 with ``streaming`` off: only committed transactions arrive, one message at a time, so
  memory stays bounded whatever the transaction size. The slot is told "flushed" only for what :meth:`ack` says
  the sink made durable (and, when idle with everything acked, for WAL that held none of our changes).
- Errors are classified by SQLSTATE: connection and resource problems are transient, a missing slot needs a
  re-initialization, bad credentials are a spec error.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import psycopg2
from psycopg import sql
from psycopg.adapt import AdaptersMap

from sluice.errors import ConfigError, ReplicationError, SluiceError, TransientError
from sluice.models import Connector
from sluice.worker.drivers.postgres.errors import classify as classify_pg
from sluice.worker.events import Column, Commit, Event, ExistingValues, TableId, TableSchema
from sluice.worker.positions import Lsn, Position
from sluice.worker.sources.base import (
    ChangeStream,
    Check,
    Lag,
    RetainedLog,
    SnapshotChunk,
    SnapshotSession,
    Source,
)
from sluice.worker.sources.postgres.connection import conninfo_kwargs, pool_size
from sluice.worker.sources.postgres.decode import EventDecoder, SchemaSource
from sluice.worker.sources.postgres.preflight import raise_failed, source_checks
from sluice.worker.sources.postgres.publication import ensure_publication, publication_name_for, publication_tables
from sluice.worker.sources.postgres.schema_changes import backfill_rows, existing_values
from sluice.worker.sources.postgres.slot import create_slot, drop_slot, slot_name_for, slot_position
from sluice.worker.sources.postgres.stream import ReplicationStream
from sluice.worker.sources.postgres.tables import SourceTable, discover_tables, excluded_columns
from sluice.worker.sources.postgres.types import PgType, TypeCatalog, column_type, install_loaders

__all__ = ["PostgresSource"]

log = logging.getLogger(__name__)

_CONNECTION = ("source", "postgres", "connection")
_REINIT_FIX = (
    "Re-initialize the connector (ReIntialize command / sluice.dev/command annotation) to take a new snapshot."
)


def classify(exc: BaseException, doing: str, conninfo: dict[str, Any] | None = None) -> SluiceError:
    """A driver error as a Sluice error (by SQLSTATE: ``drivers.postgres.errors``), saying what was being done."""
    err = classify_pg(exc, side="source", conninfo=conninfo)
    if isinstance(exc, SluiceError):
        return err
    wrapped: SluiceError = type(err)(f"{doing}: {err.message}", fix=err.fix, details=err.details)
    return wrapped


def connect(kwargs: dict[str, Any], *, autocommit: bool = True) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(**kwargs, autocommit=autocommit)
    except psycopg.Error as exc:
        raise classify(exc, f"cannot connect to the source {kwargs.get('host')}:{kwargs.get('port')}", kwargs) from exc


class PostgresSource(Source):
    """One connector's PostgreSQL source. ``conn`` is an autocommit connection, opened on first use."""

    kind = "postgres"

    def __init__(self, connector: Connector) -> None:
        super().__init__(connector)
        self.config: Any = connector.source.config
        self.logical: Any = self.config.replication_type.logical_replication
        #: libpq keyword arguments (hold the password: never log them)
        self.kwargs: dict[str, Any] = conninfo_kwargs(
            self.config.connection, application_name=f"sluice-{connector.id}"[:63]
        )
        self.slot_name = slot_name_for(connector.id)
        self.user_publication: str | None = (self.logical.publication_name if self.logical else None) or None
        self.publication = self.user_publication or publication_name_for(connector.id)
        #: the selected tables as PostgreSQL describes them, by label (``schema.name``); filled by :meth:`discover`
        self.pg_tables: dict[str, SourceTable] = {}
        #: the selected tables' neutral schemas and column types, by label
        self.schemas: dict[str, TableSchema] = {}
        self.pg_types: dict[str, list[PgType]] = {}
        self._conn: psycopg.Connection[Any] | None = None
        self._types: TypeCatalog | None = None
        self._lock = threading.RLock()

    def classify(self, exc: BaseException) -> SluiceError | None:
        if isinstance(exc, psycopg.Error | psycopg2.Error):
            err: SluiceError = classify_pg(exc, side="source", conninfo=self.kwargs)
            return err
        return None

    @property
    def snapshot_only(self) -> bool:
        return self.logical is None

    @property
    def skip_snapshot(self) -> bool:
        return bool(self.logical is not None and self.logical.skip_snapshots)

    @property
    def snapshot_parallelism(self) -> int:
        if not self.config.parallel_snapshots_enabled:
            return 1
        if self.config.connection.max_pool_size:
            return max(1, int(self.config.connection.max_pool_size) - 1)
        return min(int(pool_size(self.config.connection, 3)), 8)

    # ------------------------------------------------------------------------------------------------ connection

    @property
    def conn(self) -> psycopg.Connection[Any]:
        with self._lock:
            if self._conn is None or self._conn.closed:
                conn = connect(self.kwargs)
                conn.execute("SET search_path = pg_catalog")
                self._conn = conn
                self._types = TypeCatalog(conn)
            return self._conn

    def _sql(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                cur = self.conn.execute(query, params)
                return cur.fetchall() if cur.description is not None else []
            except psycopg.Error as exc:
                raise classify(exc, "source query failed") from exc

    def parse_position(self, text: str) -> Position:
        return Lsn.decode(text)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(psycopg.Error):
                    self._conn.close()
                self._conn = None

    # ------------------------------------------------------------------------------------------------ checks

    def checks(self) -> list[Check]:
        c = self.config.connection
        try:
            conn = self.conn
        except SluiceError as exc:
            return [Check("connection", False, exc.message, exc.fix, _CONNECTION)]
        out = [Check("connection", True, f"connected to {c.host}:{c.port}/{c.database} as {c.user}", field=_CONNECTION)]
        tables: list[SourceTable] | None = None
        try:
            self.discover()
            tables = list(self.pg_tables.values())
            out.append(Check("catalog", True, f"{len(tables)} table(s) selected", field=("source", "postgres")))
        except SluiceError as exc:
            out.append(Check("catalog", False, exc.message, exc.fix, ("source", "postgres", "catalog")))
        with self._lock:
            out += source_checks(
                conn,
                logical=self.logical is not None,
                slot_name=self.slot_name,
                publication_name=self.user_publication,
                tables=tables,
            )
        return out

    def preflight(self, tables: list[TableSchema]) -> None:
        if not self.pg_tables:
            self.discover()
        with self._lock:
            raise_failed(
                source_checks(
                    self.conn,
                    logical=self.logical is not None,
                    slot_name=self.slot_name,
                    publication_name=self.user_publication,
                    tables=[self.pg_tables[t.table.label] for t in tables if t.table.label in self.pg_tables],
                )
            )

    # ------------------------------------------------------------------------------------------------ catalog

    def discover(self) -> list[TableSchema]:
        with self._lock:
            conn = self.conn
            try:
                pub_tables = None
                if self.user_publication:
                    pub_tables = publication_tables(conn, self.user_publication) or set()
                tables = discover_tables(
                    conn,
                    catalog=self.config.catalog,
                    partitions_as_root=self.config.partitions_as_root,
                    publication_tables=pub_tables,
                )
                typmods = {
                    (int(rel), str(name)): int(typmod)
                    for rel, name, typmod in conn.execute(
                        "SELECT attrelid, attname, atttypmod FROM pg_attribute WHERE attrelid = ANY(%s) "
                        "AND attnum > 0 AND NOT attisdropped",
                        ([t.oid for t in tables],),
                    ).fetchall()
                }
                assert self._types is not None
                schemas: list[TableSchema] = []
                self.pg_tables, self.schemas, self.pg_types = {}, {}, {}
                for t in tables:
                    types = [self._types.describe(c.type_oid, typmods.get((t.oid, c.name), -1)) for c in t.columns]
                    schema = TableSchema(
                        table=TableId(t.schema, t.name),
                        columns=tuple(
                            Column(c.name, column_type(pt), nullable=not c.not_null)
                            for c, pt in zip(t.columns, types, strict=True)
                        ),
                        key=tuple(t.key),
                    )
                    label = schema.table.label
                    self.pg_tables[label] = t
                    self.schemas[label] = schema
                    self.pg_types[label] = types
                    schemas.append(schema)
            except psycopg.Error as exc:
                raise classify(exc, "cannot read the source's catalog") from exc
        return schemas

    def prepare_stream(self, tables: list[TableSchema]) -> None:
        if self.logical is None or self.user_publication:
            return
        with self._lock:
            try:
                ensure_publication(
                    self.conn,
                    self.publication,
                    [(t.table.namespace, t.table.name) for t in tables],
                    via_root=self.config.partitions_as_root,
                )
            except psycopg.Error as exc:
                raise classify(exc, f"cannot create or update publication {self.publication}") from exc

    # ------------------------------------------------------------------------------------------------ snapshot

    def open_snapshot(self) -> SnapshotSession:
        if self.logical is None:
            # Snapshot only: no slot; a snapshot exported by a transaction this session holds open.
            holder = connect(self.kwargs, autocommit=False)
            try:
                holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                holder.read_only = True
                row = holder.execute("SELECT pg_export_snapshot()").fetchone()
                assert row is not None
            except BaseException:
                holder.close()
                raise
            return _Snapshot(self, str(row[0]), None, holder.close)
        with self._lock:
            exists, _, active = slot_position(self.conn, self.slot_name)
            if active:
                raise TransientError(
                    f"replication slot {self.slot_name} is in use by another process",
                    fix="At most one worker may stream from a slot: wait for the other to stop.",
                )
            if exists:
                drop_slot(self.conn, self.slot_name)
        try:
            created = create_slot(self.kwargs, self.slot_name)
        except psycopg2.Error as exc:
            raise classify(exc, f"cannot create replication slot {self.slot_name}") from exc
        return _Snapshot(self, created.snapshot_name, Lsn(created.consistent_point), created.release)

    def resume_snapshot(self) -> SnapshotSession:
        return _Snapshot(self, None, None, lambda: None)

    def plan(self, tables: list[TableSchema], batch_rows: int) -> list[SnapshotChunk]:
        """CTID page ranges of about ``batch_rows`` rows per relation (leaf partitions for a partitioned root);
        the last range of each relation is open-ended (``hi_page`` None), so rows added later are read too."""
        if not self.pg_tables:
            self.discover()
        parallel = bool(self.config.parallel_snapshots_enabled)
        chunks: list[SnapshotChunk] = []
        for schema in tables:
            label = schema.table.label
            n = 0
            for leaf_oid, leaf_schema, leaf_name in self.pg_tables[label].leaves:
                row = self._sql(
                    "SELECT pg_relation_size(%s::oid) / current_setting('block_size')::int, reltuples "
                    "FROM pg_class WHERE oid = %s",
                    (leaf_oid, leaf_oid),
                )
                pages, tuples = row[0] if row else (0, -1)
                pages = int(pages)
                per_page = (float(tuples) / pages) if tuples and tuples > 0 and pages > 0 else 60.0
                step = max(1, int(batch_rows / max(per_page, 1.0)))
                if not parallel:
                    step = max(step, pages + 1)
                relation = f"{leaf_schema}.{leaf_name}"
                lo = 0
                while True:
                    hi: int | None = lo + step
                    assert hi is not None
                    last = hi >= pages
                    bounds = {"relation": relation, "lo_page": lo, "hi_page": None if last else hi}
                    chunks.append(SnapshotChunk(label, n, bounds))
                    n += 1
                    if last:
                        break
                    lo = hi
        return chunks

    # ------------------------------------------------------------------------------------------------ stream

    def can_resume(self, position: Position) -> None:
        if self.logical is None:
            return
        with self._lock:
            exists, _, active = slot_position(self.conn, self.slot_name)
        if not exists:
            raise ReplicationError(
                f"replication slot {self.slot_name} is gone, so changes made since position {position} cannot be "
                "read any more",
                fix=_REINIT_FIX,
            )
        if active:
            raise TransientError(
                f"replication slot {self.slot_name} is in use by another process",
                fix="At most one worker may stream from a slot: wait for the other to stop.",
            )

    def stream(self, start: Position, tables: list[TableSchema]) -> ChangeStream:
        if not isinstance(start, Lsn):
            raise ReplicationError(f"not a PostgreSQL position: {start!r}", fix=_REINIT_FIX)
        if self.logical is None:
            raise ConfigError(
                "a snapshot-only connector has no change stream",
                fix="Use replication_type.logical_replication to stream changes.",
            )
        if any(t.table.label not in self.pg_types for t in tables):
            self.discover()
        return _ChangeStream(self, start, tables)

    def lag_bytes(self, position: int) -> int | None:
        with contextlib.suppress(SluiceError):
            rows = self._sql("SELECT (pg_current_wal_lsn() - %s::pg_lsn)::bigint", (str(Lsn(position)),))
            if rows and rows[0][0] is not None:
                return max(0, int(rows[0][0]))
        return None

    def _describe(self, oid: int, typmod: int) -> PgType:
        with self._lock:
            _ = self.conn
            assert self._types is not None
            return self._types.describe(oid, typmod)

    def _not_null(self, schema: str, name: str) -> dict[str, bool]:
        rows = self._sql(
            "SELECT a.attname, a.attnotnull FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
            "AND a.attnum > 0 AND NOT a.attisdropped",
            (schema, name),
        )
        return {str(r[0]): bool(r[1]) for r in rows}

    def _existing(self, schema: TableSchema, added: list[Column]) -> dict[str, ExistingValues]:
        with self._lock:
            try:
                return existing_values(self.conn, schema.table.namespace, schema.table.name, [c.name for c in added])
            except psycopg.Error as exc:
                raise classify(exc, f"cannot read the values of columns added to {schema.table.label}") from exc

    # ------------------------------------------------------------------------------------------------ retention

    def backfill_rows(self, table: TableSchema, columns: list[str], batch_rows: int) -> Iterator[list[tuple[Any, ...]]]:
        """PostgreSQL text values, read under one snapshot through a server-side cursor (see schema_changes)."""
        t = table.table
        return backfill_rows(self.conn, t.namespace, t.name, list(table.key), columns, batch_rows)

    def retained(self) -> RetainedLog:
        # restart_lsn, not confirmed_flush_lsn: the server keeps WAL from restart_lsn on (the start of the oldest
        # transaction the decoder may still need), which is what fills its disk. A lost slot has no restart_lsn.
        try:
            rows = self._sql(
                "SELECT active, (pg_current_wal_lsn() - restart_lsn)::bigint, wal_status, safe_wal_size "
                "FROM pg_replication_slots WHERE slot_name = %s",
                (self.slot_name,),
            )
        except SluiceError as exc:
            return RetainedLog(self.slot_name, error=exc.message)
        if not rows:
            return RetainedLog(self.slot_name, exists=False)
        active, retained, wal_status, safe = rows[0]
        return RetainedLog(
            self.slot_name,
            exists=True,
            active=bool(active),
            retained_bytes=None if retained is None else int(retained),
            wal_status=wal_status,
            safe_wal_bytes=None if safe is None else int(safe),
        )

    def cleanup(self, *, force: bool = False, timeout: float = 30.0) -> list[str]:
        """Drop the slot and (unless the user named one) Sluice's publication; returns what was dropped.

        An active slot means a worker still streams from it: without ``force`` that is a :class:`TransientError`
        (stop the worker first); with ``force`` its WAL sender is terminated and the slot dropped. A publication
        named by the user (``publication_name``) is the user's and is kept, as are the sink's tables.
        """
        slot = self.slot_name
        dropped: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            rows = self._sql("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,))
            if not rows:
                break
            pid = rows[0][0]
            if pid is None:
                try:
                    self._sql("SELECT pg_drop_replication_slot(%s)", (slot,))
                except TransientError:
                    # It became active between the two statements: look again.
                    if time.monotonic() > deadline:
                        raise
                    continue
                dropped.append(f"slot {slot}")
                break
            if not force:
                raise TransientError(
                    f"replication slot {slot} is still in use by process {pid}",
                    fix="Stop the connector's worker first, or drop with force to terminate its WAL sender.",
                )
            self._sql("SELECT pg_terminate_backend(%s)", (pid,))
            if time.monotonic() > deadline:
                raise TransientError(f"replication slot {slot} stayed active after terminating its WAL sender")
            time.sleep(0.1)
        if not self.user_publication:
            name = self.publication
            if self._sql("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)):
                self._sql(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
                dropped.append(f"publication {name}")
        return dropped


class _Snapshot(SnapshotSession):
    """Reads chunks under an exported snapshot (or, without one, current data), one connection per read."""

    def __init__(self, source: PostgresSource, snapshot: str | None, position: Lsn | None, release: Callable[[], None]):
        self.source = source
        self.snapshot = snapshot
        self.position = position
        self._release = release

    def read(self, chunk: SnapshotChunk, batch_rows: int) -> Iterator[list[tuple[Any, ...]]]:
        src = self.source
        table = src.pg_tables[chunk.table]
        schema = src.schemas[chunk.table]
        types = src.pg_types[chunk.table]
        relation = chunk.bounds.get("relation", table.qualified)
        leaf = next(((s, n) for _, s, n in table.leaves if f"{s}.{n}" == relation), None)
        if leaf is None:
            raise ReplicationError(f"chunk {chunk.table}#{chunk.index} names relation {relation!r}, not a part of it")
        lo, hi = int(chunk.bounds.get("lo_page", 0)), chunk.bounds.get("hi_page")
        where: list[sql.Composable] = []
        if lo > 0:
            where.append(sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({lo},0)")))
        if hi is not None:
            where.append(sql.SQL("ctid < {}::tid").format(sql.Literal(f"({int(hi)},0)")))
        query = sql.SQL("COPY (SELECT {c} FROM ONLY {t} WHERE {w}) TO STDOUT").format(
            c=sql.SQL(", ").join(sql.Identifier(c) for c in schema.column_names),
            t=sql.Identifier(*leaf),
            w=sql.SQL(" AND ").join(where) if where else sql.SQL("true"),
        )
        batch_rows = max(1, batch_rows)
        try:
            with connect(src.kwargs, autocommit=False) as conn:
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                conn.read_only = True
                install_loaders(conn.adapters, types)
                if self.snapshot:
                    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot)))
                with conn.cursor() as cur, cur.copy(query) as copy:
                    copy.set_types([t.oid for t in types])
                    batch: list[tuple[Any, ...]] = []
                    for row in copy.rows():
                        batch.append(row)
                        if len(batch) >= batch_rows:
                            yield batch
                            batch = []
                    if batch:
                        yield batch
                conn.rollback()
        except psycopg.Error as exc:
            raise classify(exc, f"cannot read {relation} from the source") from exc

    def close(self) -> None:
        self._release()


class _ChangeStream(ChangeStream):
    """pgoutput (protocol 2, streaming off) from the connector's slot as neutral events."""

    def __init__(self, source: PostgresSource, start: Lsn, tables: list[TableSchema]) -> None:
        self.source = source
        catalog = source.config.catalog
        self.decoder = EventDecoder(
            schemas={(t.table.namespace, t.table.name): t for t in tables},
            types={
                (t.table.namespace, t.table.name): source.pg_types[t.table.label]
                for t in tables
                if t.table.label in source.pg_types
            },
            catalog=SchemaSource(
                describe=source._describe,
                not_null=source._not_null,
                excluded=lambda schema, name: excluded_columns(catalog, schema, name),
                existing=source._existing,
            ),
            adapters=AdaptersMap(source.conn.adapters),
            start=start.value,
        )
        #: the last position acked (durable in the sink) and the last Commit handed out
        self.acked = start.value
        self.emitted = start.value
        try:
            self.rs = ReplicationStream(
                source.kwargs,
                slot=source.slot_name,
                publication=source.publication,
                start_lsn=start.value,
                streaming=False,
            )
        except psycopg2.Error as exc:
            raise classify(exc, f"cannot stream from replication slot {source.slot_name}") from exc

    def poll(self, timeout: float) -> Event | None:
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            while True:
                msg = self.rs.read()
                if msg is None:
                    self._idle()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self.rs.wait(remaining)
                    continue
                event = self.decoder.feed(bytes(msg.payload))
                if event is not None:
                    if isinstance(event, Commit):
                        assert isinstance(event.position, Lsn)
                        self.emitted = event.position.value
                    return event
                if time.monotonic() >= deadline:
                    return None  # a run of changes of tables not replicated: let the caller breathe
        except psycopg2.Error as exc:
            raise classify(exc, f"replication from slot {self.source.slot_name} failed") from exc

    def _idle(self) -> None:
        """Nothing waiting and everything handed out is durable: let the slot move past WAL without our changes,
        instead of retaining it for ever (as PostgreSQL's own subscribers do)."""
        if self.decoder.in_transaction or self.acked < self.emitted:
            return
        end = self.rs.wal_end
        if end > self.rs.flushed and end >= self.acked:
            self.rs.confirm(end)

    def ack(self, position: Position) -> None:
        if not isinstance(position, Lsn):
            raise ReplicationError(f"not a PostgreSQL position: {position!r}")
        if position.value > self.acked:
            self.acked = position.value
        try:
            self.rs.confirm(position.value)
        except psycopg2.Error as exc:
            raise classify(exc, f"cannot confirm position {position} to slot {self.source.slot_name}") from exc

    def lag(self) -> Lag:
        return Lag(bytes=self.source.lag_bytes(self.acked))

    def close(self) -> None:
        self.rs.close()
