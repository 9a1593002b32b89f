"""Golden examples of the Debezium and native encoders (hand-checked against Debezium's PostgreSQL connector)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from sluice.worker.encoders import UNAVAILABLE_VALUE, DebeziumEncoder, NativeEncoder, TxContext
from sluice.worker.encoders.debezium import column_schema, decimal_bytes, format_zoned_timestamp, interval_micros
from sluice.worker.events import Column, ColumnType, Op, RowChange, TableId, TableSchema, TypeKind
from sluice.worker.positions import Lsn

T = TableId("public", "orders")
COMMIT = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
TX = TxContext(xid="571", position=Lsn(0x16B3748), commit_time=COMMIT)
NOW_US = 1_700_000_000_123_456

SCHEMA = TableSchema(
    T,
    (
        Column("id", ColumnType(TypeKind.INT, bits=32), nullable=False),
        Column("amount", ColumnType(TypeKind.DECIMAL, precision=12, scale=2)),
        Column("note", ColumnType(TypeKind.TEXT)),
    ),
    key=("id",),
)


def enc(**kw: object) -> DebeziumEncoder:
    return DebeziumEncoder(connector="shop", database="appdb", version="1.2.3", **kw)  # type: ignore[arg-type]


def test_insert_payload_golden() -> None:
    rec = enc(schemas_enable=False).change(
        SCHEMA, RowChange(Op.INSERT, T, None, (1, Decimal("12.50"), "hi")), TX, ts_us=NOW_US
    )
    assert rec.key == {"id": 1}
    assert rec.value == {
        "before": None,
        "after": {"id": 1, "amount": "BOI=", "note": "hi"},
        "source": {
            "version": "sluice-1.2.3",
            "connector": "postgresql",
            "name": "shop",
            "ts_ms": 1714979289123,
            "snapshot": "false",
            "db": "appdb",
            "sequence": None,
            "ts_us": 1714979289123456,
            "ts_ns": 1714979289123456000,
            "schema": "public",
            "table": "orders",
            "txId": 571,
            "lsn": 0x16B3748,
            "xmin": None,
            "origin": None,
            "origin_lsn": None,
        },
        "transaction": None,
        "op": "c",
        "ts_ms": 1700000000123,
        "ts_us": NOW_US,
        "ts_ns": NOW_US * 1000,
    }
    assert list(rec.value) == ["before", "after", "source", "transaction", "op", "ts_ms", "ts_us", "ts_ns"]
    assert base64.b64decode("BOI=") == (1250).to_bytes(2, "big")


def test_json_converter_schemas_enabled_golden() -> None:
    e = enc()
    rec = e.change(SCHEMA, RowChange(Op.INSERT, T, None, (1, None, "x")), TX, ts_us=NOW_US)
    key = json.loads(e.key_json(rec))
    assert key == {
        "schema": {
            "type": "struct",
            "fields": [{"type": "int32", "optional": False, "field": "id"}],
            "optional": False,
            "name": "shop.public.orders.Key",
        },
        "payload": {"id": 1},
    }
    value_text = e.value_json(rec)
    value = json.loads(value_text)
    assert set(value) == {"schema", "payload"}
    schema = value["schema"]
    assert schema["name"] == "shop.public.orders.Envelope"
    assert [f["field"] for f in schema["fields"]] == [
        "before",
        "after",
        "source",
        "transaction",
        "op",
        "ts_ms",
        "ts_us",
        "ts_ns",
    ]
    assert schema["version"] == 2
    after = schema["fields"][1]
    assert after == {
        "type": "struct",
        "fields": [
            {"type": "int32", "optional": False, "field": "id"},
            {
                "type": "bytes",
                "optional": True,
                "name": "org.apache.kafka.connect.data.Decimal",
                "version": 1,
                "parameters": {"scale": "2", "connect.decimal.precision": "12"},
                "field": "amount",
            },
            {"type": "string", "optional": True, "field": "note"},
        ],
        "optional": True,
        "name": "shop.public.orders.Value",
        "field": "after",
    }
    # JsonConverter's key order: type, fields, optional, name
    assert value_text.startswith('{"schema":{"type":"struct","fields":[{"type":"struct","fields":[')
    assert schema["fields"][2]["name"] == "io.debezium.connector.postgresql.Source"
    assert schema["fields"][2]["version"] == 1
    assert [f["field"] for f in schema["fields"][2]["fields"]][-3:] == ["xmin", "origin", "origin_lsn"]
    assert schema["fields"][3]["name"] == "event.block"


def test_update_delete_before_toast_and_tombstone() -> None:
    e = enc(schemas_enable=False)
    upd = e.change(
        SCHEMA,
        RowChange(Op.UPDATE, T, (1, None, None), (1, Decimal("1"), None), frozenset({2})),
        TX,
        ts_us=NOW_US,
    )
    assert upd.value["before"] == {"id": 1, "amount": None, "note": None}
    assert upd.value["after"] == {"id": 1, "amount": "ZA==", "note": UNAVAILABLE_VALUE}
    assert upd.value["op"] == "u"
    assert e.tombstone(upd) is None
    dele = e.change(SCHEMA, RowChange(Op.DELETE, T, (7, None, None), None), TX, ts_us=NOW_US)
    assert dele.key == {"id": 7}
    assert dele.value["after"] is None and dele.value["op"] == "d"
    tomb = e.tombstone(dele)
    assert tomb is not None and tomb.key == {"id": 7} and tomb.value is None
    assert enc().value_json(tomb) == "null"
    no_before = enc(schemas_enable=False, include_before=False).change(
        SCHEMA, RowChange(Op.DELETE, T, (7, None, None), None), TX, ts_us=NOW_US
    )
    assert no_before.value["before"] is None and no_before.key == {"id": 7}


def test_snapshot_read_and_truncate_and_transaction_block() -> None:
    e = enc(schemas_enable=False, emit_tx_metadata=True)
    snap = TxContext(xid=None, position=Lsn(5), commit_time=None, snapshot=True)
    r = e.change(SCHEMA, RowChange(Op.INSERT, T, None, (1, None, None)), snap, ts_us=NOW_US)
    assert r.value["op"] == "r" and r.value["source"]["snapshot"] == "true" and r.value["transaction"] is None
    c = e.change(
        SCHEMA, RowChange(Op.INSERT, T, None, (2, None, None)), TX, ts_us=NOW_US, total_order=3, collection_order=2
    )
    assert c.value["transaction"] == {"id": "571:23803720", "total_order": 3, "data_collection_order": 2}
    t = e.truncate(SCHEMA, TX, ts_us=NOW_US)
    assert t.key is None and t.value["op"] == "t" and t.value["before"] is None and t.value["after"] is None
    begin = e.begin(TX)
    assert begin.key == {"id": "571:23803720"}
    assert begin.value == {
        "status": "BEGIN",
        "id": "571:23803720",
        "event_count": None,
        "data_collections": None,
        "ts_ms": 1714979289123,
    }
    end = e.end(TX, {"public.orders": 2, "public.items": 1})
    assert end.value["event_count"] == 3
    assert end.value["data_collections"] == [
        {"data_collection": "public.orders", "event_count": 2},
        {"data_collection": "public.items", "event_count": 1},
    ]
    assert json.loads(enc(emit_tx_metadata=True).value_json(end))["schema"]["name"] == (
        "io.debezium.connector.common.TransactionMetadataValue"
    )


def test_keyless_table_has_null_key() -> None:
    keyless = TableSchema(T, SCHEMA.columns)
    e = enc()
    rec = e.change(keyless, RowChange(Op.INSERT, T, None, (1, None, None)), TX, ts_us=NOW_US)
    assert rec.key is None and e.key_json(rec) == "null"


@pytest.mark.parametrize(
    ("ctype", "value", "schema_part", "payload"),
    [
        (ColumnType(TypeKind.INT, bits=16), 5, {"type": "int16"}, 5),
        (ColumnType(TypeKind.INT, bits=64), 2**40, {"type": "int64"}, 2**40),
        (ColumnType(TypeKind.FLOAT, bits=32), 1.5, {"type": "float"}, 1.5),
        (ColumnType(TypeKind.FLOAT, bits=64), float("nan"), {"type": "double"}, None),
        (ColumnType(TypeKind.BOOL), True, {"type": "boolean"}, True),
        (ColumnType(TypeKind.BYTES), b"\x00\xff", {"type": "bytes"}, "AP8="),
        (ColumnType(TypeKind.DATE), date(1970, 1, 11), {"name": "io.debezium.time.Date", "type": "int32"}, 10),
        (ColumnType(TypeKind.DATE), "infinity", {"name": "io.debezium.time.Date"}, None),
        (ColumnType(TypeKind.TIME), time(1, 2, 3, 4), {"name": "io.debezium.time.MicroTime"}, 3723000004),
        (
            ColumnType(TypeKind.TIMETZ),
            time(1, 2, 3, 500000, tzinfo=timezone(timedelta(hours=2))),
            {"name": "io.debezium.time.ZonedTime", "type": "string"},
            "23:02:03.5Z",
        ),
        (
            ColumnType(TypeKind.TIMESTAMP),
            datetime(1970, 1, 1, 0, 0, 1, 5),
            {"name": "io.debezium.time.MicroTimestamp", "type": "int64"},
            1000005,
        ),
        (ColumnType(TypeKind.TIMESTAMP), "infinity", {}, 9223372036825200000),
        (
            ColumnType(TypeKind.TIMESTAMPTZ),
            datetime(2024, 1, 2, 5, 4, 5, 120000, tzinfo=timezone(timedelta(hours=2))),
            {"name": "io.debezium.time.ZonedTimestamp", "type": "string"},
            "2024-01-02T03:04:05.120000Z",
        ),
        (ColumnType(TypeKind.TIMESTAMPTZ), "-infinity", {}, "-infinity"),
        (
            ColumnType(TypeKind.INTERVAL),
            timedelta(days=1, seconds=1),
            {"name": "io.debezium.time.MicroDuration", "type": "int64"},
            86_401_000_000,
        ),
        (ColumnType(TypeKind.INTERVAL), "1 mon", {}, 2_629_800_000_000),
        (
            ColumnType(TypeKind.UUID),
            uuid.UUID(int=1),
            {"name": "io.debezium.data.Uuid"},
            "00000000-0000-0000-0000-000000000001",
        ),
        (ColumnType(TypeKind.JSON), '{"a": 1}', {"name": "io.debezium.data.Json"}, '{"a": 1}'),
        (
            ColumnType(TypeKind.ENUM, enum_values=("sad", "ok")),
            "ok",
            {"name": "io.debezium.data.Enum", "parameters": {"allowed": "sad,ok"}},
            "ok",
        ),
        (
            ColumnType(TypeKind.ARRAY, element=ColumnType(TypeKind.INT, bits=32)),
            [1, None, 3],
            {"type": "array", "items": {"type": "int32", "optional": True}},
            [1, None, 3],
        ),
        (
            ColumnType(TypeKind.DECIMAL),
            Decimal("-1.25"),
            {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal"},
            {"scale": 2, "value": base64.b64encode(decimal_bytes(-125)).decode()},
        ),
        (ColumnType(TypeKind.NATIVE, native="point"), "(1,2)", {"type": "string"}, "(1,2)"),
    ],
)
def test_column_types(ctype: ColumnType, value: object, schema_part: dict[str, object], payload: object) -> None:
    schema, convert = column_schema(ctype, True)
    for k, v in schema_part.items():
        assert schema[k] == v, (k, schema)
    assert convert(value) == payload


def test_decimal_bytes_matches_java_biginteger() -> None:
    assert decimal_bytes(0) == b"\x00"
    assert decimal_bytes(127) == b"\x7f"
    assert decimal_bytes(128) == b"\x00\x80"
    assert decimal_bytes(-128) == b"\x80"
    assert decimal_bytes(-129) == b"\xff\x7f"


def test_interval_and_timestamp_helpers() -> None:
    assert interval_micros("1 year 2 mons 3 days 04:05:06.5") == round(
        (14 * 30.4375 + 3) * 86_400_000_000 + (4 * 3600 + 5 * 60 + 6.5) * 1_000_000
    )
    assert interval_micros("-00:00:01") == -1_000_000
    assert format_zoned_timestamp(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00.000000Z"


def test_native_golden() -> None:
    n = NativeEncoder()
    ev = n.change(SCHEMA, RowChange(Op.UPDATE, T, (1, None, None), (1, Decimal("2.50"), "x"), frozenset({2})), TX)
    assert ev == {
        "op": "u",
        "table": "public.orders",
        "position": "pg:0/16B3748",
        "xid": "571",
        "ts_ms": 1714979289123,
        "key": {"id": 1},
        "row": {"id": 1, "amount": "2.50"},
        "before": {"id": 1, "amount": None, "note": None},
        "unchanged": ["note"],
    }
    assert n.truncate(SCHEMA, TX) == {
        "op": "t",
        "table": "public.orders",
        "position": "pg:0/16B3748",
        "xid": "571",
        "ts_ms": 1714979289123,
    }
    snap = n.change(SCHEMA, RowChange(Op.INSERT, T, None, (3, None, None)), TxContext(None, Lsn(1), snapshot=True))
    assert snap["op"] == "r" and "before" not in snap


def test_native_values() -> None:
    from sluice.worker.encoders.native import native_value

    assert native_value(ColumnType(TypeKind.INTERVAL))(timedelta(days=1, hours=2, seconds=4.5)) == "P1DT2H0M4.5S"
    assert native_value(ColumnType(TypeKind.INTERVAL))("1 mon") == "1 mon"
    assert native_value(ColumnType(TypeKind.JSON))('{"a":[1]}') == {"a": [1]}
    assert (
        native_value(ColumnType(TypeKind.TIMESTAMPTZ))(datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
        == "2024-01-01T00:00:00Z"
    )
    assert native_value(ColumnType(TypeKind.BYTES))(b"a") == "YQ=="


@pytest.mark.parametrize("schemas_enable", [True, False])
def test_fast_json_paths_equal_the_dict_paths(schemas_enable: bool) -> None:
    from sluice.worker.encoders import dumps

    plain = TableSchema(
        T, (Column("id", ColumnType(TypeKind.INT, bits=32)), Column("v", ColumnType(TypeKind.TEXT))), ("id",)
    )
    changes = [
        (SCHEMA, RowChange(Op.INSERT, T, None, (1, Decimal("1.5"), "x"))),
        (SCHEMA, RowChange(Op.UPDATE, T, (1, None, None), (1, Decimal("2"), None), frozenset({2}))),
        (SCHEMA, RowChange(Op.DELETE, T, (1, None, None), None)),
        (plain, RowChange(Op.UPDATE, T, (1, "a"), (1, "b"))),
        (plain, RowChange(Op.INSERT, T, None, (2, None))),
        (TableSchema(T, plain.columns), RowChange(Op.INSERT, T, None, (3, "k"))),
    ]
    e = enc(schemas_enable=schemas_enable, emit_tx_metadata=True)
    n = NativeEncoder()
    for tx in (TX, TxContext(None, Lsn(9), snapshot=True)):
        for schema, change in changes:
            fast = e.change_json(schema, change, tx, ts_us=NOW_US, total_order=4, collection_order=2)
            slow = e.value_json(e.change(schema, change, tx, ts_us=NOW_US, total_order=4, collection_order=2))
            assert json.loads(fast) == json.loads(slow) and fast == slow
            assert n.change_json(schema, change, tx) == dumps(n.change(schema, change, tx)).encode()


def test_native_snapshot_rows_equal_one_change_at_a_time() -> None:
    plain = TableSchema(
        T, (Column("id", ColumnType(TypeKind.INT, bits=32)), Column("v", ColumnType(TypeKind.TEXT))), ("id",)
    )
    keyless = TableSchema(T, plain.columns)
    tx = TxContext(None, Lsn(9), commit_time=COMMIT, snapshot=True)
    cases: list[tuple[TableSchema, list[tuple[Any, ...]]]] = [
        (plain, [(1, "a"), (2, None), (3, 'é\n"')]),
        (keyless, [(4, "k")]),
        (SCHEMA, [(1, Decimal("1.5"), "x"), (2, None, None)]),  # converters: the general path
    ]
    n = NativeEncoder()
    for schema, rows in cases:
        got = list(n.snapshot_json(schema, rows, tx))
        assert got == [n.change_json(schema, RowChange(Op.READ, T, None, row), tx) for row in rows]
        assert [json.loads(e)["op"] for e in got] == ["r"] * len(rows)


def test_native_compiled_events_equal_the_dict_path() -> None:
    """Random plain rows (integers of any size, text with every kind of character, booleans, NULLs): the compiled
    writer's bytes are the general path's."""
    import random

    from sluice.worker.encoders import native

    if not native.COMPILED:
        pytest.skip("sluice._eventjson is not built")
    from sluice.worker.encoders import dumps

    schema = TableSchema(
        T,
        (
            Column("id", ColumnType(TypeKind.INT, bits=64)),
            Column('na"me\\', ColumnType(TypeKind.TEXT)),
            Column("ok", ColumnType(TypeKind.BOOL)),
            Column("é", ColumnType(TypeKind.TEXT)),
        ),
        ("id", "é"),
    )
    rng = random.Random(3)
    alphabet = [chr(c) for c in range(0x30)] + ['"', "\\", "/", "\x7f", "é", "\u2028", "😀", "a"]
    n = NativeEncoder(include_before=False)
    for i in range(3000):
        ints = [0, -1, 2**63 - 1, -(2**63), 2**63, 2**64 + 5, -(2**70), rng.randint(-(10**6), 10**6)]
        row = (
            rng.choice(ints),
            None if rng.random() < 0.2 else "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))),
            rng.choice([True, False, None]),
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))),
        )
        for change in (RowChange(Op.INSERT, T, None, row), RowChange(Op.UPDATE, T, row, row)):
            tx = TX if i % 2 else TxContext(None, Lsn(9), snapshot=True)
            assert n.change_json(schema, change, tx) == dumps(n.change(schema, change, tx)).encode()
    rows = [(1, "a\n", True, "x"), (2, None, None, "\x00")]
    tx = TxContext(None, Lsn(9), snapshot=True)
    assert list(n.snapshot_json(schema, rows, tx)) == [
        dumps(n.change(schema, RowChange(Op.READ, T, None, r), tx)).encode() for r in rows
    ]
    # what the writer leaves to the general path: other value types, a lone surrogate (refused there)
    odd = RowChange(Op.INSERT, T, None, (1, 1.5, True, "x"))
    assert n.change_json(schema, odd, TX) == dumps(n.change(schema, odd, TX)).encode()
    with pytest.raises(UnicodeEncodeError):
        n.change_json(schema, RowChange(Op.INSERT, T, None, (1, "\ud800", True, "x")), TX)


def test_ci_builds_the_compiled_event_writer() -> None:
    import os

    from sluice.worker.encoders import native

    if os.environ.get("CI") != "true":
        pytest.skip("only required where CI installs the package (a C compiler is part of its set-up)")
    assert native.COMPILED, "sluice._eventjson did not build: `pip install -e .` needs gcc and the Python headers"


def test_key_only_before_fills_not_null_columns_with_connect_defaults() -> None:
    schema = TableSchema(
        T,
        (
            Column("id", ColumnType(TypeKind.INT, bits=32), nullable=False),
            Column("n", ColumnType(TypeKind.INT, bits=64), nullable=False),
            Column("s", ColumnType(TypeKind.TEXT), nullable=False),
            Column("ok", ColumnType(TypeKind.BOOL), nullable=False),
            Column("f", ColumnType(TypeKind.FLOAT, bits=64), nullable=False),
            Column("d", ColumnType(TypeKind.DATE), nullable=False),
            Column("maybe", ColumnType(TypeKind.TEXT)),
        ),
        ("id",),
    )
    e = enc(schemas_enable=False)
    rec = e.change(schema, RowChange(Op.DELETE, T, (4, None, None, None, None, None, None), None), TX, ts_us=NOW_US)
    assert rec.value["before"] == {"id": 4, "n": 0, "s": "", "ok": False, "f": 0.0, "d": None, "maybe": None}
    fast = json.loads(
        e.change_json(schema, RowChange(Op.DELETE, T, (4, None, None, None, None, None, None), None), TX, ts_us=NOW_US)
    )
    assert fast["before"] == rec.value["before"]
