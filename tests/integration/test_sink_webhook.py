"""PostgreSQL -> webhook through the real worker process, into a real HTTP(S) receiver (``tests.support.webhook``).

What a receiver sees: snapshot rows then changes, in order per table, each request one table of one source
transaction with an ``Idempotency-Key``; the delivery guarantee: after 500s, 429s with ``Retry-After``, answers
slower than the timeout, connection resets and SIGKILLs of the worker at random instants, deduplicating on the
key yields every change exactly once; a permanent 4xx stops the worker with the status, body excerpt and the fix,
and once the receiver is fixed the next run resumes without loss. Compression, auth kinds and a private CA too.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pg import PgDatabase, WorkerProcess, connector_spec, write_connector_config
from tests.support.webhook import Fail, Receiver, TlsMaterial, make_tls

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RunWorker = Callable[..., WorkerProcess]


def realtime(status: dict[str, Any]) -> bool:
    return status.get("state") == "realtime"


@pytest.fixture
def hook() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def webhook_spec(source: PgDatabase, url: str, *, connector_id: str | None = None, **sink: Any) -> dict[str, Any]:
    """A PostgreSQL -> webhook connector spec; ``sink`` are fields of ``sink.webhook`` besides ``url``."""
    spec = connector_spec(
        source,
        source,
        connector_id=connector_id or f"w-{uuid.uuid4().hex[:10]}",
        limits={"cdc": {"flush_interval_ms": 50}},
        retry_window_seconds=600,
    )
    spec["sink"] = {"webhook": {"url": url, **sink}}
    return spec


class Run:
    """Starts workers of one connector with the same state directory (the checkpoint survives restarts)."""

    def __init__(self, run_worker: RunWorker, tmp_path: Path, spec: dict[str, Any], env: dict[str, str] | None = None):
        self.run_worker = run_worker
        self.config = write_connector_config(tmp_path / f"{spec['id']}.yaml", spec)
        self.env = {"SLUICE_STATE_DIR": str(tmp_path / "state"), **(env or {})}
        self.spec = spec

    def start(self) -> WorkerProcess:
        return self.run_worker(self.config, env=self.env)


def native_rows(events: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("table") == table]


def test_snapshot_then_changes_in_order_per_table(
    source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql(
        "CREATE TABLE a (id int PRIMARY KEY, v text);"
        "CREATE TABLE b (id int PRIMARY KEY, n numeric(10,2));"
        "INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 30) g;"
        "INSERT INTO b SELECT g, g * 1.25 FROM generate_series(1, 10) g;"
    )
    spec = webhook_spec(source_db, hook.url, path_template="/{schema}/{table}", batch={"max_batch_size": 7})
    worker = Run(run_worker, tmp_path, spec).start()
    status = worker.wait_for_status(realtime, timeout=90)
    assert status.get("delivery") == "at-least-once (idempotency keys)"
    hook.wait_for(lambda r: len(r.delivered()) >= 40, what="40 snapshot rows")
    snap = hook.delivered()
    assert {e["op"] for e in snap} == {"r"}
    assert sorted(e["row"]["id"] for e in native_rows(snap, "public.a")) == list(range(1, 31))
    assert {e["row"]["n"] for e in native_rows(snap, "public.b")} >= {"1.25", "12.50"}
    assert all(len(r.events) <= 7 for r in hook.processed())
    assert {r.path for r in hook.processed()} == {"/public/a", "/public/b"}
    for r in hook.processed():
        assert {e["table"] for e in r.events} == {r.path[1:].replace("/", ".")}
        assert r.headers["content-type"] == "application/json"
        assert len(r.key) == 64

    # One transaction over both tables, interleaved: each table's changes arrive in order, a request never mixes.
    with source_db.connect(autocommit=False) as conn:
        for i in range(1, 21):
            conn.execute("UPDATE a SET v = %s WHERE id = %s", (f"u{i}", i))
            conn.execute("INSERT INTO b VALUES (%s, %s)", (100 + i, i))
        conn.execute("DELETE FROM a WHERE id > 25")
        conn.commit()
    source_db.psql("TRUNCATE b")
    hook.wait_for(lambda r: any(e["op"] == "t" for e in r.delivered()), what="the truncate")
    events = hook.delivered()[40:]
    a = native_rows(events, "public.a")
    b = native_rows(events, "public.b")
    assert [(e["op"], e["key"]["id"]) for e in a] == [("u", i) for i in range(1, 21)] + [
        ("d", i) for i in range(26, 31)
    ]
    assert [e["row"]["v"] for e in a if e["op"] == "u"] == [f"u{i}" for i in range(1, 21)]
    assert [(e["op"], e["row"]["id"]) for e in b[:-1]] == [("c", 100 + i) for i in range(1, 21)]
    assert b[-1]["op"] == "t"
    tx_requests = [r for r in hook.processed() if r.events[0]["op"] in ("u", "c")]
    # interleaved changes of two tables: a new request at each switch, all with the transaction's position
    assert len(tx_requests) >= 40
    assert len({r.headers["x-sluice-position"] for r in tx_requests}) == 1
    assert worker.stop() == 0
