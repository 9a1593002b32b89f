"""MySQL / MariaDB -> PostgreSQL: the general flow, with a snapshot that skips the neutral model.

Each chunk's rows go from the server's text-protocol packets to PostgreSQL text COPY lines in one compiled loop
(:mod:`sluice.worker.sources.mysql.copytext`), one converter per column decided from the table's schema; the
values whose text differs between the two servers go through the column's fallback, which is the neutral path
itself (PyMySQL's converter, the source's loader, the sink's psycopg dumper), so the sink holds byte-for-byte what
the general flow writes. Chunks, the consistent point, resume by chunk and the stream are the general flow's, on
the same source and sink objects. ``SLUICE_FASTPATH=off`` runs the general flow instead, and so does a build
without the C speedup (the Python reference of the loop is there for tests, slower than the neutral path).

Which way each chunk went is counted and logged (``snapshot paths: copytext=N general=M`` after each copy, and a
warning with the reason the first time a chunk falls back), so a run, or a test, can tell that the fast path
really ran rather than silently copying everything the general way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from sluice.worker.engine import RunContext
from sluice.worker.flow import Flow
from sluice.worker.sinks.base import Sink, SnapshotWriter
from sluice.worker.sinks.postgres.sink import PostgresSink, PostgresSnapshotWriter
from sluice.worker.sources.base import SnapshotChunk, SnapshotSession, Source
from sluice.worker.sources.mysql import copytext
from sluice.worker.sources.mysql.snapshot import MySqlSnapshot

__all__ = ["PATHS_LOG", "MySqlToPgFlow"]

log = logging.getLogger(__name__)

#: the log line after each snapshot copy: chunks copied as COPY text, chunks copied by the general flow
PATHS_LOG = "snapshot paths: copytext=%d general=%d"


class MySqlToPgFlow(Flow):
    """The general flow whose snapshot chunks travel as COPY text (see the module docstring)."""

    def __init__(self, ctx: RunContext, source: Source, sink: Sink) -> None:
        super().__init__(ctx, source, sink)
        self._paths_lock = threading.Lock()
        self._paths = {"copytext": 0, "general": 0}
        self._fallbacks_logged: set[str] = set()

    def _copy(self, session: SnapshotSession, chunks: list[SnapshotChunk], *, upsert: bool) -> bool:
        with self._paths_lock:
            self._paths = {"copytext": 0, "general": 0}
        try:
            return super()._copy(session, chunks, upsert=upsert)
        finally:
            with self._paths_lock:
                log.info(PATHS_LOG, self._paths["copytext"], self._paths["general"])

    def _count(self, path: str, rows: int | None, why: str | None = None) -> None:
        with self._paths_lock:
            if rows is not None:
                self._paths[path] += 1
            if why is not None and why not in self._fallbacks_logged:
                self._fallbacks_logged.add(why)
                log.warning("MySQL -> PostgreSQL snapshot: chunks take the general flow (%s)", why)

    def _copy_chunk(
        self,
        session: SnapshotSession,
        writer: SnapshotWriter,
        chunk: SnapshotChunk,
        batch_rows: int,
        halted: Callable[[], bool],
    ) -> int | None:
        sink = self.sink
        why = _general_reason(session, writer, sink)
        if why is not None:
            rows = super()._copy_chunk(session, writer, chunk, batch_rows, halted)
            self._count("general", rows, why)
            return rows
        # _general_reason checked these; the assert tells the type checker
        assert isinstance(session, MySqlSnapshot)
        assert isinstance(writer, PostgresSnapshotWriter) and isinstance(sink, PostgresSink)
        target = sink.target(chunk.table)
        kept = set(target.positions)
        keep = [i in kept for i in range(len(target.schema.columns))]
        dump_value = writer.text_dumper()

        def dump(_column: int, value: Any) -> bytes | None:
            return dump_value(value)

        rows = writer.write_copy_text(chunk, session.read_copy(chunk, keep, dump), halted)
        self._count("copytext", rows)
        return rows


def _general_reason(session: SnapshotSession, writer: SnapshotWriter, sink: object) -> str | None:
    """Why a chunk cannot go as COPY text, or None when it can."""
    if not copytext.SPEEDUPS:
        return "the compiled loop sluice._speedups is not built"
    if not isinstance(session, MySqlSnapshot):
        return f"the snapshot session is a {type(session).__name__}, not a MySqlSnapshot"
    if not isinstance(writer, PostgresSnapshotWriter):
        return f"the snapshot writer is a {type(writer).__name__}, not a PostgresSnapshotWriter"
    if not isinstance(sink, PostgresSink):
        return f"the sink is a {type(sink).__name__}, not a PostgresSink"
    return None
