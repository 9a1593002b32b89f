"""What ``PostgresSource.retained()`` reports of a real slot, as the operator reads it for ``wal_retained_bytes``
and SlotAtRisk: the WAL it holds from ``restart_lsn`` on, and the source's own verdict (``wal_status``) up to a slot
the source has invalidated."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sluice.models import Connector
from sluice.worker.sources.postgres.source import PostgresSource
from tests.support.pg import PgDatabase, connector_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def source(source_db: PgDatabase) -> Iterator[PostgresSource]:
    made = PostgresSource(Connector.model_validate(connector_spec(source_db, source_db)))
    try:
        yield made
    finally:
        try:
            made.cleanup(force=True)
        finally:
            made.close()


def test_retained_is_the_wal_from_restart_lsn_and_a_lost_slot_says_so(
    source_db: PgDatabase, source: PostgresSource
) -> None:
    source_db.execute(
        "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
        (source.slot_name,),
    )
    source_db.execute("CREATE TABLE filler (id int, pad text)")
    before = source_db.scalar("SELECT pg_current_wal_lsn()::text")
    written = 0
    for _ in range(20):  # a few MB of WAL, however the server logs these rows
        source_db.execute("INSERT INTO filler SELECT g, repeat('p', 300) FROM generate_series(1, 10000) g")
        written = int(source_db.scalar("SELECT pg_current_wal_lsn() - %s::pg_lsn", (before,)))
        if written > 2 << 20:
            break
    retained = source.retained()
    assert retained.exists and not retained.active and retained.error is None
    assert retained.retained_bytes is not None and retained.retained_bytes >= written > 2 << 20
    assert retained.wal_status in ("reserved", "extended") and retained.safe_wal_bytes is None  # no limit set

    # The source may keep at most 1 MB for slots: after a few segments and a checkpoint it invalidates this one.
    source_db.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
    try:
        source_db.execute("SELECT pg_reload_conf()")
        for _ in range(4):
            source_db.execute("INSERT INTO filler VALUES (0, 'x')")
            source_db.execute("SELECT pg_switch_wal()")
        source_db.execute("CHECKPOINT")
        lost = source.retained()
        assert lost.exists and lost.wal_status == "lost", lost
        assert lost.retained_bytes is None  # restart_lsn is gone: no size rather than a false 0
    finally:
        source_db.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
        source_db.execute("SELECT pg_reload_conf()")
