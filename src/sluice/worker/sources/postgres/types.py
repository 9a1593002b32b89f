"""PostgreSQL types as the neutral :class:`~sluice.worker.events.ColumnType`, and loaders of their text values.

:class:`PgType` is what the catalog says of one type (read by :func:`describe_type`); :func:`column_type` maps it to
a logical kind without I/O, so the mapping is unit-tested on hand-built descriptions. ``native`` is always
``format_type(oid, typmod)`` read under ``search_path = pg_catalog``: user types come back schema-qualified and a
PostgreSQL sink can create exactly the source's type. A domain takes its base type's kind and keeps its own name as
``native``; a type with no logical kind (geometry, ranges, ``xml``...) is ``NATIVE`` and travels as its text.

Values: :func:`install_loaders` registers on a psycopg adapters map (a connection's, or a copy) what makes psycopg's
text loaders produce the Python values :mod:`sluice.worker.events` promises: JSON stays text, an interval with
months stays text (a month has no fixed length), ``infinity`` dates and timestamps stay text instead of failing,
domains load as their base type, arrays of user types as lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.adapt import AdaptersMap, Loader
from psycopg.pq import Format
from psycopg.types import TypeInfo
from psycopg.types.array import register_array

from sluice.worker.drivers.postgres.catalog import FIRST_NORMAL_OID
from sluice.worker.events import ColumnType, TypeKind

__all__ = ["DIALECT", "PgType", "TypeCatalog", "column_type", "describe_type", "install_loaders"]

DIALECT = "postgres"

#: builtin type name -> (kind, bits)
_BUILTIN: dict[str, tuple[TypeKind, int | None]] = {
    "int2": (TypeKind.INT, 16),
    "int4": (TypeKind.INT, 32),
    "int8": (TypeKind.INT, 64),
    "numeric": (TypeKind.DECIMAL, None),
    "float4": (TypeKind.FLOAT, 32),
    "float8": (TypeKind.FLOAT, 64),
    "bool": (TypeKind.BOOL, None),
    "text": (TypeKind.TEXT, None),
    "varchar": (TypeKind.TEXT, None),
    "bpchar": (TypeKind.TEXT, None),
    "bytea": (TypeKind.BYTES, None),
    "date": (TypeKind.DATE, None),
    "time": (TypeKind.TIME, None),
    "timetz": (TypeKind.TIMETZ, None),
    "timestamp": (TypeKind.TIMESTAMP, None),
    "timestamptz": (TypeKind.TIMESTAMPTZ, None),
    "interval": (TypeKind.INTERVAL, None),
    "uuid": (TypeKind.UUID, None),
    "json": (TypeKind.JSON, None),
    "jsonb": (TypeKind.JSON, None),
}

_VARHDRSZ = 4


@dataclass(frozen=True)
class PgType:
    """One type as the catalog describes it (``typmod`` is the column's, -1 when none)."""

    oid: int
    name: str  # pg_type.typname
    schema: str  # its namespace
    typtype: str  # b(ase) c(omposite) d(omain) e(num) p(seudo) r(ange) m(ultirange)
    category: str  # pg_type.typcategory; 'A' for arrays
    native: str  # format_type(oid, typmod)
    typmod: int = -1
    element: PgType | None = None  # arrays
    base: PgType | None = None  # domains
    enum_values: tuple[str, ...] = ()
    array_oid: int = 0  # pg_type.typarray

    @property
    def builtin(self) -> bool:
        return self.oid < FIRST_NORMAL_OID and self.schema == "pg_catalog"


def _numeric_precision(typmod: int) -> tuple[int | None, int | None]:
    if typmod < _VARHDRSZ:
        return None, None
    value = typmod - _VARHDRSZ
    # The scale is an 11-bit signed field since PostgreSQL 15 (negative scales round to tens, hundreds...).
    return (value >> 16) & 0xFFFF, ((value & 0x7FF) ^ 1024) - 1024


def column_type(pg: PgType) -> ColumnType:
    """The logical type of ``pg``; ``native`` is always ``pg.native``."""
    if pg.typtype == "d" and pg.base is not None:
        base = column_type(pg.base)
        return ColumnType(**{**base.__dict__, "native": pg.native})
    if pg.category == "A" and pg.element is not None:
        return ColumnType(TypeKind.ARRAY, native=pg.native, dialect=DIALECT, element=column_type(pg.element))
    if pg.typtype == "e":
        return ColumnType(TypeKind.ENUM, native=pg.native, dialect=DIALECT, enum_values=pg.enum_values)
    if not pg.builtin or pg.name not in _BUILTIN:
        return ColumnType(TypeKind.NATIVE, native=pg.native, dialect=DIALECT)
    kind, bits = _BUILTIN[pg.name]
    if kind is TypeKind.DECIMAL:
        precision, scale = _numeric_precision(pg.typmod)
        return ColumnType(kind, native=pg.native, dialect=DIALECT, precision=precision, scale=scale)
    if pg.name in ("varchar", "bpchar"):
        length = pg.typmod - _VARHDRSZ if pg.typmod >= _VARHDRSZ else None
        return ColumnType(kind, native=pg.native, dialect=DIALECT, length=length)
    return ColumnType(kind, native=pg.native, dialect=DIALECT, bits=bits)


_TYPE_SQL = """
SELECT t.typname, n.nspname, t.typtype, t.typcategory, t.typelem, t.typbasetype, t.typtypmod, t.typarray,
       format_type(t.oid, %s)
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid = %s
"""


class TypeCatalog:
    """Reads and caches type descriptions from one connection (whose ``search_path`` is ``pg_catalog``)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._cache: dict[tuple[int, int], PgType] = {}

    def describe(self, oid: int, typmod: int = -1) -> PgType:
        key = (oid, typmod)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = describe_type(self.conn, oid, typmod)
        return cached


def describe_type(conn: psycopg.Connection[Any], oid: int, typmod: int = -1, _depth: int = 0) -> PgType:
    """What the catalog says of ``oid``; arrays bring their element, domains their base type."""
    row = conn.execute(_TYPE_SQL, (typmod if typmod >= 0 else None, oid)).fetchone()
    if row is None:
        return PgType(oid=oid, name="unknown", schema="", typtype="b", category="X", native="unknown", typmod=typmod)
    name, schema, typtype, category, elem, basetype, base_typmod, array_oid, native = row
    element = base = None
    labels: tuple[str, ...] = ()
    if _depth < 8:
        if category == "A" and elem:
            element = describe_type(conn, int(elem), typmod, _depth + 1)
        if typtype == "d" and basetype:
            base = describe_type(conn, int(basetype), int(base_typmod), _depth + 1)
    if typtype == "e":
        labels = tuple(
            r[0]
            for r in conn.execute(
                "SELECT enumlabel FROM pg_catalog.pg_enum WHERE enumtypid = %s ORDER BY enumsortorder", (oid,)
            ).fetchall()
        )
    return PgType(
        oid=oid,
        name=str(name),
        schema=str(schema),
        typtype=str(typtype),
        category=str(category),
        native=str(native),
        typmod=typmod,
        element=element,
        base=base,
        enum_values=labels,
        array_oid=int(array_oid or 0),
    )


# ------------------------------------------------------------------------------------------------- value loaders


class _JsonText(Loader):
    """JSON stays the text the source holds (``events``: ``json`` -> ``str``)."""

    def load(self, data: Any) -> str:
        return bytes(data).decode()


class _Lenient(Loader):
    """A builtin loader that gives the value's text where Python has no value for it (``infinity`` dates)."""

    inner_oid = 0

    def __init__(self, oid: int, context: Any = None) -> None:
        super().__init__(oid, context)
        default = psycopg.adapters.get_loader(self.inner_oid, Format.TEXT)
        assert default is not None
        self._inner = default(oid, context)

    def load(self, data: Any) -> Any:
        try:
            return self._inner.load(data)
        except (psycopg.DataError, ValueError, OverflowError):
            return bytes(data).decode()


_MONTHS = re.compile(rb"\b(mon|mons|year|years)\b")


class _Interval(_Lenient):
    """``timedelta`` unless the interval has months or years, which have no fixed length: then its text."""

    inner_oid = 1186

    def load(self, data: Any) -> Any:
        if _MONTHS.search(bytes(data)):
            return bytes(data).decode()
        return super().load(data)


def _lenient(oid: int) -> type[Loader]:
    return type(f"_Lenient{oid}", (_Lenient,), {"inner_oid": oid})


_DATE, _TIMESTAMP, _TIMESTAMPTZ = 1082, 1114, 1184
_JSON, _JSONB = 114, 3802


def install_loaders(adapters: AdaptersMap, types: list[PgType]) -> None:
    """Register on ``adapters`` the text loaders that give :mod:`sluice.worker.events` values for ``types``."""
    adapters.register_loader(_JSON, _JsonText)
    adapters.register_loader(_JSONB, _JsonText)
    adapters.register_loader(1186, _Interval)
    for oid in (_DATE, _TIMESTAMP, _TIMESTAMPTZ):
        adapters.register_loader(oid, _lenient(oid))
    seen: set[int] = set()
    for t in types:
        _install(adapters, t, seen)


def _install(adapters: AdaptersMap, t: PgType, seen: set[int]) -> None:
    if t.oid in seen:
        return
    seen.add(t.oid)
    if t.element is not None:
        _install(adapters, t.element, seen)
        if not t.element.builtin:
            register_array(TypeInfo(t.element.name, t.element.oid, t.oid), adapters)
    if t.base is not None:
        _install(adapters, t.base, seen)
        if not t.builtin:
            base_loader = adapters.get_loader(t.base.oid, Format.TEXT)
            if base_loader is not None:
                adapters.register_loader(t.oid, base_loader)
            if t.array_oid:
                register_array(TypeInfo(t.name, t.oid, t.array_oid), adapters)
    if t.typtype == "e" and t.array_oid:
        register_array(TypeInfo(t.name, t.oid, t.array_oid), adapters)
