"""Crash trials: kill -9 of the worker at random moments, a restarted source — and not one row lost or duplicated.

Every trial runs a writer on the source (inserts, updates, key changes and deletes across two keyed tables, in
multi-statement transactions, now and then a transaction big enough to be streamed while in progress), kills the
worker with SIGKILL at random instants, starts it again, lets it catch up and then compares source and sink row by
row.

On a keyed table a replayed transaction is an idempotent upsert: it cannot show a duplicate. So the writer also
writes two tables without a key, where a change applied twice stays visible:

- ``changes``, append-only: each statement of each transaction inserts one row carrying a unique change number
  (a sequence); after the trial every committed number is in the sink exactly once (`assert_each_change_once`);
- ``notes``, keyless (``REPLICA IDENTITY FULL``) with inserts, updates and deletes: compared as a multiset, so a
  replayed insert is an extra row and a lost delete a left-over one.

Randomness comes from one seeded RNG per trial; the seed is attached to any failure, and
``SLUICE_CRASH_SEED=<n>`` replays a run.

Written against the worker's CLI contract only (``sluice worker --config FILE --status-file FILE``; JSON status
lines with ``state`` in start|initialize|snapshot|realtime|...; exit 0 after SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from sluice.devstack.postgres import PostgresInstance
from tests.support.pg import PgDatabase, WorkerProcess, wait_tables_equal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

#: table -> the columns rows are ordered by for the comparison; the keyless tables by all their columns, so the
#: comparison is one of multisets (a duplicate is an extra row).
TABLES = {"accounts": ("id",), "items": ("id",), "changes": ("change_no", "tx"), "notes": ("n", "body")}
BASE_SEED = int(os.environ.get("SLUICE_CRASH_SEED", str(random.SystemRandom().randrange(1, 1 << 30))))

SNAPSHOT_TRIALS = 6
STREAMING_TRIALS = 5
KILLS_PER_STREAMING_TRIAL = 3


@contextlib.contextmanager
def seed_on_failure(seed: int, log: list[str]) -> Iterator[None]:
    """Attach the seed and the trial's event log to any failure, so it can be read and replayed."""
    print(f"crash trial seed={seed} (replay: SLUICE_CRASH_SEED={BASE_SEED})")
    try:
        yield
        print("events:\n  " + "\n  ".join(log))  # shown with -s or -rP: where the time of a trial goes
    except BaseException as exc:
        exc.add_note(f"crash trial seed={seed}; replay with SLUICE_CRASH_SEED={BASE_SEED}")
        exc.add_note("events:\n  " + "\n  ".join(log))
        raise


def create_schema(db: PgDatabase) -> None:
    db.psql(
        """
        CREATE TABLE accounts (
            id bigint PRIMARY KEY,
            balance integer NOT NULL,
            amount numeric(12, 2),
            note text,
            updated timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE items (id integer PRIMARY KEY, tag text NOT NULL, doc jsonb);
        -- No key: a change applied twice would be a second row.
        CREATE SEQUENCE change_no;
        CREATE TABLE changes (change_no bigint NOT NULL, tx text NOT NULL);
        ALTER TABLE changes REPLICA IDENTITY FULL;
        CREATE SEQUENCE note_no;
        CREATE TABLE notes (n bigint NOT NULL, body text NOT NULL);
        ALTER TABLE notes REPLICA IDENTITY FULL;
        """
    )


def load(db: PgDatabase, accounts: int, items: int) -> None:
    db.execute(
        "INSERT INTO accounts (id, balance, amount, note) "
        "SELECT g, g %% 1000, (g * 1.25)::numeric(12, 2), md5(g::text) FROM generate_series(1, %s) g",
        (accounts,),
    )
    db.execute(
        "INSERT INTO items (id, tag, doc) "
        "SELECT g, 'tag' || (g %% 17), jsonb_build_object('n', g, 'tags', jsonb_build_array(g %% 3, g %% 5)) "
        "FROM generate_series(1, %s) g",
        (items,),
    )
    db.execute("INSERT INTO changes (change_no, tx) SELECT nextval('change_no'), 'load' FROM generate_series(1, 100)")
    db.execute("INSERT INTO notes (n, body) SELECT nextval('note_no'), md5(g::text) FROM generate_series(1, 200) g")


