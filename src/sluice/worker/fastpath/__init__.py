"""Fast paths: pipelines specialised for one source kind and one sink kind, chosen by the engine when they fit.

PostgreSQL -> PostgreSQL (:mod:`.pipeline`) skips the neutral events where they would only cost time: the
snapshot pipes binary COPY from the source straight into the sink (:mod:`.snapshot`), and runs of streamed inserts
go from pgoutput tuples to COPY lines without being decoded (:mod:`.apply`, :mod:`.copytext`, a C speedup). It
keeps every guarantee of the general flow: the same checkpoint in the sink's transaction, the same slot handling.

MySQL -> PostgreSQL (:mod:`.mysql_pg`) is the general flow whose snapshot chunks go from the server's row packets
to COPY text without the neutral model (a C speedup too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.worker.engine import PipelineFactory
    from sluice.worker.sinks.base import Sink
    from sluice.worker.sources.base import Source

__all__ = ["select"]


def select(source: Source, sink: Sink) -> PipelineFactory | None:
    """The fast path for this pair of ends, or None."""
    if source.kind == "postgres" and sink.kind == "postgres":
        from sluice.worker.fastpath.pipeline import PgToPgPipeline

        factory: Any = PgToPgPipeline
        return factory  # type: ignore[no-any-return]
    if source.kind == "mysql" and sink.kind == "postgres":
        from sluice.worker.fastpath.mysql_pg import MySqlToPgFlow

        return MySqlToPgFlow
    return None
