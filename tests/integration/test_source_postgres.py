"""PostgresSource against real PostgreSQL: discover, snapshot, stream as neutral events, ack, retention, cleanup.

No sink and no worker here: the tests drive the Source interface directly, as the engine does.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from sluice.errors import ReplicationError, TransientError
from sluice.models import Connector
from sluice.worker.events import (
    Begin,
    Commit,
    Event,
    ExistingValues,
    Op,
    RowChange,
    SchemaChange,
    TableSchema,
    Truncate,
    TypeKind,
)
from sluice.worker.positions import Lsn, parse_lsn
from sluice.worker.sources.base import ChangeStream
from sluice.worker.sources.postgres.source import PostgresSource
from tests.support.pg import PgDatabase, connector_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MakeSource = Callable[..., PostgresSource]


@pytest.fixture
def make_source(source_db: PgDatabase) -> Iterator[MakeSource]:
    """``make_source(**connector_spec options)``: a PostgresSource; its slot and publication dropped afterwards."""
    made: list[PostgresSource] = []

    def make(**options: Any) -> PostgresSource:
        spec = connector_spec(source_db, source_db, **options)
        source = PostgresSource(Connector.model_validate(spec))
        made.append(source)
        return source

    yield make
    for source in made:
        try:
            source.cleanup(force=True)  # a slot left behind would keep the test database from being dropped
        finally:
            source.close()


def schema_of(tables: list[TableSchema], name: str) -> TableSchema:
    return next(t for t in tables if t.table.name == name)


def read_all(source: PostgresSource, session: Any, tables: list[TableSchema], batch_rows: int) -> list[Any]:
    """Every chunk of ``tables``, read by four threads at once."""
    chunks = source.plan(tables, batch_rows)

    def read(chunk: Any) -> list[Any]:
        return [row for batch in session.read(chunk, batch_rows) for row in batch]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return [row for rows in pool.map(read, chunks) for row in rows]


def collect(stream: ChangeStream, until: Callable[[list[Event]], bool], timeout: float = 30) -> list[Event]:
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while not until(events):
        assert time.monotonic() < deadline, f"stream stalled; got {events}"
        event = stream.poll(0.5)
        if event is not None:
            events.append(event)
    return events


def commits(n: int) -> Callable[[list[Event]], bool]:
    return lambda events: sum(isinstance(e, Commit) for e in events) >= n


def start_stream(source: PostgresSource, tables: list[TableSchema] | None = None) -> tuple[ChangeStream, Lsn]:
    """Publication + slot (its snapshot released at once), then a stream from the slot's consistent point."""
    tables = tables if tables is not None else source.discover()
    if not source.pg_tables.keys() - {t.table.label for t in tables}:
        source.prepare_stream(tables)
    session = source.open_snapshot()
    position = session.position
    session.close()
    assert isinstance(position, Lsn)
    source.can_resume(position)
    return source.stream(position, tables), position