def assert_each_change_once(source: PgDatabase, sink: PgDatabase, at_least: int) -> int:
    """Every change number committed on the source is in the sink's append-only table exactly once."""
    dupes = sink.execute("SELECT change_no, count(*) FROM changes GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 5")
    assert not dupes, f"changes applied more than once in the sink (change_no, times): {dupes}"
    src = [r[0] for r in source.execute("SELECT change_no FROM changes ORDER BY 1")]
    dst = [r[0] for r in sink.execute("SELECT change_no FROM changes ORDER BY 1")]
    missing = sorted(set(src) - set(dst))
    extra = sorted(set(dst) - set(src))
    assert not missing and not extra, f"sink lacks changes {missing[:5]} and has unknown ones {extra[:5]}"
    assert len(src) >= at_least, f"only {len(src)} changes on the source: the trial proved little"
    return len(src)


@dataclass
class Writer:
    """A transactional workload on the source in a thread; reconnects when the server goes away."""

    db: PgDatabase
    seed: int
    next_id: int
    items_max: int = 3000
    bulk_probability: float = 0.0
    pause: tuple[float, float] = (0.002, 0.015)
    committed: int = 0
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._error is not None:
            raise AssertionError(f"writer failed: {self._error!r}") from self._error

    def wait_commits(self, n: int, timeout: float = 30) -> None:
        target = self.committed + n
        deadline = time.monotonic() + timeout
        while self.committed < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"writer committed only {self.committed}/{target} transactions in {timeout}s")
            time.sleep(0.01)

    def _run(self) -> None:
        rng = random.Random(self.seed)
        try:
            while not self._stop.is_set():
                try:
                    with psycopg.connect(**self.db.conninfo(), autocommit=True, connect_timeout=5) as conn:
                        while not self._stop.is_set():
                            with conn.transaction():
                                tx = f"tx{self.committed}-{rng.randrange(10**6)}"
                                for _ in range(rng.randint(1, 4)):
                                    self._statement(conn, rng)
                                    conn.execute(
                                        "INSERT INTO changes (change_no, tx) VALUES (nextval('change_no'), %s)", (tx,)
                                    )
                                self._keyless(conn, rng)
                                self._maybe_bulk(conn, rng)
                            self.committed += 1
                            time.sleep(rng.uniform(*self.pause))
                except psycopg.OperationalError:
                    # The source restarts in one trial: the transaction in flight is lost at the source too.
                    self.failed += 1
                    self._stop.wait(0.05)
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def _statement(self, conn: psycopg.Connection[Any], rng: random.Random) -> None:
        op = rng.random()
        hi = self.next_id
        if op < 0.30:
            n = rng.randint(1, 20)
            first = self.next_id
            self.next_id += n
            conn.execute(
                "INSERT INTO accounts (id, balance, amount, note) "
                "SELECT g, %s, (g %% 997)::numeric / 4, md5(random()::text) FROM generate_series(%s::bigint, %s) g",
                (rng.randint(-1000, 1000), first, first + n - 1),
            )
        elif op < 0.55:
            ids = [rng.randrange(1, hi) for _ in range(rng.randint(1, 10))]
            conn.execute(
                "UPDATE accounts SET balance = balance + %s, note = %s, updated = now() WHERE id = ANY(%s)",
                (rng.randint(-50, 50), f"n{rng.randrange(10**9)}", ids),
            )
        elif op < 0.62:
            # A key change: the sink must delete the old key and insert the new one.
            new_id = self.next_id
            self.next_id += 1
            conn.execute("UPDATE accounts SET id = %s WHERE id = %s", (new_id, rng.randrange(1, hi)))
        elif op < 0.75:
            ids = [rng.randrange(1, hi) for _ in range(rng.randint(1, 5))]
            conn.execute("DELETE FROM accounts WHERE id = ANY(%s)", (ids,))
        elif op < 0.90:
            item = rng.randint(1, self.items_max)
            conn.execute(
                "INSERT INTO items (id, tag, doc) VALUES (%s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET tag = excluded.tag, doc = excluded.doc",
                (item, f"t{rng.randrange(100)}", Jsonb({"v": rng.random(), "k": [1, 2]})),
            )
        else:
            conn.execute("DELETE FROM items WHERE id = %s", (rng.randint(1, self.items_max),))

    def _keyless(self, conn: psycopg.Connection[Any], rng: random.Random) -> None:
        """Inserts, updates and deletes on ``notes`` (no key: the sink finds a row by all its old values)."""
        op = rng.random()
        if op < 0.5:
            conn.execute(
                "INSERT INTO notes (n, body) SELECT nextval('note_no'), md5(random()::text) "
                "FROM generate_series(1, %s)",
                (rng.randint(1, 5),),
            )
        elif op < 0.8:
            conn.execute(
                "UPDATE notes SET body = md5(random()::text) "
                "WHERE n IN (SELECT n FROM notes ORDER BY random() LIMIT %s)",
                (rng.randint(1, 3),),
            )
        else:
            conn.execute("DELETE FROM notes WHERE n IN (SELECT n FROM notes ORDER BY random() LIMIT 1)")

    def _maybe_bulk(self, conn: psycopg.Connection[Any], rng: random.Random) -> None:
        if rng.random() < self.bulk_probability:
            # Over logical_decoding_work_mem in the streaming trials: decoded and sent while still in progress.
            lo = rng.randrange(1, max(2, self.next_id - 1000))
            conn.execute(
                "UPDATE accounts SET balance = balance + 1, updated = now() WHERE id BETWEEN %s AND %s",
                (lo, lo + 1000),
            )


