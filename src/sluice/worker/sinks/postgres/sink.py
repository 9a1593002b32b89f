"""The PostgreSQL sink: neutral events in, set-based SQL out, the checkpoint in the same transaction (exactly once).

- :meth:`PostgresSink.prepare` creates the target schema, the source's enums and the tables (types by
  :mod:`.types`; no key yet, :meth:`~PostgresSink.finish_snapshot` adds it after the bulk load). Existing tables are
  read back as they really are (:func:`~.ddl.sink_columns`); columns the source has and the sink lacks are added
  through the schema-change path under ``migration_strategy``.
- snapshot: :meth:`~PostgresSink.start_snapshot` empties the tables and records the plan (``sluice.snapshot_chunks``,
  with each chunk's ``bounds``) and the checkpoint in one transaction; each copying thread's
  :class:`PostgresSnapshotWriter` COPYs rows into the table (or, resuming, upserts them through a staging table)
  and commits each chunk together with its done mark.
- stream: :meth:`~PostgresSink.apply` writes changes into the open transaction (:mod:`.rows`), and
  :meth:`~PostgresSink.commit` writes the checkpoint (``sluice.checkpoints``) in that same transaction and commits
  with ``synchronous_commit = on``: what is committed is durable, so :meth:`~PostgresSink.durable` is everything
  committed.

:attr:`PostgresSink.conn`, :attr:`~PostgresSink.kwargs` and :attr:`~PostgresSink.tables` (by source label) are
what the PG->PG fast path needs of the sink.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat, Transformer

from sluice.errors import SluiceError
from sluice.models import Connector
from sluice.models.migration import MigrationStrategy
from sluice.worker.checkpoints import Checkpoint
from sluice.worker.drivers.postgres.catalog import SourceColumn, SourceTable, UserType
from sluice.worker.drivers.postgres.connection import conninfo_kwargs
from sluice.worker.drivers.postgres.errors import classify as classify_pg
from sluice.worker.events import Change, Column, RowChange, SchemaChange, TableSchema, Truncate
from sluice.worker.sinks.base import DeliveryGuarantee, Sink, SnapshotWriter
from sluice.worker.sinks.postgres.ddl import SinkTable, ensure_key, ensure_schema, ensure_types, sink_columns
from sluice.worker.sinks.postgres.rows import RowApplier, Target, copy_rows, copy_text, upsert_rows
from sluice.worker.sinks.postgres.schema_change import apply_schema_change, backfill, finish_backfill
from sluice.worker.sinks.postgres.state import StateStore
from sluice.worker.sinks.postgres.types import pg_type, resolve_type, text_compare, user_enums
from sluice.worker.sources.base import Check, SnapshotChunk

__all__ = ["PostgresSink", "PostgresSnapshotWriter"]

log = logging.getLogger(__name__)

#: advisory lock key serializing DDL of workers that share a sink database (the fast path uses the same key)
SETUP_LOCK = 0x51C3_0001


def _connect(kwargs: dict[str, Any]) -> psycopg.Connection[Any]:
    conn = psycopg.connect(**kwargs)
    # Unqualified names resolve to built-ins only: a user's table or type can never shadow one in our SQL.
    conn.execute("SET search_path = pg_catalog")
    # Staging tables are temporary: let a batch stay in memory instead of spilling to disk.
    conn.execute("SET temp_buffers = '128MB'")
    # A commit returns only once durable, so every committed position is a durable one.
    conn.execute("SET synchronous_commit = on")
    conn.commit()
    return conn


class PostgresSink(Sink):
    kind = "postgres"
    guarantee = DeliveryGuarantee.EXACTLY_ONCE

    def __init__(self, connector: Connector) -> None:
        super().__init__(connector)
        self.config = connector.sink.config
        app = f"sluice-{connector.id}"[:63]
        #: libpq keyword arguments (hold the password: never log them)
        self.kwargs: dict[str, Any] = conninfo_kwargs(self.config.connection, application_name=app)
        self.state = StateStore(connector.id)
        #: sink tables by source table label (``TableId.label``)
        self.tables: dict[str, SinkTable] = {}
        self.schemas: dict[str, TableSchema] = {}
        self._targets: dict[str, Target] = {}
        self._conn: psycopg.Connection[Any] | None = None
        self._applier: RowApplier | None = None
        self._lock = threading.Lock()
        self._keys_ready = False

    # ------------------------------------------------------------------ connection

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The sink's main connection (opened on first use, with the state tables ensured)."""
        if self._conn is None or self._conn.closed:
            conn = _connect(self.kwargs)
            try:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
                self.state.ensure(conn)
                conn.commit()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._applier = None
        return self._conn

    @property
    def strategy(self) -> MigrationStrategy | None:
        strategy: MigrationStrategy | None = self.config.migration_strategy
        return strategy

    def classify(self, exc: BaseException) -> SluiceError | None:
        """Errors of this sink's connections (psycopg 3 errors carry the connection they came from)."""
        if not isinstance(exc, psycopg.Error):
            return None
        pgconn = getattr(exc, "pgconn", None)
        if pgconn is None:
            return None
        try:
            where = (pgconn.host.decode(), pgconn.port.decode(), pgconn.db.decode())
        except (AttributeError, UnicodeDecodeError, psycopg.OperationalError):
            return None
        kw = self.kwargs
        if where != (str(kw.get("host")), str(kw.get("port")), str(kw.get("dbname"))):
            return None
        return classify_pg(exc, side="sink", conninfo=self.kwargs)

    # ------------------------------------------------------------------ checks

    def checks(self) -> list[Check]:
        conn_field = ("sink", "postgres", "connection")
        user_field = (*conn_field, "user")
        c = self.config.connection
        try:
            conn = psycopg.connect(**self.kwargs, autocommit=True)
        except psycopg.Error as exc:
            err = classify_pg(exc, side="sink")
            return [Check("sink connection", False, err.message, err.fix, conn_field)]
        out = [Check("sink connection", True, f"connected to {c.host}:{c.port}/{c.database} as {c.user}")]
        with conn:
            row = conn.execute(
                "SELECT current_user, current_database(), has_database_privilege(current_database(), 'CREATE')"
            ).fetchone()
            assert row is not None
            user, database, can_create = str(row[0]), str(row[1]), bool(row[2])
            target = self.config.target_schema
            needed = ["sluice"] + ([target] if target else [])
            existing: dict[str, tuple[bool, bool]] = {}
            for schema in needed:
                found = conn.execute(
                    "SELECT has_schema_privilege(oid, 'USAGE'), has_schema_privilege(oid, 'CREATE') "
                    "FROM pg_namespace WHERE nspname = %s",
                    (schema,),
                ).fetchone()
                if found is not None:
                    existing[schema] = (bool(found[0]), bool(found[1]))
            grant_db = f'GRANT CREATE ON DATABASE "{database}" TO "{user}";'
            missing = [s for s in needed if s not in existing]
            if can_create:
                out.append(Check("sink schema creation", True, f"{user} may create schemas in {database}"))
            elif missing:
                out.append(
                    Check(
                        "sink schema creation",
                        False,
                        f"{user} may not create schemas in {database}, and schema(s) {', '.join(missing)} are missing",
                        f"Run as a superuser on the sink: {grant_db} (or create the schemas for {user}).",
                        user_field,
                    )
                )
            elif not target:
                out.append(
                    Check(
                        "sink schema creation",
                        False,
                        f"{user} may not create schemas in {database}; without target_schema, tables go to a schema "
                        "named like the source's",
                        f"Run {grant_db} on the sink, or set sink.postgres.target_schema to a schema {user} may "
                        "create tables in.",
                        (*conn_field[:2], "target_schema"),
                    )
                )
            else:
                out.append(Check("sink schema creation", True, f"schemas {', '.join(needed)} exist"))
            for schema, (usage, create) in existing.items():
                lacking = " and ".join(p for p, ok in (("USAGE", usage), ("CREATE", create)) if not ok)
                field = (*conn_field[:2], "target_schema") if schema == target else user_field
                if usage and create:
                    out.append(Check(f"sink schema {schema}", True, f"{user} may create tables in schema {schema}"))
                else:
                    out.append(
                        Check(
                            f"sink schema {schema}",
                            False,
                            f"{user} lacks {lacking} on schema {schema}",
                            f'Run as the schema\'s owner on the sink: GRANT USAGE, CREATE ON SCHEMA "{schema}" TO '
                            f'"{user}";',
                            field,
                        )
                    )
        return out

    # ------------------------------------------------------------------ tables

    def prepare(self, tables: list[TableSchema]) -> None:
        conn = self.conn
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
        self._ensure_enums(conn, tables)
        for schema in tables:
            self._prepare_table(conn, schema)
        conn.commit()

    @staticmethod
    def _ensure_enums(conn: psycopg.Connection[Any], tables: list[TableSchema]) -> None:
        enums: dict[tuple[str, str], UserType] = {}
        for t in tables:
            for c in t.columns:
                for u in user_enums(c.type):
                    enums.setdefault((u.schema, u.name), u)
        ensure_types(conn, list(enums.values()))

    def _prepare_table(self, conn: psycopg.Connection[Any], schema: TableSchema) -> SinkTable:
        label = schema.table.label
        target_schema = self.config.target_schema or schema.table.namespace
        ensure_schema(conn, target_schema)
        existing = sink_columns(conn, target_schema, schema.table.name)
        key = set(schema.key)
        if not existing:
            defs = [
                sql.SQL("{} {}{}").format(
                    sql.Identifier(c.name),
                    sql.SQL(resolve_type(conn, c.type)),
                    sql.SQL(" NOT NULL" if not c.nullable or c.name in key else ""),
                )
                for c in schema.columns
            ]
            # No key yet: the snapshot loads faster without index maintenance; finish_snapshot() adds it (and apply
            # does before its first merge).
            conn.execute(
                sql.SQL("CREATE TABLE {} ({})").format(
                    sql.Identifier(target_schema, schema.table.name), sql.SQL(", ").join(defs)
                )
            )
        table = self._describe(conn, schema, target_schema)
        if existing:
            # An existing sink table is compared with the source as it is now, as a schema change would be (under
            # the strategy): columns added or dropped while the connector was stopped, types, nullability. The
            # stream resumes with the source's current shape, so a difference not handled here would never show.
            apply_schema_change(conn, table, SchemaChange(schema=schema), self.strategy)
            table.columns = self._describe(conn, schema, target_schema).columns
        self.tables[label] = table
        self.schemas[label] = schema
        self._targets[label] = Target(table, schema)
        return table

    @staticmethod
    def _describe(conn: psycopg.Connection[Any], schema: TableSchema, target_schema: str) -> SinkTable:
        """The sink table as it is, with the key of ``schema``."""
        columns = [
            SourceColumn(name, type_sql, 0, not_null, False, text_compare(type_sql))
            for name, (type_sql, not_null) in sink_columns(conn, target_schema, schema.table.name).items()
        ]
        source = SourceTable(
            oid=0,
            schema=schema.table.namespace,
            name=schema.table.name,
            relkind="r",
            replica_identity="d" if schema.key else "f",
            columns=[_source_column(c) for c in schema.columns],
            key=list(schema.key),
        )
        return SinkTable(
            schema=target_schema, name=schema.table.name, columns=columns, key=list(schema.key), source=source
        )

    def target(self, label: str) -> Target:
        """Where rows of the source table ``label`` go."""
        target = self._targets.get(label)
        if target is None:
            raise SluiceError(
                f"sink: rows of {label}, a table the sink was not prepared for",
                fix="This is a bug in the source or the engine (a SchemaChange must announce a new table); please "
                "report it with the worker log.",
            )
        return target

    # ------------------------------------------------------------------ checkpoints and the snapshot plan

    def load_checkpoint(self) -> Checkpoint | None:
        conn = self.conn
        checkpoint = self.state.load_checkpoint(conn)
        conn.commit()
        return checkpoint

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        conn = self.conn
        self.state.save_checkpoint(conn, checkpoint)
        conn.commit()

    def start_snapshot(self, checkpoint: Checkpoint, chunks: list[SnapshotChunk], tables: list[TableSchema]) -> None:
        conn = self.conn
        sink_tables = [self.tables[t.table.label] for t in tables]
        if sink_tables:
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(t.ident for t in sink_tables)))
            self.state.forget_tables(conn, [t.label for t in sink_tables])  # the fast path's floors of them
        self.state.save_chunks(conn, chunks)
        self.state.save_checkpoint(conn, checkpoint)
        conn.commit()

    def load_plan(self) -> list[SnapshotChunk]:
        conn = self.conn
        plan = self.state.load_chunks(conn)
        conn.commit()
        return plan

    def snapshot_writer(self, *, upsert: bool) -> SnapshotWriter:
        if upsert:
            # Upserts need the key index; build it once, before any writer thread starts writing.
            with self._lock:
                if not self._keys_ready:
                    for table in self.tables.values():
                        ensure_key(self.conn, table)
                    self.conn.commit()
                    self._keys_ready = True
        return PostgresSnapshotWriter(self, upsert=upsert)

    def finish_snapshot(self, tables: list[TableSchema]) -> None:
        conn = self.conn
        for t in tables:
            ensure_key(conn, self.tables[t.table.label])
        conn.commit()

    # ------------------------------------------------------------------ changes

    def apply(self, changes: Sequence[Change]) -> None:
        conn = self.conn
        if self._applier is None:
            self._applier = RowApplier(conn)
        applier = self._applier
        try:
            for change in changes:
                if isinstance(change, RowChange):
                    applier.add(self.target(change.table.label), change)
                elif isinstance(change, Truncate):
                    applier.flush()
                    self._truncate(change)
                else:
                    applier.flush()
                    self._schema_change(change)
            applier.flush()
        except BaseException:
            self._applier = None  # pending rows belong to a transaction the caller must now abort
            raise

    def _truncate(self, change: Truncate) -> None:
        known = [self.tables[t.label] for t in change.tables if t.label in self.tables]
        for t in change.tables:
            if t.label not in self.tables:
                log.warning("truncate of %s, a table the sink does not replicate; ignored", t.label)
        if known:
            self.conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(t.ident for t in known)))

    def _schema_change(self, change: SchemaChange) -> None:
        conn = self.conn
        schema = change.schema
        label = schema.table.label
        table = self.tables.get(label)
        self._ensure_enums(conn, [schema])
        if table is None:
            self._prepare_table(conn, schema)  # a table appeared: created in this transaction
            return
        apply_schema_change(conn, table, change, self.strategy)
        # The SinkTable object is shared (the fast path holds it): update it in place.
        described = self._describe(conn, schema, table.schema)
        table.columns = described.columns
        table.key = described.key
        table.source = described.source
        self.schemas[label] = schema
        self._targets[label] = Target(table, schema)
        if self._applier is not None:
            self._applier.forget_key(table.label)

    def backfill(self, change: SchemaChange, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        table = self.tables.get(change.schema.table.label)
        if table is not None and rows:
            backfill(self.conn, table, columns, rows)

    def finish_backfill(self, change: SchemaChange) -> None:
        table = self.tables.get(change.schema.table.label)
        if table is not None:
            finish_backfill(self.conn, table, change)

    def abort(self) -> None:
        self._applier = None
        if self._conn is not None and not self._conn.closed:
            self._conn.rollback()

    def commit(self, checkpoint: Checkpoint) -> None:
        conn = self.conn
        self.state.save_checkpoint(conn, checkpoint)
        conn.commit()

    def reset(self) -> None:
        conn = self.conn
        self.state.clear(conn)
        conn.commit()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._applier = None
        if conn is not None and not conn.closed:
            try:
                conn.rollback()  # whatever was applied without a commit is not kept
            finally:
                conn.close()


def _source_column(c: Column) -> SourceColumn:
    type_sql = pg_type(c.type)
    return SourceColumn(c.name, type_sql, 0, not c.nullable, False, text_compare(type_sql))


class PostgresSnapshotWriter(SnapshotWriter):
    """One copying thread's writer: its own connection; each chunk commits together with its done mark."""

    def __init__(self, sink: PostgresSink, *, upsert: bool) -> None:
        self.sink = sink
        self.upsert = upsert
        self.conn = _connect(sink.kwargs)

    def write(self, chunk: SnapshotChunk, rows: list[tuple[Any, ...]]) -> None:
        target = self.sink.target(chunk.table)
        mapped = rows if target.identity else [target.row(r) for r in rows]
        if self.upsert:
            upsert_rows(self.conn, target.view, mapped)
        else:
            copy_rows(self.conn, target.view, mapped)

    def write_copy_text(
        self, chunk: SnapshotChunk, blocks: Iterable[tuple[bytes, int]], halted: Callable[[], bool]
    ) -> int | None:
        """Rows of ``chunk`` already as text COPY lines of its target's columns (:attr:`Target.view`), in blocks
        with their row counts (a fast path's snapshot); the row count, or None when ``halted`` midway."""
        if self.conn.info.encoding != "utf-8":
            self.conn.execute("SET client_encoding TO 'UTF8'")  # the lines are UTF-8, as psycopg's would be
            self.conn.commit()
        return copy_text(self.conn, self.sink.target(chunk.table).view, blocks, upsert=self.upsert, halted=halted)

    def text_dumper(self) -> Callable[[Any], bytes | None]:
        """A neutral value as :meth:`write` would put it in a text COPY line (unescaped; None for NULL)."""
        tx = Transformer.from_context(self.conn)
        formats = [PyFormat.TEXT]

        def dump(value: Any) -> bytes | None:
            if value is None:
                return None
            out = tx.dump_sequence((value,), formats)[0]
            return None if out is None else bytes(out)

        return dump

    def done(self, chunk: SnapshotChunk, rows: int) -> None:
        self.sink.state.mark_chunk_done(self.conn, chunk, rows)
        self.conn.commit()

    def abort(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()
