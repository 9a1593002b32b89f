"""An in-memory source and sink for unit tests of the engine's pure logic (phases, batching, checkpoints, retries).

They are stand-ins for the interfaces only: every real source and sink is tested against its real server. The
source holds tables as lists of rows and a log of transactions; the sink holds tables as dicts (keyed) or lists
(keyless), applies changes as a real sink would, and keeps its checkpoint "in the same transaction" as the data:
an apply that is not committed is lost on :meth:`MemorySink.abort` or when the run ends without commit.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from sluice.errors import SluiceError, TransientError
from sluice.models import Connector
from sluice.worker.checkpoints import Checkpoint
from sluice.worker.events import (
    Begin,
    Change,
    Column,
    ColumnType,
    Commit,
    Event,
    Op,
    RowChange,
    SchemaChange,
    TableId,
    TableSchema,
    Truncate,
    TypeKind,
)
from sluice.worker.positions import Position
from sluice.worker.sinks.base import DeliveryGuarantee, Sink, SnapshotWriter
from sluice.worker.sources.base import ChangeStream, Check, RetainedLog, SnapshotChunk, SnapshotSession, Source

INT = ColumnType(TypeKind.INT, bits=64)
TEXT = ColumnType(TypeKind.TEXT)


def table(name: str, *, key: bool = True) -> TableSchema:
    return TableSchema(
        table=TableId("public", name),
        columns=(Column("id", INT, nullable=False), Column("v", TEXT)),
        key=("id",) if key else (),
    )


@dataclass(frozen=True)
class Seq(Position):
    """A position that is a plain sequence number."""

    n: int
    scheme = "seq"

    def encode(self) -> str:
        return f"seq:{self.n}"

    def __lt__(self, other: Any) -> bool:
        if not isinstance(other, Seq):
            return NotImplemented
        return self.n < other.n

    def __str__(self) -> str:
        return str(self.n)


@dataclass
class World:
    """What the in-memory source and sink share across runs (a "server" that survives worker restarts)."""

    tables: list[TableSchema]
    rows: dict[str, list[tuple[Any, ...]]]
    #: committed transactions: (commit sequence number, changes)
    log: list[tuple[int, list[Change]]] = field(default_factory=list)
    #: the sink's durable state
    sink_rows: dict[str, Any] = field(default_factory=dict)
    checkpoint: Checkpoint | None = None
    plan: list[SnapshotChunk] = field(default_factory=list)
    acked: Seq | None = None
    #: raise this from the next ``poll`` (a transient failure of the source)
    fail_next_poll: BaseException | None = None
    #: raise this from the next ``apply`` (a failure of the sink)
    fail_next_apply: BaseException | None = None
    stop_after_events: int | None = None
    stop: threading.Event | None = None
    applied_batches: list[int] = field(default_factory=list)
    commits: int = 0

    def commit_tx(self, changes: list[Change]) -> None:
        seq = (self.log[-1][0] if self.log else 0) + 1
        self.log.append((seq, changes))


WORLD: World | None = None


def world() -> World:
    assert WORLD is not None, "set tests.support.memory.WORLD first"
    return WORLD


class _Session(SnapshotSession):
    def __init__(self, position: Seq | None) -> None:
        self.position = position
        self.data = copy.deepcopy(world().rows)

    def read(self, chunk: SnapshotChunk, batch_rows: int) -> Iterator[list[tuple[Any, ...]]]:
        rows = self.data[chunk.table]
        lo, hi = chunk.bounds["lo"], chunk.bounds["hi"]
        part = rows[lo:hi]
        for i in range(0, len(part), batch_rows):
            yield part[i : i + batch_rows]


class _Stream(ChangeStream):
    def __init__(self, start: Seq) -> None:
        self.events: list[Event] = []
        for seq, changes in world().log:
            # As PostgreSQL's: the Begin names where the commit record starts, the Commit where it ends.
            self.events.append(Begin(xid=str(seq), position=Seq(2 * seq - 1)))
            self.events.extend(changes)
            self.events.append(Commit(xid=str(seq), position=Seq(2 * seq), commit_time=datetime.now(UTC)))
        self.i = 0
        self.delivered = 0

    def poll(self, timeout: float) -> Event | None:
        w = world()
        if w.fail_next_poll is not None:
            exc, w.fail_next_poll = w.fail_next_poll, None
            raise exc
        if w.stop_after_events is not None and self.delivered >= w.stop_after_events and w.stop is not None:
            w.stop.set()
        if self.i >= len(self.events):
            if w.stop is not None and w.stop_after_events is None:
                w.stop.set()  # drained: end the run
            return None
        event = self.events[self.i]
        self.i += 1
        self.delivered += 1
        return event

    def ack(self, position: Position) -> None:
        assert isinstance(position, Seq)
        world().acked = position


class MemorySource(Source):
    kind: ClassVar[str] = "memory"

    def __init__(self, connector: Connector | None = None) -> None:
        self.connector = connector  # type: ignore[assignment]

    def classify(self, exc: BaseException) -> SluiceError | None:
        return TransientError(str(exc)) if isinstance(exc, ConnectionError) else None

    def parse_position(self, text: str) -> Position:
        return Seq(int(text.removeprefix("seq:")))

    def checks(self) -> list[Check]:
        return [Check("reachable", True, "in memory")]

    def preflight(self, tables: list[TableSchema]) -> None:
        return None

    def discover(self) -> list[TableSchema]:
        return list(world().tables)

    def prepare_stream(self, tables: list[TableSchema]) -> None:
        return None

    def open_snapshot(self) -> SnapshotSession:
        w = world()
        return _Session(Seq(2 * w.log[-1][0] if w.log else 0))

    def resume_snapshot(self) -> SnapshotSession:
        return _Session(None)

    def plan(self, tables: list[TableSchema], batch_rows: int) -> list[SnapshotChunk]:
        chunks = []
        for t in tables:
            n = len(world().rows[t.table.label])
            for i, lo in enumerate(range(0, max(n, 1), 2)):
                chunks.append(SnapshotChunk(t.table.label, i, {"lo": lo, "hi": lo + 2}))
        return chunks

    def can_resume(self, position: Position) -> None:
        return None

    def stream(self, start: Position, tables: list[TableSchema]) -> ChangeStream:
        assert isinstance(start, Seq)
        return _Stream(start)

    def retained(self) -> RetainedLog:
        return RetainedLog(name="memory")

    def cleanup(self, *, force: bool = False) -> list[str]:
        return []


class _Writer(SnapshotWriter):
    def __init__(self, sink: MemorySink, upsert: bool) -> None:
        self.sink = sink
        self.upsert = upsert
        self.pending: list[tuple[SnapshotChunk, tuple[Any, ...]]] = []

    def write(self, chunk: SnapshotChunk, rows: list[tuple[Any, ...]]) -> None:
        self.pending.extend((chunk, r) for r in rows)

    def done(self, chunk: SnapshotChunk, rows: int) -> None:
        w = world()
        for c, row in self.pending:
            self.sink.put(w.sink_rows, c.table, row)
        self.pending.clear()
        w.plan = [SnapshotChunk(c.table, c.index, c.bounds, c.done or c == chunk) for c in w.plan]

    def abort(self) -> None:
        self.pending.clear()


class MemorySink(Sink):
    kind: ClassVar[str] = "memory"
    guarantee: ClassVar[DeliveryGuarantee] = DeliveryGuarantee.EXACTLY_ONCE

    def __init__(self, connector: Connector | None = None) -> None:
        self.connector = connector  # type: ignore[assignment]
        self.schemas: dict[str, TableSchema] = {}
        self.open: dict[str, Any] | None = None  # the open transaction's copy of the tables

    def keyed(self, label: str) -> bool:
        return bool(self.schemas[label].key)

    def put(self, rows: dict[str, Any], label: str, row: tuple[Any, ...]) -> None:
        schema = self.schemas[label]
        if schema.key:
            rows.setdefault(label, {})[schema.key_of(row)] = row
        else:
            rows.setdefault(label, []).append(row)

    def checks(self) -> list[Check]:
        return []

    def prepare(self, tables: list[TableSchema]) -> None:
        for t in tables:
            self.schemas[t.table.label] = t
            world().sink_rows.setdefault(t.table.label, {} if t.key else [])

    def load_checkpoint(self) -> Checkpoint | None:
        return copy.deepcopy(world().checkpoint)

    def start_snapshot(self, checkpoint: Checkpoint, chunks: list[SnapshotChunk], tables: list[TableSchema]) -> None:
        w = world()
        for t in tables:
            w.sink_rows[t.table.label] = {} if t.key else []
        w.plan = list(chunks)
        w.checkpoint = copy.deepcopy(checkpoint)

    def load_plan(self) -> list[SnapshotChunk]:
        return list(world().plan)

    def snapshot_writer(self, *, upsert: bool) -> SnapshotWriter:
        return _Writer(self, upsert)

    def apply(self, changes: Sequence[Change]) -> None:
        w = world()
        if w.fail_next_apply is not None:
            exc, w.fail_next_apply = w.fail_next_apply, None
            raise exc
        if self.open is None:
            self.open = copy.deepcopy(w.sink_rows)
        w.applied_batches.append(len(changes))
        for change in changes:
            if isinstance(change, RowChange):
                self._row(self.open, change)
            elif isinstance(change, Truncate):
                for t in change.tables:
                    self.open[t.label] = {} if self.keyed(t.label) else []
            elif isinstance(change, SchemaChange):
                self.schemas[change.schema.table.label] = change.schema

    def _row(self, rows: dict[str, Any], change: RowChange) -> None:
        label = change.table.label
        schema = self.schemas[label]
        if schema.key:
            table = rows.setdefault(label, {})
            if change.before is not None:
                table.pop(schema.key_of(change.before), None)
            if change.op in (Op.INSERT, Op.UPDATE, Op.READ) and change.after is not None:
                table[schema.key_of(change.after)] = change.after
        else:
            table = rows.setdefault(label, [])
            if change.before is not None and change.op in (Op.UPDATE, Op.DELETE):
                table.remove(change.before)
            if change.after is not None and change.op != Op.DELETE:
                table.append(change.after)

    def abort(self) -> None:
        self.open = None

    def commit(self, checkpoint: Checkpoint) -> None:
        w = world()
        if self.open is not None:
            w.sink_rows = self.open
        self.open = None
        w.checkpoint = copy.deepcopy(checkpoint)
        w.commits += 1

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        world().checkpoint = copy.deepcopy(checkpoint)

    def reset(self) -> None:
        w = world()
        w.checkpoint = None
        w.plan = []

    def close(self) -> None:
        self.open = None  # an uncommitted transaction is lost, as a real sink's would be
