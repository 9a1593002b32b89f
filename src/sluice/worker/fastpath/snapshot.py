"""Consistent parallel snapshot: CTID page ranges copied with binary COPY, straight from source to sink.

Each table (each leaf partition when a partitioned table is replicated as its root) is split into page ranges of
about ``limits.snapshot.max_buffer_rows`` rows. Worker threads import the slot's exported snapshot
(``SET TRANSACTION SNAPSHOT``) once and then copy chunk after chunk: the source's ``COPY (SELECT ... WHERE ctid
range) TO STDOUT (FORMAT binary)`` bytes are written unchanged into the sink's ``COPY ... FROM STDIN (FORMAT
binary)`` — no row is ever parsed in Python, which is the fastest path there is. Tables whose columns embed user
type OIDs in binary form (arrays of enums, domains) use text COPY instead.

libpq hands a COPY out one row at a time. The source side therefore runs on psycopg2, whose ``copy_expert`` loop
is C and writes each row into a C ``io.BufferedWriter``; only full 1 MB buffers reach Python, which passes them to
the sink's COPY (psycopg 3). Iterating psycopg 3's ``Copy`` instead costs about 1 µs of Python per row, which on two
cores is CPU taken from the PostgreSQL backends doing the real work (measured: 1.7 s against 0.5 s for 2M rows).

Each chunk commits in the sink together with its "done" mark, so a restart copies only the unfinished chunks. After
a restart the exported snapshot is gone: unfinished chunks are then copied under a fresh snapshot through a staging
table with an upsert. That is still exact for keyed tables, because the change stream is replayed from the slot's
original consistent point and every change is applied idempotently by key (see ``pipeline.py``). Keyless tables
cannot be upserted, so an interrupted snapshot containing one starts over.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import psycopg2
import psycopg2.extensions
from psycopg import sql

from sluice.worker.sinks.postgres.ddl import SinkTable
from sluice.worker.sinks.postgres.state import Chunk, StateStore

__all__ = ["SnapshotCopier", "plan_chunks"]

log = logging.getLogger(__name__)

_COPY_BUFFER = 1 << 20


def plan_chunks(conn: psycopg.Connection[Any], tables: list[SinkTable], max_rows: int, parallel: bool) -> list[Chunk]:
    """Page ranges per relation; the last range of each relation is open-ended (``hi_page`` None)."""
    chunks: list[Chunk] = []
    for table in tables:
        n = 0
        for leaf_oid, leaf_schema, leaf_name in table.source.leaves:
            pages, tuples = conn.execute(
                "SELECT pg_relation_size(%s::oid) / current_setting('block_size')::int, reltuples "
                "FROM pg_class WHERE oid = %s",
                (leaf_oid, leaf_oid),
            ).fetchone() or (0, -1)
            pages = int(pages)
            per_page = (float(tuples) / pages) if tuples and tuples > 0 and pages > 0 else 60.0
            step = max(1, int(max_rows / max(per_page, 1.0)))
            if not parallel:
                step = max(step, pages + 1)
            source = f"{leaf_schema}.{leaf_name}"
            lo = 0
            while True:
                hi = lo + step
                if hi >= pages:
                    chunks.append(Chunk(table.label, n, source, lo, None))
                    n += 1
                    break
                chunks.append(Chunk(table.label, n, source, lo, hi))
                n += 1
                lo = hi
    return chunks


class _ToCopy(io.RawIOBase):
    """The raw end of the buffered writer psycopg2 copies rows into: each full buffer goes to the sink's COPY."""

    def __init__(self, copy: psycopg.Copy) -> None:
        self.copy = copy
        #: set when the copy failed: the writer's final flush (also at garbage collection) must not send more
        self.failed = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(data)
        if not self.failed:
            self.copy.write(bytes(data))  # the buffer is reused as soon as this returns
        return n


