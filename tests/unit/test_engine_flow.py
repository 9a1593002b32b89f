"""The engine and the general flow over an in-memory source and sink: phases, batching, checkpoints, retries, stop.

Pure logic only: the in-memory ends (tests/support/memory.py) stand in for the interfaces. Every check that could
hide a duplicate uses a keyless table, where a change applied twice shows up as an extra row.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from sluice.errors import ConfigError, SluiceError
from sluice.models import Connector
from sluice.worker import registry
from sluice.worker.engine import Engine
from sluice.worker.events import Op, RowChange, TableId, Truncate
from sluice.worker.status import WorkerStatus
from tests.support import memory
from tests.support.memory import World, table

KEYED = TableId("public", "keyed")
BAG = TableId("public", "bag")


class Reports:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.last: dict[str, Any] = {}

    def report(self, status: WorkerStatus) -> None:
        self.seen.append((status.state, status.status))
        self.last = status.as_dict()


def _connector(max_rows: int = 1000, flush_ms: int = 1) -> Connector:
    return Connector.model_validate(
        {
            "id": "mem",
            "source": {
                "postgres": {
                    "connection": {"host": "h", "user": "u", "password": "p", "database": "d"},
                    "replication_type": {"logical_replication": {"retry_window_seconds": 60}},
                }
            },
            "sink": {"postgres": {"connection": {"host": "h", "user": "u", "password": "p", "database": "d"}}},
            "limits": {"cdc": {"max_buffer_rows": max_rows, "flush_interval_ms": flush_ms}},
        }
    )


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setitem(registry.SOURCES, "postgres", "tests.support.memory:MemorySource")
    monkeypatch.setitem(registry.SINKS, "postgres", "tests.support.memory:MemorySink")
    w = World(
        tables=[table("keyed"), table("bag", key=False)],
        rows={"public.keyed": [(i, f"k{i}") for i in range(5)], "public.bag": [(1, "x"), (1, "x"), (2, "y")]},
    )
    memory.WORLD = w
    return w


def _run(w: World, connector: Connector | None = None, stop: threading.Event | None = None) -> tuple[int, Reports]:
    stop = stop or threading.Event()
    w.stop = stop
    reports = Reports()
    code = Engine(connector or _connector(), reports, stop).run()
    return code, reports


def _ins(t: TableId, row: tuple[Any, ...]) -> RowChange:
    return RowChange(Op.INSERT, t, None, row)


def _bag(w: World) -> Counter[tuple[Any, ...]]:
    return Counter(w.sink_rows["public.bag"])


def test_snapshot_then_stream_exactly_once(world: World) -> None:
    # A transaction committed before the snapshot: its row is in the snapshot, and the stream must skip it.
    world.commit_tx([_ins(BAG, (9, "before-snapshot"))])
    world.rows["public.bag"].append((9, "before-snapshot"))
    code, reports = _run(world)
    assert code == 0
    assert set(world.sink_rows["public.keyed"]) == {(i,) for i in range(5)}
    assert _bag(world) == Counter({(1, "x"): 2, (2, "y"): 1, (9, "before-snapshot"): 1})
    assert world.checkpoint is not None and world.checkpoint.phase == "streaming"
    assert ("snapshot", "start") in reports.seen and ("realtime", "start") in reports.seen
    assert reports.last["state"] == "shutdown" and reports.last["delivery"] == "exactly-once"

    # New transactions after the first run: only they are applied, once.
    world.commit_tx([_ins(BAG, (3, "z")), RowChange(Op.DELETE, BAG, (1, "x"), None)])
    world.commit_tx([RowChange(Op.UPDATE, KEYED, (0, "k0"), (0, "changed"))])
    code, reports = _run(world)
    assert code == 0
    assert _bag(world) == Counter({(1, "x"): 1, (2, "y"): 1, (3, "z"): 1, (9, "before-snapshot"): 1})
    assert world.sink_rows["public.keyed"][(0,)] == (0, "changed")
    assert reports.last["rows_applied"] == 3
    assert reports.last["tables"]["public.bag"]["rows_applied"] == 2
    assert world.checkpoint is not None and world.checkpoint.position == "seq:6"
    assert world.acked is not None and world.acked.n == 6
    assert reports.last["position"] == "6"


def test_stop_inside_a_transaction_loses_and_repeats_nothing(world: World) -> None:
    _run(world)
    world.commit_tx([_ins(BAG, (10, "a"))])
    world.commit_tx([_ins(BAG, (11, "b")), _ins(BAG, (12, "c")), _ins(BAG, (13, "d"))])
    # Begin, change, Commit, Begin, change: stop inside the second transaction
    world.stop_after_events = 5
    code, _ = _run(world)
    assert code == 0
    assert _bag(world)[(10, "a")] == 1 and (11, "b") not in _bag(world)
    world.stop_after_events = None
    _run(world)
    bag = _bag(world)
    assert [bag[(n, v)] for n, v in ((10, "a"), (11, "b"), (12, "c"), (13, "d"))] == [1, 1, 1, 1]


def test_batches_respect_max_buffer_rows(world: World) -> None:
    world.rows = {"public.keyed": [], "public.bag": []}
    _run(world)
    world.commit_tx([_ins(BAG, (n, "r")) for n in range(10)])
    _run(world, _connector(max_rows=3))
    assert max(world.applied_batches) <= 3
    assert sum(_bag(world).values()) == 10


def test_transient_failure_is_retried_and_resumes(world: World) -> None:
    _run(world)
    world.commit_tx([_ins(BAG, (20, "r"))])
    world.fail_next_poll = ConnectionError("source went away")
    code, reports = _run(world)
    assert code == 0
    assert ("realtime", "retry") in reports.seen
    assert _bag(world)[(20, "r")] == 1


def test_permanent_failure_stops_with_the_fix(world: World) -> None:
    _run(world)
    world.commit_tx([_ins(BAG, (21, "r"))])
    world.fail_next_apply = ConfigError("column v is gone", fix="Restore the column.")
    with pytest.raises(SluiceError) as err:
        _run(world)
    assert err.value.fix == "Restore the column."
    assert world.checkpoint is not None and world.checkpoint.position != "seq:2"


def test_stop_while_waiting_to_retry_is_a_clean_shutdown(world: World) -> None:
    _run(world)
    stop = threading.Event()
    world.fail_next_poll = ConnectionError("source went away")
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    code, reports = _run(world, stop=stop)
    timer.cancel()
    assert code == 0
    assert reports.seen[-1] == ("shutdown", "complete")
    assert ("realtime", "failed") not in reports.seen


def test_interrupted_snapshot_resumes_keyed_chunks(world: World) -> None:
    world.tables = [table("keyed")]
    world.rows = {"public.keyed": [(i, f"k{i}") for i in range(6)]}
    stop = threading.Event()
    world.stop = stop
    original_done = memory._Writer.done

    def done_then_stop(self: memory._Writer, chunk: Any, rows: int) -> None:
        original_done(self, chunk, rows)
        stop.set()  # after the first chunk

    memory._Writer.done = done_then_stop  # type: ignore[method-assign]
    try:
        Engine(_connector(), Reports(), stop).run()
    finally:
        memory._Writer.done = original_done  # type: ignore[method-assign]
    assert world.checkpoint is not None and world.checkpoint.phase == "snapshot"
    assert sum(c.done for c in world.plan) == 1
    world.rows["public.keyed"][5] = (5, "changed meanwhile")  # read again at resume: upserted
    _run(world)
    assert world.checkpoint is not None and world.checkpoint.phase == "streaming"
    assert len(world.sink_rows["public.keyed"]) == 6
    assert world.sink_rows["public.keyed"][(5,)] == (5, "changed meanwhile")


def test_interrupted_snapshot_with_a_keyless_table_starts_over(world: World) -> None:
    stop = threading.Event()
    world.stop = stop
    original_done = memory._Writer.done

    def done_then_stop(self: memory._Writer, chunk: Any, rows: int) -> None:
        original_done(self, chunk, rows)
        stop.set()

    memory._Writer.done = done_then_stop  # type: ignore[method-assign]
    try:
        Engine(_connector(), Reports(), stop).run()
    finally:
        memory._Writer.done = original_done  # type: ignore[method-assign]
    _run(world)
    assert _bag(world) == Counter({(1, "x"): 2, (2, "y"): 1})


def test_truncate_applies_in_order(world: World) -> None:
    _run(world)
    world.commit_tx([_ins(BAG, (30, "r")), Truncate((BAG,)), _ins(BAG, (31, "r"))])
    _run(world)
    assert _bag(world) == Counter({(31, "r"): 1})


def test_registry_matches_available_kinds() -> None:
    from sluice import kinds

    assert set(registry.SOURCES) == set(kinds.AVAILABLE_SOURCES)
    assert set(registry.SINKS) == set(kinds.AVAILABLE_SINKS)


def test_a_table_selected_after_the_snapshot_is_copied_on_start(world: World) -> None:
    _run(world)
    world.tables.append(table("later"))
    world.rows["public.later"] = [(1, "a"), (2, "b"), (3, "c")]
    code, reports = _run(world)
    assert code == 0
    assert world.sink_rows["public.later"] == {(1,): (1, "a"), (2,): (2, "b"), (3,): (3, "c")}
    assert world.checkpoint is not None and world.checkpoint.phase == "streaming"
    assert reports.last["tables"]["public.later"]["rows_copied"] == 3


def test_a_keyless_table_selected_after_the_snapshot_says_it_was_not_copied(world: World) -> None:
    _run(world)
    world.tables.append(table("later_bag", key=False))
    world.rows["public.later_bag"] = [(1, "a")]
    _, reports = _run(world)
    assert "ReIntialize" in (reports.last["tables"]["public.later_bag"]["error"] or "")


def test_stop_inside_a_transaction_already_partly_in_the_sink_aborts_the_batch(world: World) -> None:
    """With a tiny buffer the open transaction is partly applied when the stop comes: the whole open batch is
    rolled back (nothing of it committed), and the next run applies every change exactly once."""
    _run(world)
    commits = world.commits
    world.commit_tx([_ins(BAG, (10, "a"))])
    world.commit_tx([_ins(BAG, (11, "b")), _ins(BAG, (12, "c")), _ins(BAG, (13, "d"))])
    world.stop_after_events = 5  # Begin, change, Commit, Begin, change
    assert _run(world, _connector(max_rows=2))[0] == 0
    assert world.applied_batches and world.commits == commits  # applied, then aborted: nothing committed
    assert (11, "b") not in _bag(world) and (10, "a") not in _bag(world)
    world.stop_after_events = None
    _run(world, _connector(max_rows=2))
    bag = _bag(world)
    assert [bag[(n, v)] for n, v in ((10, "a"), (11, "b"), (12, "c"), (13, "d"))] == [1, 1, 1, 1]
