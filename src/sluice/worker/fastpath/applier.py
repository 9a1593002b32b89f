"""A background thread that owns the sink connection while changes stream, so decoding and applying overlap.

The stream thread decodes and folds the next batch while this thread copies the previous one into staging and
merges it; with two cores that nearly doubles bulk apply throughput. Jobs run strictly in order (apply, apply,
commit, ...), so the sink sees exactly what a single thread would have done. At most ``depth`` jobs wait in the
queue, which keeps memory bounded. Rare operations (DDL, truncate, rollback) first :meth:`sync` — wait until the
queue is empty and the thread idle — and then use the connection directly from the stream thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from sluice.worker.fastpath.apply import (
    EncodedChanges,
    Move,
    TableChanges,
    apply_encoded,
    apply_move,
    apply_table_changes,
)
from sluice.worker.positions import parse_lsn
from sluice.worker.sinks.postgres.state import StateStore

__all__ = ["Applier"]

_STOP = object()


class Applier:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        meta: psycopg.Connection[Any],
        state: StateStore,
        on_commit: Callable[[int, int, int], None],
        depth: int = 2,
    ) -> None:
        self.conn = conn
        self.meta = meta
        self.state = state
        self.on_commit = on_commit  # (source end LSN, source commit ts, sink WAL position after the commit)
        self.error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="sink-applier", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is _STOP:
                    return
                if self.error is not None:
                    continue  # drain without running anything after a failure
                if isinstance(job, TableChanges):
                    apply_table_changes(self.conn, job)
                elif isinstance(job, EncodedChanges):
                    apply_encoded(self.conn, job)
                elif isinstance(job, Move):
                    apply_move(self.conn, job)
                else:
                    end, commit_ts = job
                    self.state.set_applied(self.conn, end)
                    self.conn.commit()
                    row = self.meta.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
                    self.on_commit(end, commit_ts, parse_lsn(row[0] if row else None))
            except BaseException as exc:
                self.error = exc
            finally:
                self._queue.task_done()

    def busy(self) -> bool:
        """Jobs queued or running (a commit is only "done" once its callback ran)."""
        return self._queue.unfinished_tasks > 0

    def check(self) -> None:
        """Re-raise a failure of the thread in the caller."""
        if self.error is not None:
            raise self.error

    def _put(self, job: Any) -> None:
        while True:
            self.check()
            try:
                self._queue.put(job, timeout=0.5)
                return
            except queue.Full:
                continue

    def apply(self, changes: TableChanges | EncodedChanges | Move) -> None:
        self._put(changes)

    def commit(self, end_lsn: int, commit_ts: int) -> None:
        self._put((end_lsn, commit_ts))

    def sync(self) -> None:
        """Wait until every queued job ran; afterwards the caller may use the connection itself."""
        self._queue.join()
        self.check()

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=30)
            except queue.Full:
                return
            self._thread.join(timeout=60)