class SnapshotCopier:
    """Copies the unfinished chunks with ``workers`` threads; each thread has one source and one sink connection."""

    def __init__(
        self,
        *,
        source_kwargs: dict[str, Any],
        sink_kwargs: dict[str, Any],
        tables: dict[str, SinkTable],
        state: StateStore,
        workers: int,
        snapshot_name: str | None,
        upsert: bool,
        stop: threading.Event,
        on_chunk: Callable[[Chunk, int], None],
    ) -> None:
        self.source_kwargs = source_kwargs
        self.sink_kwargs = sink_kwargs
        self.tables = tables
        self.state = state
        self.workers = max(1, workers)
        self.snapshot_name = snapshot_name
        self.upsert = upsert
        self.stop = stop
        self.on_chunk = on_chunk
        self._lock = threading.Lock()
        self._queue: list[Chunk] = []

    def run(self, chunks: list[Chunk]) -> bool:
        """Copy ``chunks``; True when all are done, False when stopped early."""
        # A stack popped from the end: reversed, so chunks are taken in plan order.
        self._queue = list(reversed(chunks))
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="snapshot") as pool:
            futures = [pool.submit(self._worker) for _ in range(self.workers)]
            errors = []
            for f in futures:
                try:
                    f.result()
                except BaseException as exc:
                    errors.append(exc)
                    self.stop.set()
            if errors:
                raise errors[0]
        with self._lock:
            return not self._queue

    def _next(self) -> Chunk | None:
        with self._lock:
            if self.stop.is_set() or not self._queue:
                return None
            return self._queue.pop()

    def _worker(self) -> None:
        src = psycopg2.connect(**self.source_kwargs)
        try:
            with psycopg.connect(**self.sink_kwargs) as snk:
                src.set_session(isolation_level="REPEATABLE READ", readonly=True)
                if self.snapshot_name:
                    with src.cursor() as cur:
                        cur.execute("SET TRANSACTION SNAPSHOT %s", (self.snapshot_name,))
                while True:
                    chunk = self._next()
                    if chunk is None:
                        break
                    rows = self._copy(src, snk, chunk)
                    self.on_chunk(chunk, rows)
                    if not self.snapshot_name:
                        src.commit()  # a fresh snapshot per chunk when there is no exported one to share
                src.rollback()
        finally:
            src.close()

    def _copy(self, src: psycopg2.extensions.connection, snk: psycopg.Connection[Any], chunk: Chunk) -> int:
        table = self.tables[chunk.table_name]
        binary = table.source.binary_safe
        fmt = sql.SQL("(FORMAT binary)" if binary else "")
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.column_names)
        schema, _, name = chunk.source_table.partition(".")
        where: list[sql.Composable] = [sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({chunk.lo_page},0)"))]
        if chunk.hi_page is not None:
            where.append(sql.SQL("ctid < {}::tid").format(sql.Literal(f"({chunk.hi_page},0)")))
        if chunk.lo_page == 0 and chunk.hi_page is None:
            where = [sql.SQL("true")]
        copy_out = sql.SQL("COPY (SELECT {c} FROM ONLY {t} WHERE {w}) TO STDOUT {f}").format(
            c=cols, t=sql.Identifier(schema, name), w=sql.SQL(" AND ").join(where), f=fmt
        )
        with snk.transaction():
            target = table.ident
            into: sql.Composable
            stage = sql.Identifier(f"sluice_snap_{abs(hash(table.label)) % 10**8}")
            if self.upsert:
                snk.execute(
                    sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {s} AS SELECT {c} FROM {t} WITH NO DATA").format(
                        s=stage, c=cols, t=target
                    )
                )
                into = stage
            else:
                into = target
            copy_in = sql.SQL("COPY {t} ({c}) FROM STDIN {f}").format(t=into, c=cols, f=fmt)
            with snk.cursor() as out_cur:
                with out_cur.copy(copy_in) as cout, src.cursor() as in_cur:
                    raw = _ToCopy(cout)
                    forward = io.BufferedWriter(raw, buffer_size=_COPY_BUFFER)
                    try:
                        in_cur.copy_expert(copy_out.as_string(snk), forward)
                        forward.flush()
                    except BaseException:
                        raw.failed = True
                        raise
                rows = max(out_cur.rowcount, 0)
            if self.upsert:
                non_key = [c for c in table.column_names if c not in table.key]
                action = (
                    sql.SQL("DO UPDATE SET {}").format(
                        sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in non_key)
                    )
                    if non_key
                    else sql.SQL("DO NOTHING")
                )
                snk.execute(
                    sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} ON CONFLICT ({k}) {a}").format(
                        t=target, c=cols, s=stage, k=sql.SQL(", ").join(map(sql.Identifier, table.key)), a=action
                    )
                )
                snk.execute(sql.SQL("TRUNCATE {}").format(stage))
            self.state.mark_done(snk, chunk, rows)
        log.debug("chunk %s/%d copied: %d rows", chunk.table_name, chunk.chunk_no, rows)
        return rows
