"""MySQL / MariaDB -> PostgreSQL: the general flow, with a snapshot that skips the neutral model.

Each chunk's rows go from the server's text-protocol packets to PostgreSQL text COPY lines in one compiled loop
(:mod:`sluice.worker.sources.mysql.copytext`), one converter per column decided from the table's schema; the
values whose text differs between the two servers go through the column's fallback, which is the neutral path
itself (PyMySQL's converter, the source's loader, the sink's psycopg dumper), so the sink holds byte-for-byte what
the general flow writes. Chunks, the consistent point, resume by chunk and the stream are the general flow's, on
the same source and sink objects. ``SLUICE_FASTPATH=off`` runs the general flow instead, and so does a build
without the C speedup (the Python reference of the loop is there for tests, slower than the neutral path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sluice.worker.flow import Flow
from sluice.worker.sinks.base import SnapshotWriter
from sluice.worker.sinks.postgres.sink import PostgresSink, PostgresSnapshotWriter
from sluice.worker.sources.base import SnapshotChunk, SnapshotSession
from sluice.worker.sources.mysql import copytext
from sluice.worker.sources.mysql.snapshot import MySqlSnapshot

__all__ = ["MySqlToPgFlow"]


class MySqlToPgFlow(Flow):
    """The general flow whose snapshot chunks travel as COPY text (see the module docstring)."""

    def _copy_chunk(
        self,
        session: SnapshotSession,
        writer: SnapshotWriter,
        chunk: SnapshotChunk,
        batch_rows: int,
        halted: Callable[[], bool],
    ) -> int | None:
        sink = self.sink
        if not (
            copytext.SPEEDUPS
            and isinstance(session, MySqlSnapshot)
            and isinstance(writer, PostgresSnapshotWriter)
            and isinstance(sink, PostgresSink)
        ):
            return super()._copy_chunk(session, writer, chunk, batch_rows, halted)
        target = sink.target(chunk.table)
        kept = set(target.positions)
        keep = [i in kept for i in range(len(target.schema.columns))]
        dump_value = writer.text_dumper()

        def dump(_column: int, value: Any) -> bytes | None:
            return dump_value(value)

        return writer.write_copy_text(chunk, session.read_copy(chunk, keep, dump), halted)
