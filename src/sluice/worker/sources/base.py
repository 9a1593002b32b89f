"""What a source does for the engine: check itself, list tables, copy a snapshot, stream changes, clean up.

The split follows what the CDC tools users know already: a snapshot read at one consistent point whose position
the stream starts from (PostgreSQL's exported snapshot of a slot, MySQL's binlog position under a consistent read),
then a stream of :mod:`sluice.worker.events` from a :class:`~sluice.worker.positions.Position`. The source is told
which positions the sink has made durable (:meth:`ChangeStream.ack`) and only then may it let its log go.

A source imports its own driver and :mod:`sluice.worker.events`; never a sink, never the engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sluice.errors import SluiceError
from sluice.models import Connector
from sluice.worker.events import Event, TableSchema
from sluice.worker.positions import Position

__all__ = ["ChangeStream", "Check", "Lag", "RetainedLog", "SnapshotChunk", "SnapshotSession", "Source"]


@dataclass(frozen=True)
class Check:
    """One preflight check: ``ok`` or not, what was found, and what to change when it fails."""

    name: str
    ok: bool
    message: str
    fix: str = ""
    #: field path the check concerns, e.g. ``["source", "postgres", "connection", "user"]``
    field: tuple[str, ...] = ()


@dataclass(frozen=True)
class SnapshotChunk:
    """One part of one table to copy; ``bounds`` is the source's own description (page or key range), JSON-able."""

    table: str  # TableId.label
    index: int
    bounds: dict[str, Any] = field(default_factory=dict)
    done: bool = False


@dataclass(frozen=True)
class Lag:
    """How far the stream is behind the source's head, in what the source can tell."""

    bytes: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class RetainedLog:
    """What the source keeps for this connector while nothing reads it (a slot's WAL, binlogs)."""

    name: str
    exists: bool = False
    active: bool = False
    retained_bytes: int | None = None
    error: str | None = None
    wal_status: str | None = None
    """PostgreSQL's ``pg_replication_slots.wal_status``: reserved/extended (safe), unreserved (WAL past
    ``max_slot_wal_keep_size``: removed at the next checkpoint), lost (removed: the slot cannot resume)."""
    safe_wal_bytes: int | None = None
    """WAL that can still be written before the slot is in danger of being lost (None: no limit is set)."""


class SnapshotSession(ABC):
    """Reads chunks at one consistent point; :attr:`position` is where the stream continues from."""

    position: Position | None

    @abstractmethod
    def read(self, chunk: SnapshotChunk, batch_rows: int) -> Iterator[list[tuple[Any, ...]]]:
        """Rows of ``chunk`` in batches, each row in the column order of the table's schema."""

    def close(self) -> None:
        """Release the consistent point (end the exporting transaction...)."""


class ChangeStream(ABC):
    """Events from a start position, transaction by transaction (``Begin``, changes, ``Commit``)."""

    @abstractmethod
    def poll(self, timeout: float) -> Event | None:
        """The next event, or None when nothing arrived within ``timeout`` seconds."""

    @abstractmethod
    def ack(self, position: Position) -> None:
        """Everything up to ``position`` is durable in the sink: the source may discard its log before it."""

    def lag(self) -> Lag:
        return Lag()

    def caught_up(self) -> None:
        """Everything delivered so far is durable in the sink and nothing is pending.

        The source may move past log that holds none of this connector's changes (PostgreSQL: confirm the WAL end,
        so an idle slot retains nothing).
        """

    def close(self) -> None:
        """Stop reading; called once, also after a failure."""


class Source(ABC):
    """One connector's source. Created per run; :meth:`close` releases every connection it opened."""

    kind: ClassVar[str]

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    def classify(self, exc: BaseException) -> SluiceError | None:
        """This driver's errors as Sluice errors (by error code: retryable or not, with the fix); None if foreign."""
        return None

    @property
    def snapshot_only(self) -> bool:
        """No change stream: copy a snapshot and finish (a scheduled snapshot run)."""
        return False

    @property
    def skip_snapshot(self) -> bool:
        """Stream from now on without copying the existing rows first."""
        return False

    @property
    def snapshot_parallelism(self) -> int:
        """How many chunks may be read at once (connections to the source the snapshot may use)."""
        return 1

    @abstractmethod
    def parse_position(self, text: str) -> Position:
        """The inverse of ``Position.encode`` for this source's positions; ValueError for anything else."""

    @abstractmethod
    def checks(self) -> list[Check]:
        """Connection, privileges and log settings, each with its fix (the REST validate endpoint shows them)."""

    @abstractmethod
    def preflight(self, tables: list[TableSchema]) -> None:
        """Raise :class:`~sluice.errors.SourceSetupError` naming every failed check and its fix."""

    @abstractmethod
    def discover(self) -> list[TableSchema]:
        """The tables selected by the connector's ``catalog``, as they are now."""

    @abstractmethod
    def prepare_stream(self, tables: list[TableSchema]) -> None:
        """Create what streaming these tables needs (a publication...); idempotent."""

    @abstractmethod
    def open_snapshot(self) -> SnapshotSession:
        """A consistent point the stream will start from (creating the replication slot, reading the binlog
        position under a consistent read...)."""

    @abstractmethod
    def resume_snapshot(self) -> SnapshotSession:
        """Reads current data, no consistent point: for resuming an interrupted snapshot by upserting."""

    @abstractmethod
    def plan(self, tables: list[TableSchema], batch_rows: int) -> list[SnapshotChunk]:
        """Split tables into chunks that can be copied in parallel and resumed one by one."""

    @abstractmethod
    def can_resume(self, position: Position) -> None:
        """Raise :class:`~sluice.errors.ReplicationError` (with the fix) if the log from ``position`` is gone."""

    @abstractmethod
    def stream(self, start: Position, tables: list[TableSchema]) -> ChangeStream:
        """Changes of ``tables`` from ``start`` on."""

    def backfill_rows(self, table: TableSchema, columns: list[str], batch_rows: int) -> Iterator[list[tuple[Any, ...]]]:
        """``(key..., columns...)`` of every current row of ``table``: the values of columns just added with a
        per-row default (``ExistingValues.per_row``), for sinks that hold rows and must fill them in. Values are in
        the source's text form or Python values; the sink casts them to the column's type. None by default."""
        return iter(())

    @abstractmethod
    def retained(self) -> RetainedLog:
        """What the source retains for this connector (never raises: errors are in the result)."""

    @abstractmethod
    def cleanup(self, *, force: bool = False) -> list[str]:
        """Drop what Sluice created at the source (slot, own publication); returns what was dropped."""

    def close(self) -> None:
        """Release connections."""
