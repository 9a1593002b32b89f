"""MySQL columns in the Debezium encoder: the schemas and payloads Debezium 3.6.1's MySQL connector wrote for the
same values in tests/integration/test_mysql_debezium_conformance.py (expected values copied from its events)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sluice.worker.encoders.debezium import column_schema
from sluice.worker.events import ColumnType, TypeKind


def mysql(kind: TypeKind, native: str, **extra: Any) -> ColumnType:
    return ColumnType(kind, native=native, dialect="mysql", **extra)


def encode(ctype: ColumnType, value: Any) -> tuple[dict[str, Any], Any]:
    schema, convert = column_schema(ctype, True)
    return schema, convert(value)


LINESTRING = bytes.fromhex("00000000" + "010200000002000000" + "00" * 16 + "000000000000f03f" + "0000000000000040")
POINT_4326 = (4326).to_bytes(4, "little") + bytes.fromhex("0101000000" + "000000000000f8bf" + "0000000000000840")


@pytest.mark.parametrize(
    ("ctype", "value", "schema", "payload"),
    [
        (mysql(TypeKind.INT, "mediumint(8) unsigned", bits=32, unsigned=True), 16777215, {"type": "int32"}, 16777215),
        (mysql(TypeKind.INT, "smallint(5) unsigned", bits=16, unsigned=True), 65535, {"type": "int32"}, 65535),
        (mysql(TypeKind.INT, "int(10) unsigned", bits=32, unsigned=True), 4294967295, {"type": "int64"}, 4294967295),
        (
            mysql(TypeKind.INT, "year(4)", bits=16),
            2024,
            {"type": "int32", "name": "io.debezium.time.Year", "version": 1},
            2024,
        ),
        (
            mysql(TypeKind.BYTES, "bit(9)"),
            (0b101010101).to_bytes(2, "big"),
            {"type": "bytes", "name": "io.debezium.data.Bits", "version": 1, "parameters": {"length": "9"}},
            "VQE=",
        ),
        (
            mysql(TypeKind.BYTES, "bit(64)"),
            (0x8000000000000001).to_bytes(8, "big"),
            {"type": "bytes", "name": "io.debezium.data.Bits", "version": 1, "parameters": {"length": "64"}},
            "AQAAAAAAAIA=",
        ),
        (
            mysql(TypeKind.TIMESTAMP, "datetime"),
            datetime(2024, 2, 29, 12, 34, 56),
            {"type": "int64", "name": "io.debezium.time.Timestamp", "version": 1},
            1709210096000,
        ),
        (
            mysql(TypeKind.TIMESTAMP, "datetime(3)"),
            datetime(1969, 12, 31, 23, 59, 59, 999000),
            {"type": "int64", "name": "io.debezium.time.Timestamp", "version": 1},
            -1,
        ),
        (
            mysql(TypeKind.TIMESTAMP, "datetime(6)"),
            datetime(2024, 2, 29, 12, 34, 56, 789012),
            {"type": "int64", "name": "io.debezium.time.MicroTimestamp", "version": 1},
            1709210096789012,
        ),
        (
            mysql(TypeKind.TIMESTAMPTZ, "timestamp"),
            datetime(2024, 2, 29, 12, 34, 56, tzinfo=UTC),
            {"type": "string", "name": "io.debezium.time.ZonedTimestamp", "version": 1},
            "2024-02-29T12:34:56Z",
        ),
        (
            mysql(TypeKind.TIMESTAMPTZ, "timestamp(3)"),
            datetime(2024, 1, 1, 0, 0, 0, 100000, tzinfo=UTC),
            {"type": "string", "name": "io.debezium.time.ZonedTimestamp", "version": 1},
            "2024-01-01T00:00:00.100Z",
        ),
        (
            mysql(TypeKind.INTERVAL, "time(2)"),
            timedelta(hours=838, minutes=59, seconds=58, microseconds=500000),
            {"type": "int64", "name": "io.debezium.time.MicroTime", "version": 1},
            3020398500000,
        ),
        (
            mysql(TypeKind.INTERVAL, "time"),
            -timedelta(hours=12, minutes=34, seconds=56),
            {"type": "int64", "name": "io.debezium.time.MicroTime", "version": 1},
            -45296000000,
        ),
        (
            mysql(TypeKind.TEXT, "set('x','y','z')"),
            "x,z",
            {"type": "string", "name": "io.debezium.data.EnumSet", "version": 1, "parameters": {"allowed": "x,y,z"}},
            "x,z",
        ),
        (
            mysql(TypeKind.BYTES, "geometry"),
            LINESTRING,
            {"type": "struct", "name": "io.debezium.data.geometry.Geometry", "version": 1, "doc": "Geometry"},
            {"wkb": "AQIAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAPA/AAAAAAAAAEA=", "srid": None},
        ),
        (
            mysql(TypeKind.BYTES, "point"),
            POINT_4326,
            {"type": "struct", "name": "io.debezium.data.geometry.Point", "version": 1, "doc": "Geometry (POINT)"},
            {"x": -1.5, "y": 3.0, "wkb": base64.b64encode(POINT_4326[4:]).decode(), "srid": 4326},
        ),
    ],
)
def test_mysql_columns_as_debezium_mysql_writes_them(
    ctype: ColumnType, value: Any, schema: dict[str, Any], payload: Any
) -> None:
    got_schema, got = encode(ctype, value)
    assert {k: got_schema[k] for k in schema} == schema
    assert got_schema["optional"] is True
    assert got == payload


def test_geometry_struct_fields() -> None:
    schema, _ = column_schema(mysql(TypeKind.BYTES, "point"), False)
    assert [(f["field"], f["type"], f["optional"]) for f in schema["fields"]] == [
        ("x", "double", False),
        ("y", "double", False),
        ("wkb", "bytes", True),
        ("srid", "int32", True),
    ]
    schema, _ = column_schema(mysql(TypeKind.BYTES, "polygon"), False)
    assert [(f["field"], f["type"], f["optional"]) for f in schema["fields"]] == [
        ("wkb", "bytes", False),
        ("srid", "int32", True),
    ]


def test_other_dialects_keep_the_generic_mapping() -> None:
    """A PostgreSQL time is MicroTime, an interval MicroDuration; a MySQL type without a special form is generic."""
    schema, _ = column_schema(ColumnType(TypeKind.INTERVAL, native="interval", dialect="postgres"), True)
    assert schema["name"] == "io.debezium.time.MicroDuration"
    schema, _ = column_schema(ColumnType(TypeKind.TIMESTAMP, native="timestamp(3)", dialect="postgres"), True)
    assert schema["name"] == "io.debezium.time.MicroTimestamp"
    schema, convert = column_schema(mysql(TypeKind.INT, "bigint(20)", bits=64), True)
    assert schema == {"type": "int64", "optional": True} and convert(-1) == -1
