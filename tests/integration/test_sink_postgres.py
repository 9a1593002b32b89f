"""The PostgreSQL sink against a real server, fed hand-built neutral events (the input a source would produce).

Each test prepares tables from :class:`TableSchema` values, applies :mod:`sluice.worker.events` changes or writes
snapshot chunks through :class:`PostgresSink`, and checks the sink tables and Sluice's state tables with SQL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from sluice.models import Connector
from sluice.worker.checkpoints import Checkpoint
from sluice.worker.events import (
    Column,
    ColumnType,
    ExistingValues,
    Op,
    RowChange,
    SchemaChange,
    TableId,
    TableSchema,
    Truncate,
    TypeKind,
)
from sluice.worker.sinks.postgres.sink import PostgresSink
from sluice.worker.sources.base import SnapshotChunk
from tests.support.pg import PgDatabase, connector_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

K = TypeKind
INT = ColumnType(K.INT, bits=64)
TEXT = ColumnType(K.TEXT)


def connector(db: PgDatabase, connector_id: str, **options: Any) -> Connector:
    return Connector.model_validate(connector_spec(db, db, connector_id=connector_id, **options))


@pytest.fixture
def make_sink(sink_db: PgDatabase) -> Iterator[Callable[..., PostgresSink]]:
    """``make_sink(**connector_spec options)``: sinks of one connector id; all closed at the end."""
    made: list[PostgresSink] = []
    connector_id = f"t-{uuid.uuid4().hex[:10]}"

    def make(**options: Any) -> PostgresSink:
        sink = PostgresSink(connector(sink_db, connector_id, **options))
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


def table(name: str, columns: list[tuple[str, ColumnType]], key: tuple[str, ...] = ("id",)) -> TableSchema:
    return TableSchema(TableId("app", name), tuple(Column(n, t, nullable=n not in key) for n, t in columns), key=key)


def ins(t: TableSchema, *row: Any) -> RowChange:
    return RowChange(Op.INSERT, t.table, None, tuple(row))


def upd(
    t: TableSchema, before: tuple[Any, ...] | None, *after: Any, unchanged: frozenset[int] = frozenset()
) -> RowChange:
    return RowChange(Op.UPDATE, t.table, before, tuple(after), unchanged)


def dele(t: TableSchema, *before: Any) -> RowChange:
    return RowChange(Op.DELETE, t.table, tuple(before), None)


def rows(db: PgDatabase, query: str) -> list[tuple[Any, ...]]:
    return db.execute(query)


def test_every_logical_type_round_trips(make_sink: Callable[..., PostgresSink], sink_db: PgDatabase) -> None:
    def m(kind: TypeKind, **kw: Any) -> ColumnType:
        return ColumnType(kind, dialect="mysql", native="x", **kw)

    columns = [
        ("id", INT),
        ("i8", m(K.INT, bits=8)),
        ("i16", m(K.INT, bits=16)),
        ("i32", m(K.INT, bits=32)),
        ("u64", m(K.INT, bits=64, unsigned=True)),
        ("dec", m(K.DECIMAL, precision=12, scale=2)),
        ("f32", m(K.FLOAT, bits=32)),
        ("f64", m(K.FLOAT, bits=64)),
        ("flag", m(K.BOOL)),
        ("txt", m(K.TEXT)),
        ("vc", m(K.TEXT, length=5)),
        ("raw", m(K.BYTES)),
        ("d", m(K.DATE)),
        ("t", m(K.TIME)),
        ("ttz", m(K.TIMETZ)),
        ("ts", m(K.TIMESTAMP)),
        ("tstz", m(K.TIMESTAMPTZ)),
        ("iv", m(K.INTERVAL)),
        ("u", m(K.UUID)),
        ("doc", m(K.JSON)),
        ("ints", m(K.ARRAY, element=m(K.INT, bits=32))),
        ("words", m(K.ARRAY, element=m(K.TEXT))),
        ("color", m(K.ENUM, enum_values=("red", "green"))),
        ("geo", m(K.NATIVE)),
    ]
    t = table("types", columns)
    utc = dt.UTC
    values = (
        1,
        -128,
        -32768,
        2147483647,
        2**64 - 1,
        Decimal("1234567890.12"),
        1.5,
        0.1,
        True,
        "héllo, 'world'\n\ttab",
        "abcde",
        b"\x00\xff\\x",
        dt.date(2024, 2, 29),
        dt.time(23, 59, 59, 999999),
        dt.time(12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(2024, 1, 2, 3, 4, 5, 6),
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=utc),
        dt.timedelta(days=3, seconds=7, microseconds=5),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        '{"a": [1, 2, null], "b": "x"}',
        [1, None, 3],
        ["a b", "c,d", '"q"', None],
        "green",
        "POINT(1 2)",
    )
    nulls = (2,) + (None,) * (len(columns) - 1)
    sink = make_sink()
    sink.prepare([t])
    sink.apply([ins(t, *values), ins(t, *nulls)])
    sink.commit(Checkpoint("streaming", "pg:0/1"))

    types = dict(
        rows(
            sink_db,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'app.types'::regclass "
            "AND attnum > 0",
        )
    )
    assert types["i8"] == "smallint" and types["i32"] == "integer" and types["u64"] == "numeric(20,0)"
    assert types["dec"] == "numeric(12,2)" and types["f32"] == "real" and types["vc"] == "character varying(5)"
    assert types["doc"] == "jsonb" and types["ints"] == "integer[]" and types["color"] == "text"
    assert types["ttz"] == "time with time zone" and types["tstz"] == "timestamp with time zone"

    got = rows(sink_db, f"SELECT {', '.join(n for n, _ in columns)} FROM app.types ORDER BY id")
    assert len(got) == 2
    first = list(got[0])
    assert first[4] == Decimal(2**64 - 1)
    assert first[19] == {"a": [1, 2, None], "b": "x"}
    expected = list(values)
    expected[4] = Decimal(2**64 - 1)
    expected[19] = {"a": [1, 2, None], "b": "x"}
    assert first == expected
    assert got[1] == nulls


def test_postgres_native_types_kept_exactly(make_sink: Callable[..., PostgresSink], sink_db: PgDatabase) -> None:
    mood = ColumnType(K.ENUM, native="public.mood", dialect="postgres", enum_values=("sad", "ok", "happy"))
    columns = [
        ("id", ColumnType(K.INT, native="integer", dialect="postgres", bits=32)),
        ("price", ColumnType(K.DECIMAL, native="numeric(12,2)", dialect="postgres", precision=12, scale=2)),
        ("feel", mood),
        ("feels", ColumnType(K.ARRAY, native="public.mood[]", dialect="postgres", element=mood)),
        ("span", ColumnType(K.NATIVE, native="int4range", dialect="postgres")),
        ("gone", ColumnType(K.INT, native="public.no_such_domain", dialect="postgres", bits=32)),
    ]
    t = table("native", columns)
    sink = make_sink()
    sink.prepare([t])
    sink.apply([ins(t, 1, Decimal("10.50"), "happy", ["sad", "ok"], "[1,5)", 7)])
    sink.commit(Checkpoint("streaming", "pg:0/1"))
    types = rows(
        sink_db,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'app.native'::regclass "
        "AND attnum > 0 ORDER BY attnum",
    )
    # the sink lacks the domain: the logical kind's type instead
    assert [r[0] for r in types] == ["integer", "numeric(12,2)", "mood", "mood[]", "int4range", "integer"]
    assert rows(sink_db, "SELECT enum_range(NULL::public.mood)::text") == [("{sad,ok,happy}",)]
    assert rows(sink_db, "SELECT price, feel::text, feels::text, span::text, gone FROM app.native") == [
        (Decimal("10.50"), "happy", "{sad,ok}", "[1,5)", 7)
    ]


def test_changes_fold_per_key(make_sink: Callable[..., PostgresSink], sink_db: PgDatabase) -> None:
    t = table("items", [("id", INT), ("v", TEXT)])
    sink = make_sink()
    sink.prepare([t])
    sink.apply([ins(t, 1, "a"), ins(t, 2, "b"), upd(t, None, 1, "a2"), dele(t, 2, None), ins(t, 3, "c")])
    sink.apply([upd(t, (3, None), 3, "c2"), ins(t, 2, "b-again"), dele(t, 2, None), ins(t, 2, "b3")])
    sink.commit(Checkpoint("streaming", "pg:0/2"))
    assert rows(sink_db, "SELECT id, v FROM app.items ORDER BY id") == [(1, "a2"), (2, "b3"), (3, "c2")]
    # Later batches meet the rows in the sink: updates upsert, deletes delete.
    sink.apply([upd(t, (1, None), 1, "a3"), dele(t, 3, None), ins(t, 4, "d"), upd(t, (4, None), 4, "d2")])
    sink.commit(Checkpoint("streaming", "pg:0/3"))
    assert rows(sink_db, "SELECT id, v FROM app.items ORDER BY id") == [(1, "a3"), (2, "b3"), (4, "d2")]
    # the primary key was built before the first merge
    assert rows(sink_db, "SELECT count(*) FROM pg_index WHERE indrelid = 'app.items'::regclass AND indisprimary") == [
        (1,)
    ]


def test_unchanged_columns_keep_the_sinks_values(make_sink: Callable[..., PostgresSink], sink_db: PgDatabase) -> None:
    t = table("docs", [("id", INT), ("body", TEXT), ("note", TEXT)])
    sink = make_sink()
    sink.prepare([t])
    sink.apply([ins(t, 1, "big-1", "a"), ins(t, 2, "big-2", "a")])
    sink.commit(Checkpoint("streaming", "pg:0/1"))
    keep = frozenset({1})
    sink.apply(
        [
            upd(t, None, 1, None, "b", unchanged=keep),  # only the sink has body: masked update
            ins(t, 3, "big-3", "a"),
            upd(t, None, 3, None, "b", unchanged=keep),  # filled from the insert of the same batch
            upd(t, None, 2, None, "b", unchanged=keep),
            upd(t, None, 2, None, "c", unchanged=keep),  # still masked after folding two updates
        ]
    )
    sink.commit(Checkpoint("streaming", "pg:0/2"))
    assert rows(sink_db, "SELECT id, body, note FROM app.docs ORDER BY id") == [
        (1, "big-1", "b"),
        (2, "big-2", "c"),
        (3, "big-3", "b"),
    ]


def test_key_change(make_sink: Callable[..., PostgresSink], sink_db: PgDatabase) -> None:
    t = table("keys", [("id", INT), ("body", TEXT), ("note", TEXT)])
    sink = make_sink()
    sink.prepare([t])
    sink.apply([ins(t, 1, "one", "a"), ins(t, 2, "two", "a")])
    sink.commit(Checkpoint("streaming", "pg:0/1"))
    sink.apply(
        [
            upd(t, (1, None, None), 10, "ten", "b"),  # delete old key, upsert new
            upd(t, (2, None, None), 20, None, "c", unchanged=frozenset({1})),  # the sink's row moves, body kept
            ins(t, 5, "five", "a"),
            upd(t, (5, None, None), 50, None, "d", unchanged=frozenset({1})),  # filled from the batch's insert
        ]
    )
    sink.commit(Checkpoint("streaming", "pg:0/2"))
    assert rows(sink_db, "SELECT id, body, note FROM app.keys ORDER BY id") == [
        (10, "ten", "b"),
        (20, "two", "c"),
        (50, "five", "d"),
    ]


def test_keyless_duplicates_keep_their_multiplicity(
    make_sink: Callable[..., PostgresSink], sink_db: PgDatabase
) -> None:
    t = table("log", [("a", INT), ("b", TEXT), ("doc", ColumnType(K.JSON, native="json", dialect="postgres"))], key=())
    sink = make_sink()
    sink.prepare([t])
    sink.apply([ins(t, 1, "x", '{"k": 1}'), ins(t, 1, "x", '{"k": 1}'), ins(t, 2, None, None), ins(t, 3, "z", None)])
    sink.commit(Checkpoint("streaming", "pg:0/1"))
    sink.apply(
        [
            dele(t, 1, "x", '{"k": 1}'),  # one of two equal rows (json has no equality: matched as text)
            upd(t, (2, None, None), 2, "y", None),  # NULL matched with IS NULL
            ins(t, 3, "z", None),
            upd(t, (3, "z", None), 4, "w", None),  # one of the two equal rows changes
        ]
    )
    sink.commit(Checkpoint("streaming", "pg:0/2"))
    assert rows(sink_db, "SELECT a, b, doc::text FROM app.log ORDER BY a, b") == [
        (1, "x", '{"k": 1}'),
        (2, "y", None),
        (3, "z", None),
        (4, "w", None),
    ]


def test_truncate(make_sink: Callable[..., PostgresSink], sink_db: PgDatabase) -> None:
    a = table("ta", [("id", INT), ("v", TEXT)])
    b = table("tb", [("id", INT), ("v", TEXT)])
    sink = make_sink()
    sink.prepare([a, b])
    sink.apply([ins(a, 1, "a"), ins(b, 1, "b")])
    sink.commit(Checkpoint("streaming", "pg:0/1"))
    # the insert before the truncate is gone with it, the one after stays
    sink.apply([ins(a, 2, "a"), Truncate((a.table, TableId("app", "unknown"))), ins(a, 3, "a")])
    sink.commit(Checkpoint("streaming", "pg:0/2"))
    assert rows(sink_db, "SELECT id FROM app.ta") == [(3,)]
    assert rows(sink_db, "SELECT id FROM app.tb") == [(1,)]


def test_checkpoint_commits_with_the_data_and_close_rolls_back(
    make_sink: Callable[..., PostgresSink], sink_db: PgDatabase
) -> None:
    t = table("cp", [("id", INT), ("v", TEXT)])
    sink = make_sink()
    assert sink.load_checkpoint() is None
    sink.prepare([t])
    sink.apply([ins(t, 1, "a")])
    sink.commit(Checkpoint("streaming", "pg:0/10", "pg:0/5"))
    assert sink.durable(position := object()) is position  # type: ignore[arg-type]
    sink.apply([ins(t, 2, "b")])
    sink.close()  # without commit

    again = make_sink()
    assert again.load_checkpoint() == Checkpoint("streaming", "pg:0/10", "pg:0/5")
    assert rows(sink_db, "SELECT id FROM app.cp") == [(1,)]
    again.prepare([t])
    again.apply([ins(t, 3, "c")])
    again.abort()
    again.apply([ins(t, 4, "d")])
    again.commit(Checkpoint("streaming", "pg:0/11", "pg:0/5"))
    assert rows(sink_db, "SELECT id FROM app.cp ORDER BY id") == [(1,), (4,)]
    assert make_sink().load_checkpoint() == Checkpoint("streaming", "pg:0/11", "pg:0/5")


def test_legacy_connector_state_is_migrated(make_sink: Callable[..., PostgresSink], sink_db: PgDatabase) -> None:
    sink = make_sink()
    assert not sink.conn.closed  # opening it creates the state tables
    connector_id = sink.connector.id
    sink_db.execute(
        "INSERT INTO sluice.connector_state (connector_id, phase, slot_name, start_lsn, applied_lsn) "
        "VALUES (%s, 'streaming', 'slot', '0/16B3740', '1/16B3748')",
        (connector_id,),
    )
    assert sink.load_checkpoint() == Checkpoint("streaming", "pg:1/16B3748", "pg:0/16B3740")
    assert rows(sink_db, "SELECT position FROM sluice.checkpoints") == [("pg:1/16B3748",)]


def test_snapshot_writers_plan_and_reset(make_sink: Callable[..., PostgresSink], sink_db: PgDatabase) -> None:
    t = table("snap", [("id", INT), ("v", TEXT)])
    keyless = table("snap_nokey", [("a", INT)], key=())
    sink = make_sink()
    sink.prepare([t, keyless])
    sink.apply([ins(t, 99, "old")])
    sink.commit(Checkpoint("streaming", "pg:0/1"))
    chunks = [
        SnapshotChunk("app.snap", 0, {"lo_page": 0, "hi_page": 10}),
        SnapshotChunk("app.snap", 1, {"key_from": [5], "key_to": None}),
        SnapshotChunk("app.snap_nokey", 0, {}),
    ]
    sink.start_snapshot(Checkpoint("snapshot", None, "pg:0/20"), chunks, [t, keyless])
    assert rows(sink_db, "SELECT count(*) FROM app.snap") == [(0,)]  # truncated
    assert sink.load_checkpoint() == Checkpoint("snapshot", None, "pg:0/20")
    assert sink.load_plan() == chunks
    assert rows(
        sink_db, "SELECT lo_page, hi_page FROM sluice.snapshot_chunks WHERE chunk_no = 0 AND table_name = 'app.snap'"
    ) == [(0, 10)]

    writer = sink.snapshot_writer(upsert=False)
    writer.write(chunks[0], [(1, "a"), (2, "b")])
    writer.abort()  # not done: nothing of it stays
    assert rows(sink_db, "SELECT count(*) FROM app.snap") == [(0,)]
    writer.write(chunks[0], [(1, "a"), (2, "b")])
    writer.done(chunks[0], 2)
    writer.write(chunks[2], [(7,), (7,)])
    writer.done(chunks[2], 2)
    writer.close()
    assert [c.done for c in sink.load_plan()] == [True, False, True]
    assert rows(sink_db, "SELECT rows FROM sluice.snapshot_chunks ORDER BY table_name, chunk_no") == [
        (2,),
        (None,),
        (2,),
    ]

    # A resumed snapshot re-reads current data: upserts replace what is there.
    upserting = sink.snapshot_writer(upsert=True)
    upserting.write(chunks[1], [(2, "b2"), (5, "e")])
    upserting.done(chunks[1], 2)
    upserting.close()
    sink.finish_snapshot([t, keyless])
    assert rows(sink_db, "SELECT id, v FROM app.snap ORDER BY id") == [(1, "a"), (2, "b2"), (5, "e")]
    assert rows(sink_db, "SELECT count(*) FROM app.snap_nokey") == [(2,)]
    assert all(c.done for c in sink.load_plan())

    sink.reset()
    assert sink.load_checkpoint() is None
    assert sink.load_plan() == []
    assert rows(sink_db, "SELECT count(*) FROM sluice.checkpoints") == [(0,)]


def test_schema_change_adds_a_column_with_existing_values(
    make_sink: Callable[..., PostgresSink], sink_db: PgDatabase
) -> None:
    t = table("grow", [("id", INT), ("v", TEXT)])
    sink = make_sink()
    sink.prepare([t])
    sink.apply([ins(t, 1, "a")])
    sink.commit(Checkpoint("streaming", "pg:0/1"))
    wider = table("grow", [("id", INT), ("v", TEXT), ("n", ColumnType(K.INT, bits=32))])
    sink.apply([SchemaChange(wider, previous=t, existing={"n": ExistingValues(constant="7")}), ins(wider, 2, "b", 8)])
    sink.commit(Checkpoint("streaming", "pg:0/2"))
    assert rows(sink_db, "SELECT id, v, n FROM app.grow ORDER BY id") == [(1, "a", 7), (2, "b", 8)]
    assert [c.name for c in sink.tables["app.grow"].columns] == ["id", "v", "n"]


def test_checks(make_sink: Callable[..., PostgresSink], sink_db: PgDatabase) -> None:
    checks = make_sink(target_schema="dw").checks()
    assert all(c.ok for c in checks), checks
    assert {c.name for c in checks} >= {"sink connection", "sink schema creation"}

    spec = connector_spec(sink_db, sink_db)
    spec["sink"]["postgres"]["connection"]["password"] = "wrong"
    bad = PostgresSink(Connector.model_validate(spec))
    (check,) = bad.checks()
    assert not check.ok and check.name == "sink connection"
    assert "password" in check.fix and check.field == ("sink", "postgres", "connection")
    assert "wrong" not in check.message
