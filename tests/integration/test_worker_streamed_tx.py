"""Transactions PostgreSQL streams while still in progress, with subtransactions, TOAST and keyless tables.

The worker folds and encodes the top-level changes of a streamed transaction as they arrive and keeps the rest
(subtransaction changes, keyless tables) as raw messages, so both paths and their order meet in one replay: a
rolled-back savepoint must vanish, a released one must stay, unchanged TOAST values must be kept, and an aborted
streamed transaction must leave no trace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.pg import PgDatabase, WorkerProcess, table_diff, wait_tables_equal

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_streamed_transactions_with_savepoints_toast_and_abort(
    source_db: PgDatabase,
    sink_db: PgDatabase,
    make_connector_config: Callable[..., Path],
    run_worker: Callable[..., WorkerProcess],
) -> None:
    source_db.psql(
        "CREATE TABLE docs (id int PRIMARY KEY, v int NOT NULL, doc text NOT NULL);"
        "ALTER TABLE docs ALTER COLUMN doc SET STORAGE EXTERNAL;"
        "CREATE TABLE notes (a int, b text);"
        "ALTER TABLE notes REPLICA IDENTITY FULL;"
        "INSERT INTO docs SELECT g, 0, repeat(chr(65 + g % 26), 5000) FROM generate_series(1, 300) g;"
        "INSERT INTO notes SELECT g % 50, 'n' || g FROM generate_series(1, 200) g;"
    )
    # Every transaction below is over 64kB of decoded changes: streamed while in progress.
    source_db.execute(f"ALTER DATABASE \"{source_db.name}\" SET logical_decoding_work_mem = '64kB'")
    worker = run_worker(make_connector_config(limits={"cdc": {"max_buffer_rows": 700, "flush_interval_ms": 50}}))
    worker.wait_for_status(lambda s: s.get("state") == "realtime")
    source_db.psql(
        "BEGIN;"
        "INSERT INTO docs SELECT g, 1, 'new' || g FROM generate_series(1001, 4000) g;"
        "UPDATE docs SET v = v + 1 WHERE id <= 300;"  # doc unchanged: TOAST 'u'
        "INSERT INTO notes SELECT g, 'k' || g FROM generate_series(1, 500) g;"
        "SAVEPOINT a;"
        "UPDATE docs SET v = -1, doc = 'gone' WHERE id BETWEEN 1 AND 100;"
        "INSERT INTO docs SELECT g, -1, 'x' FROM generate_series(5001, 30000) g;"
        "DELETE FROM docs WHERE id BETWEEN 1001 AND 1500;"
        "DELETE FROM notes WHERE a < 10;"
        "ROLLBACK TO SAVEPOINT a;"
        "SAVEPOINT b;"
        "UPDATE docs SET v = v + 10 WHERE id BETWEEN 101 AND 200;"
        "INSERT INTO docs SELECT g, 2, 'kept' FROM generate_series(8001, 9000) g;"
        "RELEASE SAVEPOINT b;"
        "DELETE FROM docs WHERE id BETWEEN 3001 AND 3500;"
        "UPDATE docs SET id = id + 10000 WHERE id BETWEEN 3501 AND 3600;"  # key change
        "UPDATE docs SET v = v + 100 WHERE id <= 50;"
        "UPDATE notes SET b = b || '!' WHERE a = 20;"
        "COMMIT;"
        "BEGIN;"
        "INSERT INTO docs SELECT g, 9, 'aborted' FROM generate_series(20001, 24000) g;"
        "UPDATE docs SET v = 99 WHERE id <= 300;"
        "ROLLBACK;"
        "UPDATE docs SET v = v + 1000 WHERE id BETWEEN 250 AND 260;"
    )
    deadline = time.monotonic() + 120
    while True:
        assert worker.returncode is None, worker.output_tail()
        if table_diff(source_db, sink_db, "docs", ("id",)) is None and sink_db.scalar(
            "SELECT count(*) FROM notes"
        ) == source_db.scalar("SELECT count(*) FROM notes"):
            break
        assert time.monotonic() < deadline, str(table_diff(source_db, sink_db, "docs", ("id",)))[:2000]
        time.sleep(0.3)
    assert worker.stop() == 0
    assert sink_db.scalar("SELECT count(*) FROM docs WHERE length(doc) = 5000") == 300
    assert sink_db.scalar("SELECT count(*) FROM docs WHERE id BETWEEN 20001 AND 24000 OR id BETWEEN 5001 AND 7999") == 0
    src_notes = source_db.scalar("SELECT string_agg(a || ':' || b, ',' ORDER BY a, b) FROM notes")
    assert sink_db.scalar("SELECT string_agg(a || ':' || b, ',' ORDER BY a, b) FROM notes") == src_notes


def test_streamed_transaction_applied_ahead_then_aborted_or_interleaved(
    source_db: PgDatabase,
    sink_db: PgDatabase,
    make_connector_config: Callable[..., Path],
    run_worker: Callable[..., WorkerProcess],
) -> None:
    """Chunks applied to the idle sink before the commit are rolled back when the transaction aborts, or when
    another transaction commits in between (and then replayed at the commit); staging works again afterwards."""
    source_db.psql("CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL); CREATE TABLE small (id int PRIMARY KEY);")
    source_db.execute(f"ALTER DATABASE \"{source_db.name}\" SET logical_decoding_work_mem = '64kB'")
    worker = run_worker(make_connector_config(limits={"cdc": {"max_buffer_rows": 500, "flush_interval_ms": 50}}))
    worker.wait_for_status(lambda s: s.get("state") == "realtime")

    def wait_equal(what: str) -> None:
        deadline = time.monotonic() + 90
        while table_diff(source_db, sink_db, "t") or table_diff(source_db, sink_db, "small"):
            assert worker.returncode is None, worker.output_tail()
            assert time.monotonic() < deadline, f"{what}: {table_diff(source_db, sink_db, 't')}"
            time.sleep(0.2)

    def wait_applied_ahead() -> None:
        """The worker wrote to the sink (its backend has a transaction id) although nothing was committed."""
        deadline = time.monotonic() + 60
        while not sink_db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'sluice-%%' AND backend_xid IS NOT NULL"
        ):
            assert worker.returncode is None, worker.output_tail()
            assert time.monotonic() < deadline, "the streamed transaction was not applied ahead of its commit"
            time.sleep(0.1)

    with source_db.instance.connect(source_db.name, autocommit=True) as big:
        # 1. Streamed while the sink is idle, then rolled back.
        big.execute("BEGIN")
        big.execute("INSERT INTO t SELECT g, repeat('a', 50) FROM generate_series(1, 20000) g")
        wait_applied_ahead()
        big.execute("ROLLBACK")
        source_db.execute("INSERT INTO small VALUES (1)")
        wait_equal("after the rollback")
        assert sink_db.scalar("SELECT count(*) FROM t") == 0
        # 2. Streamed, then another transaction commits first, then more changes and the commit.
        big.execute("BEGIN")
        big.execute("INSERT INTO t SELECT g, repeat('b', 50) FROM generate_series(1, 20000) g")
        wait_applied_ahead()
        source_db.execute("INSERT INTO small VALUES (2)")
        deadline = time.monotonic() + 60
        while sink_db.scalar("SELECT count(*) FROM small") != 2:
            assert time.monotonic() < deadline, "the interleaved transaction did not arrive"
            time.sleep(0.1)
        assert sink_db.scalar("SELECT count(*) FROM t") == 0  # nothing of the open transaction is visible
        big.execute("UPDATE t SET v = 'c' WHERE id % 3 = 0")
        big.execute("COMMIT")
        wait_equal("after the interleaved commit")
        # 3. Streamed again on an idle sink and committed (staging tables recreated after the rollbacks).
        big.execute("BEGIN")
        big.execute("DELETE FROM t WHERE id % 5 = 0")
        big.execute("INSERT INTO t SELECT g, 'd' FROM generate_series(20001, 40000) g")
        big.execute("COMMIT")
        wait_equal("after the last commit")
    assert worker.stop() == 0


def test_rows_applied_counts_each_change_once(
    source_db: PgDatabase,
    sink_db: PgDatabase,
    make_connector_config: Callable[..., Path],
    run_worker: Callable[..., WorkerProcess],
) -> None:
    """Streamed chunks were counted twice, and a key move was missing from its table's count."""
    source_db.psql("CREATE TABLE cnt (id int PRIMARY KEY, doc text NOT NULL); INSERT INTO cnt VALUES (0, 'zero');")
    source_db.execute(f"ALTER DATABASE \"{source_db.name}\" SET logical_decoding_work_mem = '64kB'")
    worker = run_worker(make_connector_config(limits={"cdc": {"flush_interval_ms": 50}}))
    worker.wait_for_status(lambda s: s.get("state") == "realtime")
    # 3,000 inserts in one streamed transaction, then one key move in a plain one: 3,001 changes.
    source_db.psql("INSERT INTO cnt SELECT g, repeat('x', 200) FROM generate_series(1, 3000) g;")
    source_db.psql("UPDATE cnt SET id = -1 WHERE id = 0;")
    wait_tables_equal(source_db, sink_db, {"cnt": ("id",)})
    assert worker.stop() == 0
    final = worker.last_status()  # the shutdown report carries the final counts
    assert final is not None and final["state"] == "shutdown"
    assert final["rows_applied"] == 3001
    assert final["tables"]["public.cnt"]["rows_applied"] == 3001