def wait_inactive(db: PgDatabase, slot: str, timeout: float = 20) -> None:
    """The server ends a closed stream's WAL sender a moment after the client has gone: wait for it."""
    deadline = time.monotonic() + timeout
    while db.scalar("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)):
        assert time.monotonic() < deadline, f"slot {slot} stayed active after its stream was closed"
        time.sleep(0.05)


def rows_of(events: list[Event]) -> list[RowChange]:
    return [e for e in events if isinstance(e, RowChange)]


# --------------------------------------------------------------------------------------------------- discover


def test_discover_maps_column_types(source_db: PgDatabase, make_source: MakeSource) -> None:
    source_db.psql(
        """
        CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
        CREATE DOMAIN price AS numeric(8,2) CHECK (VALUE >= 0);
        CREATE TABLE many (
            id bigint PRIMARY KEY, small smallint, i int NOT NULL, amount numeric(12,3), f4 real, f8 float8,
            flag boolean, t text, vc varchar(20), ch char(3), b bytea, d date, tm time, tmtz timetz,
            ts timestamp, tstz timestamptz, iv interval, u uuid, j json, jb jsonb, ints int[], moods mood[],
            m mood, p price, pt point, secret text
        );
        """
    )
    source = make_source(catalog={"schemas": [{"name": "public", "tables": [{"name": "many", "columns": [
        {"name": "secret", "action": "Exclude"}]}]}]})  # fmt: skip
    [many] = source.discover()
    types = {c.name: c.type for c in many.columns}
    assert "secret" not in types
    assert many.key == ("id",)
    kinds = {name: (t.kind, t.bits) for name, t in types.items() if t.bits}
    assert kinds == {
        "id": (TypeKind.INT, 64),
        "small": (TypeKind.INT, 16),
        "i": (TypeKind.INT, 32),
        "f4": (TypeKind.FLOAT, 32),
        "f8": (TypeKind.FLOAT, 64),
    }
    assert (types["amount"].kind, types["amount"].precision, types["amount"].scale) == (TypeKind.DECIMAL, 12, 3)
    assert (types["vc"].kind, types["vc"].length, types["ch"].length) == (TypeKind.TEXT, 20, 3)
    simple = {
        "flag": TypeKind.BOOL,
        "t": TypeKind.TEXT,
        "b": TypeKind.BYTES,
        "d": TypeKind.DATE,
        "tm": TypeKind.TIME,
        "tmtz": TypeKind.TIMETZ,
        "ts": TypeKind.TIMESTAMP,
        "tstz": TypeKind.TIMESTAMPTZ,
        "iv": TypeKind.INTERVAL,
        "u": TypeKind.UUID,
        "j": TypeKind.JSON,
        "jb": TypeKind.JSON,
        "pt": TypeKind.NATIVE,
    }
    assert {n: types[n].kind for n in simple} == simple
    assert types["ints"].kind is TypeKind.ARRAY and types["ints"].element is not None
    assert (types["ints"].element.kind, types["ints"].element.bits) == (TypeKind.INT, 32)
    assert types["m"].kind is TypeKind.ENUM and types["m"].enum_values == ("sad", "ok", "happy")
    assert types["m"].native == "public.mood" and types["moods"].native == "public.mood[]"
    assert types["moods"].element is not None and types["moods"].element.kind is TypeKind.ENUM
    assert (types["p"].kind, types["p"].native, types["p"].precision) == (TypeKind.DECIMAL, "public.price", 8)
    assert all(t.dialect == "postgres" for t in types.values())
    assert types["amount"].native == "numeric(12,3)" and types["vc"].native == "character varying(20)"
    assert not next(c for c in many.columns if c.name == "i").nullable
    assert set(source.pg_tables) == {"public.many"}


# --------------------------------------------------------------------------------------------------- snapshot


def test_snapshot_reads_exactly_its_point_while_writes_go_on(source_db: PgDatabase, make_source: MakeSource) -> None:
    source_db.psql(
        "CREATE TABLE s (id int PRIMARY KEY, v text);"
        "INSERT INTO s SELECT g, 'v' || g FROM generate_series(1, 5000) g;"
        "ANALYZE s;"
    )
    source = make_source()
    tables = source.discover()
    session = source.open_snapshot()
    try:
        assert isinstance(session.position, Lsn) and session.position.value > 0
        # Writes after the snapshot: none of them may show.
        source_db.psql(
            "INSERT INTO s SELECT g, 'new' FROM generate_series(5001, 6000) g;"
            "UPDATE s SET v = 'changed' WHERE id % 7 = 0;"
            "DELETE FROM s WHERE id <= 100;"
        )
        chunks = source.plan(tables, 500)
        assert len(chunks) > 1, "a 5000-row table in 500-row chunks must be split"
        assert all({"relation", "lo_page", "hi_page"} <= set(c.bounds) for c in chunks)
        assert chunks[-1].bounds["hi_page"] is None
        rows = read_all(source, session, tables, 500)
    finally:
        session.close()
    assert len(rows) == 5000, "every row exactly once"
    assert sorted(rows) == [(i, f"v{i}") for i in range(1, 5001)]
    # resume_snapshot reads current data
    current = read_all(source, source.resume_snapshot(), tables, 1000)
    assert len(current) == 5900 and (105, "changed") in current and (5001, "new") in current


def test_snapshot_values_are_typed(source_db: PgDatabase, make_source: MakeSource) -> None:
    source_db.psql(
        """
        CREATE TYPE mood AS ENUM ('sad', 'happy');
        CREATE TABLE v (id int PRIMARY KEY, n numeric(10,2), ts timestamptz, j jsonb, a int[], m mood, ms mood[],
                        b bytea, u uuid, d date, iv interval, nothing text);
        INSERT INTO v VALUES (1, 12.50, '2024-03-01 10:00:00+02', '{"k": [1, 2]}', '{1,NULL,3}', 'happy',
                              '{sad,happy}', '\\x00ff', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'infinity',
                              '1 day 02:00:00', NULL);
        """
    )
    source = make_source(replication="snapshot")
    tables = source.discover()
    session = source.open_snapshot()
    try:
        assert session.position is None
        [row] = read_all(source, session, tables, 100)
    finally:
        session.close()
    assert row[:3] == (1, Decimal("12.50"), datetime(2024, 3, 1, 8, tzinfo=UTC))
    assert json.loads(row[3]) == {"k": [1, 2]} and isinstance(row[3], str)
    assert row[4:7] == ([1, None, 3], "happy", ["sad", "happy"])
    assert row[7] == b"\x00\xff" and row[8] == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    assert row[9] == "infinity"  # no Python date: the source's text
    assert row[10] == timedelta(days=1, hours=2) and row[11] is None


# --------------------------------------------------------------------------------------------------- stream


def test_stream_yields_transactions_with_typed_values(source_db: PgDatabase, make_source: MakeSource) -> None:
    source_db.psql(
        """
        CREATE TYPE mood AS ENUM ('sad', 'happy');
        CREATE TABLE t (id int PRIMARY KEY, n numeric(10,2), ts timestamptz, j json, a text[], m mood,
                        b bytea, u uuid, iv interval, d date);
        CREATE TABLE other (id int PRIMARY KEY);
        """
    )
    source = make_source()
    tables = source.discover()
    source.prepare_stream(tables)  # both tables published ...
    stream, start = start_stream(source, [schema_of(tables, "t")])  # ... but only t streamed
    try:
        source_db.psql(
            """
            BEGIN;
            INSERT INTO other VALUES (1);
            INSERT INTO t VALUES (1, 3.14, '2024-01-02 03:04:05.678+00', '{"a": 1}', '{x,"y z"}', 'sad',
                                  '\\xdeadbeef', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 mon 2 days', '2024-02-29');
            INSERT INTO t (id) VALUES (2);
            COMMIT;
            UPDATE t SET n = n + 1, m = 'happy' WHERE id = 1;
            DELETE FROM t WHERE id = 2;
            """
        )
        events = collect(stream, commits(3))
    finally:
        stream.close()
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Begin", "RowChange", "RowChange", "Commit"] * 1 + ["Begin", "RowChange", "Commit"] * 2
    begin, commit = events[0], events[3]
    assert isinstance(begin, Begin) and isinstance(commit, Commit)
    assert begin.xid == commit.xid and begin.xid is not None
    assert isinstance(begin.position, Lsn) and start <= begin.position < commit.position
    assert commit.commit_time is not None and abs(commit.commit_time - datetime.now(UTC)) < timedelta(minutes=5)
    assert commit.event_counts == {"public.t": 2}, "the unselected table's change is dropped"
    first, second, update, delete = rows_of(events)
    assert first.op is Op.INSERT and first.before is None and first.table.label == "public.t"
    assert first.after == (
        1,
        Decimal("3.14"),
        datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        '{"a": 1}',
        ["x", "y z"],
        "sad",
        b"\xde\xad\xbe\xef",
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "1 mon 2 days",  # months have no fixed length: the source's text
        date(2024, 2, 29),
    )
    assert second.after == (2, None, None, None, None, None, None, None, None, None) and not second.unchanged
    assert update.op is Op.UPDATE and update.after is not None
    assert update.after[1] == Decimal("4.14") and update.after[5] == "happy"
    assert update.before is None, "default replica identity, key unchanged: no old tuple"
    assert delete.op is Op.DELETE and delete.after is None
    assert delete.before == (2, None, None, None, None, None, None, None, None, None), "key-only old row"
    # Commit positions order the stream
    positions = [e.position for e in events if isinstance(e, Commit)]
    assert positions == sorted(positions)


def test_unchanged_toast_and_key_only_before(source_db: PgDatabase, make_source: MakeSource) -> None:
    source_db.psql(
        """
        CREATE TABLE big (id int PRIMARY KEY, note text, blob text);
        ALTER TABLE big ALTER COLUMN blob SET STORAGE EXTERNAL;
        INSERT INTO big VALUES (1, 'a', repeat('x', 10000));
        """
    )
    source = make_source()
    stream, _ = start_stream(source)
    try:
        source_db.psql("UPDATE big SET note = 'b' WHERE id = 1; UPDATE big SET id = 2 WHERE id = 1;")
        events = collect(stream, commits(2))
    finally:
        stream.close()
    note_update, key_update = rows_of(events)
    assert note_update.after == (1, "b", None) and note_update.unchanged == frozenset({2})
    assert note_update.before is None
    assert key_update.before == (1, None, None), "the old key only ('K')"
    assert key_update.after == (2, "b", None) and key_update.unchanged == frozenset({2})


def test_full_replica_identity_sends_the_whole_old_row(source_db: PgDatabase, make_source: MakeSource) -> None:
    source_db.psql(
        "CREATE TABLE f (id int PRIMARY KEY, v text); ALTER TABLE f REPLICA IDENTITY FULL;"
        "INSERT INTO f VALUES (1, 'a');"
    )
    source = make_source()
    tables = source.discover()
    assert schema_of(tables, "f").key == ("id",)
    stream, _ = start_stream(source, tables)
    try:
        source_db.psql("UPDATE f SET v = 'b'; DELETE FROM f;")
        events = collect(stream, commits(2))
    finally:
        stream.close()
    update, delete = rows_of(events)
    assert (update.before, update.after) == ((1, "a"), (1, "b"))
    assert delete.before == (1, "b")
    assert not any(isinstance(e, SchemaChange) for e in events), "identity FULL flags every column: not a key change"


def test_truncate_and_schema_change(source_db: PgDatabase, make_source: MakeSource) -> None:
    source_db.psql("CREATE TABLE a (id int PRIMARY KEY, v text); CREATE TABLE b (id int PRIMARY KEY);")
    source = make_source()
    tables = source.discover()
    stream, _ = start_stream(source, tables)
    try:
        source_db.psql(
            """
            INSERT INTO a VALUES (1, 'x');
            TRUNCATE a, b RESTART IDENTITY;
            ALTER TABLE a ALTER COLUMN v TYPE varchar(10);  -- a rewrite: before the added column's
            ALTER TABLE a ADD COLUMN c int NOT NULL DEFAULT 7;  -- "missing value", which would materialise it
            INSERT INTO a VALUES (2, 'y', 8);
            """
        )
        events = collect(stream, commits(3))
    finally:
        stream.close()
    [truncate] = [e for e in events if isinstance(e, Truncate)]
    assert {t.label for t in truncate.tables} == {"public.a", "public.b"}
    assert truncate.restart_identity and not truncate.cascade
    [change] = [e for e in events if isinstance(e, SchemaChange)]
    assert change.previous == schema_of(tables, "a")
    assert change.schema.column_names == ["id", "v", "c"] and change.schema.key == ("id",)
    c = change.schema.columns[2]
    assert (c.type.kind, c.type.bits, c.nullable) == (TypeKind.INT, 32, False)
    assert (change.schema.columns[1].type.kind, change.schema.columns[1].type.length) == (TypeKind.TEXT, 10)
    assert change.existing == {"c": ExistingValues(constant="7")}
    # the schema change comes before the row that has the new shape, in the same transaction
    index = events.index(change)
    after = events[index + 1]
    assert isinstance(after, RowChange) and after.after == (2, "y", 8)
    assert isinstance(events[index - 1], Begin)


def test_ack_moves_the_slot_and_lag_shrinks(source_db: PgDatabase, make_source: MakeSource) -> None:
    source_db.psql("CREATE TABLE k (id int PRIMARY KEY);")
    source = make_source()
    stream, start = start_stream(source)

    def confirmed() -> int:
        query = "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s"
        return parse_lsn(source_db.scalar(query, (source.slot_name,)))

    try:
        source_db.psql("INSERT INTO k SELECT generate_series(1, 100);")
        events = collect(stream, commits(1))
        commit = events[-1]
        assert isinstance(commit, Commit) and isinstance(commit.position, Lsn)
        assert confirmed() < commit.position.value, "nothing is confirmed before the sink says it is durable"
        lag = stream.lag()
        assert lag.bytes is not None and lag.bytes > 0
        stream.ack(commit.position)
        deadline = time.monotonic() + 20
        while confirmed() < commit.position.value:
            assert time.monotonic() < deadline, "ack never reached the slot's confirmed_flush_lsn"
            stream.poll(0.1)
        after = stream.lag()
        assert after.bytes is not None and after.bytes < lag.bytes
    finally:
        stream.close()
    assert start < commit.position


def test_can_resume_says_what_is_wrong(source_db: PgDatabase, make_source: MakeSource) -> None:
    source_db.psql("CREATE TABLE r (id int PRIMARY KEY);")
    source = make_source()
    stream, start = start_stream(source)
    try:
        with pytest.raises(TransientError, match="in use"):
            query = "SELECT active FROM pg_replication_slots WHERE slot_name = %s"
            collect(stream, lambda _: source_db.scalar(query, (source.slot_name,)) is True)
            source.can_resume(start)
    finally:
        stream.close()
    wait_inactive(source_db, source.slot_name)
    source.cleanup()
    with pytest.raises(ReplicationError, match="is gone") as info:
        source.can_resume(start)
    assert "ReIntialize" in info.value.fix


# --------------------------------------------------------------------------------------------------- retention


def test_retained_and_cleanup(source_db: PgDatabase, make_source: MakeSource) -> None:
    source_db.psql("CREATE TABLE c (id int PRIMARY KEY); CREATE PUBLICATION mine FOR TABLE c;")
    own = make_source()
    assert own.retained() == own.retained().__class__(own.slot_name, exists=False)
    stream, _ = start_stream(own)
    stream.close()
    wait_inactive(source_db, own.slot_name)
    source_db.psql("INSERT INTO c SELECT generate_series(1, 1000);")
    retained = own.retained()
    assert retained.exists and not retained.active and retained.error is None
    assert retained.retained_bytes is not None and retained.retained_bytes > 0
    assert own.cleanup() == [f"slot {own.slot_name}", f"publication {own.publication}"]
    assert own.cleanup() == []  # idempotent

    user = make_source(publication_name="mine")
    stream, _ = start_stream(user)
    stream.close()
    wait_inactive(source_db, user.slot_name)
    assert user.publication == "mine"
    assert user.cleanup() == [f"slot {user.slot_name}"]
    assert source_db.scalar("SELECT count(*) FROM pg_publication WHERE pubname = 'mine'") == 1, "the user's is kept"
    assert not source_db.scalar("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()")


def test_retained_reports_an_unreachable_source(source_db: PgDatabase) -> None:
    spec = connector_spec(source_db, source_db)
    spec["source"]["postgres"]["connection"]["port"] = 1  # nothing listens there
    source = PostgresSource(Connector.model_validate(spec))
    retained = source.retained()
    assert retained.error is not None and "cannot connect" in retained.error
    checks = source.checks()
    assert [(c.name, c.ok) for c in checks] == [("connection", False)] and checks[0].fix


def test_checks_and_preflight(source_db: PgDatabase, make_source: MakeSource) -> None:
    source_db.psql("CREATE TABLE keyless (v int);")
    source = make_source(publication_name="absent")
    checks = {c.name: c for c in source.checks()}
    assert checks["connection"].ok and checks["wal_level"].ok and checks["replication_privilege"].ok
    assert not checks["publication"].ok and "absent" in checks["publication"].message
    assert checks["publication"].field[-1] == "publication_name"
    from sluice.errors import SourceSetupError

    with pytest.raises(SourceSetupError, match="does not exist") as info:
        source.preflight(source.discover())
    assert "CREATE PUBLICATION" in info.value.fix
    keyless = make_source()
    with pytest.raises(SourceSetupError, match="neither a primary key"):
        keyless.preflight(keyless.discover())
