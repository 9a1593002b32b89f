"""PostgreSQL types -> neutral ColumnType: the mapping is pure, so it is tested on hand-built catalog rows."""

from __future__ import annotations

import pytest

from sluice.worker.events import ColumnType, TypeKind
from sluice.worker.sources.postgres.types import PgType, column_type


def builtin(name: str, oid: int, native: str | None = None, typmod: int = -1, **kw: object) -> PgType:
    return PgType(
        oid=oid,
        name=name,
        schema="pg_catalog",
        typtype="b",
        category=str(kw.pop("category", "N")),
        native=native or name,
        typmod=typmod,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("pg", "expected"),
    [
        (builtin("int2", 21, "smallint"), ColumnType(TypeKind.INT, "smallint", "postgres", bits=16)),
        (builtin("int4", 23, "integer"), ColumnType(TypeKind.INT, "integer", "postgres", bits=32)),
        (builtin("int8", 20, "bigint"), ColumnType(TypeKind.INT, "bigint", "postgres", bits=64)),
        (builtin("float4", 700, "real"), ColumnType(TypeKind.FLOAT, "real", "postgres", bits=32)),
        (
            builtin("float8", 701, "double precision"),
            ColumnType(TypeKind.FLOAT, "double precision", "postgres", bits=64),
        ),
        (builtin("bool", 16, "boolean"), ColumnType(TypeKind.BOOL, "boolean", "postgres")),
        (builtin("text", 25), ColumnType(TypeKind.TEXT, "text", "postgres")),
        (builtin("bytea", 17), ColumnType(TypeKind.BYTES, "bytea", "postgres")),
        (builtin("date", 1082), ColumnType(TypeKind.DATE, "date", "postgres")),
        (
            builtin("time", 1083, "time without time zone"),
            ColumnType(TypeKind.TIME, "time without time zone", "postgres"),
        ),
        (
            builtin("timetz", 1266, "time with time zone"),
            ColumnType(TypeKind.TIMETZ, "time with time zone", "postgres"),
        ),
        (builtin("timestamp", 1114), ColumnType(TypeKind.TIMESTAMP, "timestamp", "postgres")),
        (builtin("timestamptz", 1184), ColumnType(TypeKind.TIMESTAMPTZ, "timestamptz", "postgres")),
        (builtin("interval", 1186), ColumnType(TypeKind.INTERVAL, "interval", "postgres")),
        (builtin("uuid", 2950), ColumnType(TypeKind.UUID, "uuid", "postgres")),
        (builtin("json", 114), ColumnType(TypeKind.JSON, "json", "postgres")),
        (builtin("jsonb", 3802), ColumnType(TypeKind.JSON, "jsonb", "postgres")),
        # no logical kind: the native text travels
        (builtin("point", 600), ColumnType(TypeKind.NATIVE, "point", "postgres")),
        (builtin("xml", 142), ColumnType(TypeKind.NATIVE, "xml", "postgres")),
    ],
)
def test_builtin_kinds(pg: PgType, expected: ColumnType) -> None:
    assert column_type(pg) == expected


def test_numeric_precision_and_scale_from_the_typmod() -> None:
    # numeric(12,2): typmod = ((12 << 16) | 2) + 4
    t = column_type(builtin("numeric", 1700, "numeric(12,2)", typmod=((12 << 16) | 2) + 4))
    assert (t.kind, t.precision, t.scale, t.native) == (TypeKind.DECIMAL, 12, 2, "numeric(12,2)")
    # numeric(3,-2) (PostgreSQL 15+): the scale is an 11-bit signed field
    t = column_type(builtin("numeric", 1700, "numeric(3,-2)", typmod=((3 << 16) | (-2 & 0x7FF)) + 4))
    assert (t.precision, t.scale) == (3, -2)
    t = column_type(builtin("numeric", 1700))
    assert (t.kind, t.precision, t.scale) == (TypeKind.DECIMAL, None, None)


def test_bounded_text_lengths() -> None:
    assert column_type(builtin("varchar", 1043, "character varying(20)", typmod=24)).length == 20
    assert column_type(builtin("bpchar", 1042, "character(3)", typmod=7)).length == 3
    assert column_type(builtin("varchar", 1043, "character varying")).length is None


def test_arrays_carry_their_element_type() -> None:
    elem = builtin("varchar", 1043, "character varying(5)", typmod=9)
    arr = PgType(1015, "_varchar", "pg_catalog", "b", "A", "character varying(5)[]", 9, element=elem)
    t = column_type(arr)
    assert t.kind is TypeKind.ARRAY and t.native == "character varying(5)[]"
    assert t.element == ColumnType(TypeKind.TEXT, "character varying(5)", "postgres", length=5)


def test_enums_list_their_labels_and_keep_the_qualified_name() -> None:
    mood = PgType(16400, "mood", "public", "e", "E", "public.mood", enum_values=("sad", "ok", "happy"))
    assert column_type(mood) == ColumnType(TypeKind.ENUM, "public.mood", "postgres", enum_values=("sad", "ok", "happy"))
    arr = PgType(16399, "_mood", "public", "b", "A", "public.mood[]", element=mood)
    assert column_type(arr).element == column_type(mood)


def test_domains_take_the_base_kind_and_keep_their_own_name() -> None:
    base = builtin("numeric", 1700, "numeric(5,1)", typmod=((5 << 16) | 1) + 4)
    dom = PgType(16500, "price", "shop", "d", "N", "shop.price", base=base)
    assert column_type(dom) == ColumnType(TypeKind.DECIMAL, "shop.price", "postgres", precision=5, scale=1)


def test_user_base_types_and_builtin_names_outside_pg_catalog_are_native() -> None:
    # An extension type (citext) or a user type that happens to be called "int4" has no logical kind.
    assert column_type(PgType(16600, "citext", "public", "b", "S", "public.citext")).kind is TypeKind.NATIVE
    assert column_type(PgType(16601, "int4", "evil", "b", "N", "evil.int4")).kind is TypeKind.NATIVE
    rng = PgType(3904, "int4range", "pg_catalog", "r", "R", "int4range")
    assert column_type(rng).kind is TypeKind.NATIVE