@dataclass
class Trial:
    source: PgDatabase
    sink: PgDatabase
    config: Path
    run_worker: Callable[..., WorkerProcess]
    rng: random.Random
    log: list[str]
    started: float = field(default_factory=time.monotonic)

    def event(self, msg: str) -> None:
        self.log.append(f"{time.monotonic() - self.started:6.2f}s {msg}")

    def start(self) -> WorkerProcess:
        worker = self.run_worker(self.config)
        self.event(f"worker started pid={worker.pid}")
        return worker

    def kill(self, worker: WorkerProcess) -> str:
        state = (worker.last_status() or {}).get("state", "?")
        exited = worker.returncode
        worker.kill()
        if exited is not None:
            raise AssertionError(f"worker had already exited with {exited} before the kill\n{worker.output_tail()}")
        self.event(f"kill -9 pid={worker.pid} in state {state}")
        return str(state)

    def converge(self, worker: WorkerProcess, timeout: float = 90) -> None:
        def alive() -> None:
            if worker.returncode is not None:
                raise AssertionError(f"worker exited with {worker.returncode}\n{worker.output_tail()}")

        wait_tables_equal(
            self.source, self.sink, TABLES, timeout=timeout, sink_schema="public", on_poll=alive, interval=0.3
        )
        self.event("source and sink equal")

    def shutdown(self, worker: WorkerProcess) -> None:
        code = worker.stop(timeout=60)
        assert code == 0, f"worker exited {code} after SIGTERM\n{worker.output_tail()}"
        self.event("worker stopped by SIGTERM, exit 0")


