"""What a sink does for the engine: prepare tables, take snapshot rows, apply change batches, keep the checkpoint.

Modelled on how Kafka Connect's ``SinkTask`` (put, then flush with the offsets) and Supabase etl's ``Destination``
split the work: the engine hands over whole source transactions; the sink decides how to write them and commits
them together with the :class:`~sluice.worker.checkpoints.Checkpoint` where it can (its own transaction or log),
otherwise through a :class:`~sluice.worker.checkpoints.CheckpointStore` once the data is acknowledged. Each sink
states its :class:`DeliveryGuarantee`, and the status shows it.

A sink imports its own driver and :mod:`sluice.worker.events`; never a source, never the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, ClassVar

from sluice.errors import SluiceError
from sluice.models import Connector
from sluice.worker.checkpoints import Checkpoint
from sluice.worker.events import Change, SchemaChange, TableSchema
from sluice.worker.positions import Position
from sluice.worker.sources.base import Check, SnapshotChunk

__all__ = ["DeliveryGuarantee", "Sink", "SnapshotWriter"]


class DeliveryGuarantee(StrEnum):
    #: data and position commit together (a transactional sink, or a transactional log)
    EXACTLY_ONCE = "exactly-once"
    #: a change may be delivered again after a crash; each request carries an idempotency key to deduplicate on
    AT_LEAST_ONCE_KEYED = "at-least-once (idempotency keys)"
    #: a change may be delivered again after a crash
    AT_LEAST_ONCE = "at-least-once"


class SnapshotWriter(ABC):
    """Writes snapshot chunks into the sink; one per copying thread (each has a connection of its own)."""

    @abstractmethod
    def write(self, chunk: SnapshotChunk, rows: list[tuple[Any, ...]]) -> None:
        """Rows of ``chunk`` (column order of its table's schema); with ``upsert`` keys that exist are replaced."""

    @abstractmethod
    def done(self, chunk: SnapshotChunk, rows: int) -> None:
        """The chunk's rows are all written: make them durable together with the chunk's done mark."""

    def abort(self) -> None:
        """Discard what :meth:`write` wrote since the last :meth:`done` (the chunk is copied again later)."""

    def close(self) -> None:
        """Release the connection."""


class Sink(ABC):
    """One connector's sink. Created per run; :meth:`close` releases every connection it opened."""

    kind: ClassVar[str]
    guarantee: ClassVar[DeliveryGuarantee]
    #: :meth:`apply` also gets each transaction's ``Begin`` and ``Commit`` (sinks whose messages carry the
    #: transaction id, commit position and time, e.g. the Debezium envelope)
    transaction_events: ClassVar[bool] = False

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    def classify(self, exc: BaseException) -> SluiceError | None:
        """This driver's errors as Sluice errors (by error code: retryable or not, with the fix); None if foreign."""
        return None

    @abstractmethod
    def checks(self) -> list[Check]:
        """Connection, authentication and permissions, each with its fix."""

    @abstractmethod
    def prepare(self, tables: list[TableSchema]) -> None:
        """Create or adapt what each table needs (tables, topics...) under ``migration_strategy``."""

    @abstractmethod
    def load_checkpoint(self) -> Checkpoint | None:
        """The progress stored by the last run, or None for a fresh connector."""

    @abstractmethod
    def start_snapshot(self, checkpoint: Checkpoint, chunks: list[SnapshotChunk], tables: list[TableSchema]) -> None:
        """Empty ``tables`` in the sink and record the plan and the checkpoint, all durable together."""

    @abstractmethod
    def load_plan(self) -> list[SnapshotChunk]:
        """The recorded plan with each chunk's ``done`` flag (empty when none)."""

    @abstractmethod
    def snapshot_writer(self, *, upsert: bool) -> SnapshotWriter:
        """A writer for one copying thread; ``upsert`` when chunks may already be partly in the sink."""

    def finish_snapshot(self, tables: list[TableSchema]) -> None:
        """After every chunk is copied: build keys and indexes (faster after a bulk load than during it)."""

    @abstractmethod
    def apply(self, changes: Sequence[Change]) -> None:
        """Apply changes of whole source transactions (in commit order) into the open batch; not yet durable."""

    def backfill(self, change: SchemaChange, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        """Fill ``columns`` (just added by ``change``) of rows the sink holds, by key, from ``rows`` =
        ``(key..., columns...)`` — into the open batch. Rows the sink lacks are left alone. Sinks that keep no rows
        (a log, an HTTP receiver) ignore it."""

    def finish_backfill(self, change: SchemaChange) -> None:
        """After every backfill row of ``change`` arrived (e.g. set NOT NULL where the source has it)."""

    def abort(self) -> None:
        """Discard what :meth:`apply` did since the last commit, where the sink can (a stop inside a transaction)."""

    @abstractmethod
    def commit(self, checkpoint: Checkpoint) -> None:
        """Commit the open batch together with ``checkpoint`` (or save it once the batch is acknowledged)."""

    def durable(self, committed: Position) -> Position | None:
        """The highest committed position known durable; sinks that commit asynchronously say less than all."""
        return committed

    @abstractmethod
    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store ``checkpoint`` alone (phase changes outside a batch)."""

    @abstractmethod
    def reset(self) -> None:
        """Forget this connector's progress (ReIntialize): the next run starts with a new snapshot."""

    def stop(self) -> None:
        """A stop was requested (SIGTERM); called from another thread while the pipeline runs. A sink that can wait
        long on its own (a retry back-off) ends that wait now: the blocked call raises a
        :class:`~sluice.errors.TransientError` and nothing unacknowledged becomes durable. Others need nothing: the
        pipeline sees the stop at its next transaction boundary."""

    def close(self) -> None:
        """Release connections."""
