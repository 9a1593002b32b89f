"""The logical type -> PostgreSQL type mapping of the PostgreSQL sink (pure logic)."""

from __future__ import annotations

import pytest

from sluice.worker.events import ColumnType, TypeKind
from sluice.worker.sinks.postgres.types import logical_type, pg_type, split_qualified, text_compare, user_enums

K = TypeKind


@pytest.mark.parametrize(
    ("ct", "expected"),
    [
        (ColumnType(K.INT, bits=8), "smallint"),
        (ColumnType(K.INT, bits=16), "smallint"),
        (ColumnType(K.INT, bits=32), "integer"),
        (ColumnType(K.INT, bits=64), "bigint"),
        (ColumnType(K.INT), "bigint"),
        (ColumnType(K.INT, bits=8, unsigned=True), "smallint"),
        (ColumnType(K.INT, bits=16, unsigned=True), "integer"),
        (ColumnType(K.INT, bits=32, unsigned=True), "bigint"),
        (ColumnType(K.INT, bits=64, unsigned=True), "numeric(20,0)"),
        (ColumnType(K.DECIMAL, precision=12, scale=2), "numeric(12,2)"),
        (ColumnType(K.DECIMAL, precision=10), "numeric(10)"),
        (ColumnType(K.DECIMAL), "numeric"),
        (ColumnType(K.DECIMAL, precision=5000, scale=2), "numeric"),
        (ColumnType(K.FLOAT, bits=32), "real"),
        (ColumnType(K.FLOAT, bits=64), "double precision"),
        (ColumnType(K.FLOAT), "double precision"),
        (ColumnType(K.BOOL), "boolean"),
        (ColumnType(K.TEXT), "text"),
        (ColumnType(K.TEXT, length=20), "varchar(20)"),
        (ColumnType(K.BYTES), "bytea"),
        (ColumnType(K.DATE), "date"),
        (ColumnType(K.TIME), "time"),
        (ColumnType(K.TIMETZ), "timetz"),
        (ColumnType(K.TIMESTAMP), "timestamp"),
        (ColumnType(K.TIMESTAMPTZ), "timestamptz"),
        (ColumnType(K.INTERVAL), "interval"),
        (ColumnType(K.UUID), "uuid"),
        (ColumnType(K.JSON), "jsonb"),
        (ColumnType(K.ARRAY, element=ColumnType(K.INT, bits=32)), "integer[]"),
        (ColumnType(K.ARRAY, element=ColumnType(K.TEXT, length=3)), "varchar(3)[]"),
        (ColumnType(K.ARRAY), "text[]"),
        (ColumnType(K.ENUM, native="enum('a','b')", dialect="mysql", enum_values=("a", "b")), "text"),
        (ColumnType(K.NATIVE, native="geometry", dialect="mysql"), "text"),
    ],
)
def test_logical_kinds(ct: ColumnType, expected: str) -> None:
    assert logical_type(ct) == expected
    assert pg_type(ct) == expected  # not the postgres dialect: native is ignored


def test_postgres_dialect_keeps_the_native_type() -> None:
    money = ColumnType(K.DECIMAL, native="numeric(12,2)", dialect="postgres", precision=12, scale=2)
    assert pg_type(money) == "numeric(12,2)"
    geo = ColumnType(K.NATIVE, native="point", dialect="postgres")
    assert pg_type(geo) == "point"
    assert logical_type(geo) == "text"
    # another database's native text is never used as PostgreSQL DDL
    assert pg_type(ColumnType(K.INT, native="tinyint(1)", dialect="mysql", bits=8)) == "smallint"


def test_user_enums_from_enum_values() -> None:
    mood = ColumnType(K.ENUM, native="public.mood", dialect="postgres", enum_values=("sad", "ok", "happy"))
    (enum,) = user_enums(mood)
    assert (enum.schema, enum.name, enum.kind, enum.labels) == ("public", "mood", "e", ("sad", "ok", "happy"))
    (element,) = user_enums(ColumnType(K.ARRAY, native="public.mood[]", dialect="postgres", element=mood))
    assert element.name == "mood"
    assert user_enums(ColumnType(K.ENUM, native="enum('a')", dialect="mysql", enum_values=("a",))) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("public.mood", ("public", "mood")),
        ("mood", ("public", "mood")),
        ('"My Schema"."Odd.Name"[]', ("My Schema", "Odd.Name")),
        ('app."say ""hi"""', ("app", 'say "hi"')),
    ],
)
def test_split_qualified(text: str, expected: tuple[str, str]) -> None:
    assert split_qualified(text) == expected


def test_text_compare_only_for_types_without_equality() -> None:
    assert text_compare("json")
    assert text_compare("point[]")
    assert not text_compare("jsonb")
    assert not text_compare("numeric(12,2)")
    assert not text_compare("public.mood")