def in_state(*states: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status.get("state") in states


@pytest.fixture
def trial_factory(
    source_db: PgDatabase,
    sink_db: PgDatabase,
    make_connector_config: Callable[..., Path],
    run_worker: Callable[..., WorkerProcess],
) -> Callable[..., Trial]:
    def make(seed: int, log: list[str], **config: Any) -> Trial:
        path = make_connector_config(source_db, sink_db, target_schema="public", **config)
        return Trial(source_db, sink_db, path, run_worker, random.Random(seed), log)

    return make


@pytest.mark.parametrize("trial", range(SNAPSHOT_TRIALS))
def test_kill9_during_snapshot(trial: int, source_db: PgDatabase, trial_factory: Callable[..., Trial]) -> None:
    seed = BASE_SEED * 100 + trial
    log: list[str] = []
    with seed_on_failure(seed, log):
        create_schema(source_db)
        load(source_db, accounts=30_000, items=3_000)
        # Small chunks: many of them, so a kill lands between and inside chunk commits, and resume is exercised.
        t = trial_factory(seed, log, limits={"snapshot": {"max_buffer_rows": 1000}, "cdc": {"flush_interval_ms": 100}})
        writer = Writer(source_db, seed, next_id=30_001).start()
        try:
            kills_in_snapshot = 0
            for _attempt in range(2):
                worker = t.start()
                worker.wait_for_status(in_state("snapshot", "realtime"), timeout=60)
                time.sleep(t.rng.uniform(0.0, 0.6))  # the random instant of the crash (not a wait for a condition)
                if t.kill(worker) == "snapshot":
                    kills_in_snapshot += 1
            t.event(f"{kills_in_snapshot} of 2 kills landed in the snapshot phase")
            worker = t.start()
            worker.wait_for_status(in_state("realtime"), timeout=90)
            writer.wait_commits(20)
        finally:
            writer.stop()
        t.event(f"writer stopped after {writer.committed} transactions")
        t.converge(worker)
        t.event(f"{assert_each_change_once(source_db, t.sink, at_least=100 + writer.committed)} changes, each once")
        t.shutdown(worker)


@pytest.mark.parametrize("trial", range(STREAMING_TRIALS))
def test_kill9_during_streaming(trial: int, source_db: PgDatabase, trial_factory: Callable[..., Trial]) -> None:
    seed = BASE_SEED * 100 + 50 + trial
    log: list[str] = []
    with seed_on_failure(seed, log):
        create_schema(source_db)
        load(source_db, accounts=5_000, items=1_000)
        # Transactions over 64kB of decoded changes are streamed while still in progress (protocol 2).
        source_db.execute(f"ALTER DATABASE \"{source_db.name}\" SET logical_decoding_work_mem = '64kB'")
        t = trial_factory(seed, log, limits={"cdc": {"flush_interval_ms": 50, "max_buffer_rows": 500}})
        worker = t.start()
        worker.wait_for_status(in_state("realtime"), timeout=90)
        t.event("worker streaming")
        writer = Writer(source_db, seed, next_id=5_001, items_max=1000, bulk_probability=0.03).start()
        try:
            for _ in range(KILLS_PER_STREAMING_TRIAL):
                writer.wait_commits(10)
                time.sleep(t.rng.uniform(0.05, 1.0))  # the random instant of the crash
                t.kill(worker)
                worker = t.start()
                worker.wait_for_status(in_state("realtime"), timeout=90)
                t.event("worker streaming again")
            writer.wait_commits(20)
        finally:
            writer.stop()
        t.event(f"writer stopped after {writer.committed} transactions")
        t.converge(worker)
        streamed = source_db.instance.execute(
            "SELECT coalesce(sum(stream_txns), 0), coalesce(sum(spill_txns), 0) FROM pg_stat_replication_slots s "
            "JOIN pg_replication_slots r USING (slot_name) WHERE r.database = %s",
            (source_db.name,),
        )
        t.event(f"slot statistics: streamed in-progress transactions, spilled transactions = {streamed[0]}")
        t.event(f"{assert_each_change_once(source_db, t.sink, at_least=100 + writer.committed)} changes, each once")
        t.shutdown(worker)


def test_source_restart_within_retry_window(
    pg_source: PostgresInstance, source_db: PgDatabase, trial_factory: Callable[..., Trial]
) -> None:
    seed = BASE_SEED * 100 + 99
    log: list[str] = []
    with seed_on_failure(seed, log):
        create_schema(source_db)
        load(source_db, accounts=5_000, items=1_000)
        t = trial_factory(seed, log, retry_window_seconds=120, limits={"cdc": {"flush_interval_ms": 100}})
        worker = t.start()
        worker.wait_for_status(in_state("realtime"), timeout=90)
        writer = Writer(source_db, seed, next_id=5_001, items_max=1000).start()
        try:
            writer.wait_commits(30)
            pg_source.restart()
            t.event("source restarted")
            assert worker.returncode is None, f"worker exited on a source restart\n{worker.output_tail()}"
            writer.wait_commits(30)
            pg_source.restart()
            t.event("source restarted again")
            writer.wait_commits(30)
        finally:
            writer.stop()
        assert worker.returncode is None, f"worker exited instead of retrying\n{worker.output_tail()}"
        retries = [s for s in worker.statuses() if s.get("status") == "retry"]
        t.event(f"{len(retries)} retry status lines")
        t.converge(worker)
        t.event(f"{assert_each_change_once(source_db, t.sink, at_least=100 + writer.committed)} changes, each once")
        t.shutdown(worker)
