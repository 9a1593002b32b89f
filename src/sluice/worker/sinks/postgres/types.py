"""PostgreSQL column types for neutral :class:`~sluice.worker.events.ColumnType` values.

A column whose type comes from a PostgreSQL source (``dialect == "postgres"``) keeps the source's exact type: its
``native`` text (``numeric(12,2)``, ``public.mood[]``), with the source's enums created in the sink from
``enum_values`` (see :func:`user_enums`). Every other column gets the PostgreSQL type of its logical kind:

=============== =============================================================================================
logical kind    PostgreSQL type
=============== =============================================================================================
``int``         ``smallint`` (8 and 16 bits), ``integer`` (32), ``bigint`` (64 or unknown); unsigned types
                take the next wider one: 8 -> ``smallint``, 16 -> ``integer``, 32 -> ``bigint``,
                64 -> ``numeric(20,0)``
``decimal``     ``numeric(p,s)`` / ``numeric(p)`` / ``numeric`` (when the precision is unknown or above
                PostgreSQL's 1000)
``float``       ``real`` (32 bits), ``double precision`` (64 or unknown)
``bool``        ``boolean``
``text``        ``varchar(n)`` when ``length`` bounds it, else ``text``
``bytes``       ``bytea``
``date``        ``date``
``time``        ``time``
``timetz``      ``timetz``
``timestamp``   ``timestamp``
``timestamptz`` ``timestamptz``
``interval``    ``interval``
``uuid``        ``uuid``
``json``        ``jsonb``
``array``       the element's type followed by ``[]`` (``text[]`` when the element is unknown)
``enum``        ``text`` (values of another database's enum are free to change without DDL in the sink)
``native``      ``text`` (the source's own text form)
=============== =============================================================================================

A PostgreSQL-dialect type that the sink cannot resolve (a domain or extension type the sink lacks) falls back to
the logical mapping: the data still arrives, as the logical kind's type.
"""

from __future__ import annotations

from typing import Any

import psycopg

from sluice.worker.drivers.postgres.catalog import UserType
from sluice.worker.events import ColumnType, TypeKind

__all__ = ["TEXT_COMPARED", "logical_type", "pg_type", "resolve_type", "split_qualified", "text_compare", "user_enums"]

_SAME_NAME = {
    TypeKind.BOOL: "boolean",
    TypeKind.BYTES: "bytea",
    TypeKind.DATE: "date",
    TypeKind.TIME: "time",
    TypeKind.TIMETZ: "timetz",
    TypeKind.TIMESTAMP: "timestamp",
    TypeKind.TIMESTAMPTZ: "timestamptz",
    TypeKind.INTERVAL: "interval",
    TypeKind.UUID: "uuid",
    TypeKind.JSON: "jsonb",
    TypeKind.ENUM: "text",
    TypeKind.NATIVE: "text",
}

#: numeric's largest declarable precision
_MAX_NUMERIC_PRECISION = 1000


def _int_type(bits: int | None, unsigned: bool) -> str:
    width = bits or 64
    if unsigned:
        width *= 2  # the next wider signed type holds every unsigned value
    if width <= 16:
        return "smallint"
    if width <= 32:
        return "integer"
    if width <= 64:
        return "bigint"
    return "numeric(20,0)"


def logical_type(ct: ColumnType) -> str:
    """The PostgreSQL type of ``ct``'s logical kind (``native`` ignored)."""
    kind = ct.kind
    if kind == TypeKind.INT:
        return _int_type(ct.bits, ct.unsigned)
    if kind == TypeKind.DECIMAL:
        p, s = ct.precision, ct.scale
        if p is None or not 0 < p <= _MAX_NUMERIC_PRECISION:
            return "numeric"
        return f"numeric({p},{s})" if s is not None else f"numeric({p})"
    if kind == TypeKind.FLOAT:
        return "real" if ct.bits == 32 else "double precision"
    if kind == TypeKind.TEXT:
        return f"varchar({ct.length})" if ct.length and ct.length > 0 else "text"
    if kind == TypeKind.ARRAY:
        element = pg_type(ct.element) if ct.element is not None else "text"
        return element if element.endswith("[]") else f"{element}[]"
    return _SAME_NAME[kind]


def pg_type(ct: ColumnType) -> str:
    """The sink type of ``ct``: the source's own for PostgreSQL sources, else the logical kind's."""
    if ct.dialect == "postgres" and ct.native:
        return ct.native
    return logical_type(ct)


def resolve_type(conn: psycopg.Connection[Any], ct: ColumnType) -> str:
    """:func:`pg_type`, unless that names a type the sink does not have (then the logical kind's type)."""
    chosen = pg_type(ct)
    if chosen == logical_type(ct):
        return chosen
    row = conn.execute("SELECT to_regtype(%s) IS NOT NULL", (chosen,)).fetchone()
    return chosen if row is not None and row[0] else logical_type(ct)


def split_qualified(name: str) -> tuple[str, str]:
    """``public.mood`` / ``"My Schema"."Mood"`` (a trailing ``[]`` ignored) -> (schema, name); schema 'public'
    when unqualified."""
    text = name.strip()
    while text.endswith("[]"):
        text = text[:-2]
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == '"':
                if i + 1 < len(text) and text[i + 1] == '"':
                    cur.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                cur.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch.lower())
        i += 1
    parts.append("".join(cur))
    if len(parts) == 1:
        return "public", parts[0]
    return parts[-2], parts[-1]


def user_enums(ct: ColumnType) -> list[UserType]:
    """The PostgreSQL enums ``ct`` needs in the sink (itself or its array element), from ``enum_values``."""
    if ct.kind == TypeKind.ARRAY and ct.element is not None:
        return user_enums(ct.element)
    if ct.kind != TypeKind.ENUM or ct.dialect != "postgres" or not ct.native or not ct.enum_values:
        return []
    schema, name = split_qualified(ct.native)
    return [UserType(oid=0, schema=schema, name=name, kind="e", labels=tuple(ct.enum_values))]


#: base types without btree equality: rows are matched on their text form
TEXT_COMPARED = frozenset({"json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle"})


def text_compare(type_sql: str) -> bool:
    """Whether values of ``type_sql`` (``format_type`` text) are compared as text when matching a whole row."""
    base = type_sql.strip()
    while base.endswith("[]"):
        base = base[:-2]
    return base.split("(")[0].strip().lower() in TEXT_COMPARED
