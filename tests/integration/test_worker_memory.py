"""One source transaction of a million rows, and a snapshot of large chunks, with the worker's memory bounded.

PostgreSQL streams such a transaction while it is still in progress (it exceeds logical_decoding_work_mem); the
worker spills it to disk and applies it in chunks inside one sink transaction at its commit. Peak RSS is read from
/proc (VmHWM) — a correctness bound (the worker must not hold a transaction in memory), not a speed claim.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from sluice.devstack.kafka import KafkaInstance
from tests.support.pg import PgDatabase, WorkerProcess, connector_spec, table_diff, write_connector_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROWS = 1_000_000
RSS_BOUND_KB = 256 * 1024


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def test_million_row_transaction_under_memory_bound(
    source_db: PgDatabase,
    sink_db: PgDatabase,
    make_connector_config: Callable[..., Path],
    run_worker: Callable[..., WorkerProcess],
) -> None:
    source_db.psql("CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL);")
    worker = run_worker(make_connector_config(limits={"cdc": {"max_buffer_rows": 20_000}}))
    worker.wait_for_status(lambda s: s.get("state") == "realtime")
    source_db.execute("INSERT INTO big SELECT g, g, repeat(md5(g::text), 3) FROM generate_series(1, %s) g", (ROWS,))
    deadline = time.monotonic() + 400
    seen: set[int] = set()
    while (count := sink_db.scalar("SELECT count(*) FROM big")) != ROWS:
        seen.add(count)
        assert worker.returncode is None, worker.output_tail()
        assert time.monotonic() < deadline, "the big transaction did not arrive"
        time.sleep(0.2)
    # The sink never showed part of the transaction: it commits whole (the count jumps from 0 to ROWS).
    assert seen <= {0}, f"partial transaction visible in the sink: {sorted(seen)[:5]}"
    peak = peak_rss_kb(worker.pid)
    assert worker.stop() == 0
    assert table_diff(source_db, sink_db, "big", ("id",)) is None
    assert peak < RSS_BOUND_KB, f"worker peak RSS {peak // 1024} MB exceeds {RSS_BOUND_KB // 1024} MB"


SNAPSHOT_ROWS = 400_000
SNAPSHOT_RSS_BOUND_KB = 160 * 1024


def test_snapshot_chunks_are_read_in_bounded_batches(
    source_db: PgDatabase, kafka: KafkaInstance, run_worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """A snapshot chunk is one sink commit of up to ``limits.snapshot.max_buffer_rows`` rows (200k by default), but
    the general flow reads and writes it ``SNAPSHOT_READ_ROWS`` rows at a time: holding whole chunks as Python rows
    took ~90 MB per copying thread: this worker (400k rows in chunks of up to 200k, copied side by side into Kafka)
    peaked at 193 MB that way, and at 96 MB reading 20k rows at a time."""
    source_db.psql(
        "CREATE TABLE wide (id int PRIMARY KEY, v int NOT NULL, pad text NOT NULL);"
        f"INSERT INTO wide SELECT g, g, repeat(md5(g::text), 3) FROM generate_series(1, {SNAPSHOT_ROWS}) g;"
        "ANALYZE wide;"
    )
    spec = connector_spec(source_db, source_db, connector_id=f"m-{uuid.uuid4().hex[:10]}")
    spec["sink"] = {"kafka": {"connection": {"brokers": [kafka.bootstrap]}, "format": {"native": {}}}}
    worker = run_worker(write_connector_config(tmp_path / f"{spec['id']}.yaml", spec))
    status = worker.wait_for_status(lambda s: s.get("state") == "realtime", timeout=300)
    assert status["tables"]["public.wide"]["rows_copied"] == SNAPSHOT_ROWS, status["tables"]
    peak = peak_rss_kb(worker.pid)
    assert worker.stop() == 0
    assert peak < SNAPSHOT_RSS_BOUND_KB, f"worker peak RSS {peak // 1024} MB, bound {SNAPSHOT_RSS_BOUND_KB // 1024} MB"
