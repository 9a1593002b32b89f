"""The neutral change model: what every source produces and every sink consumes.

A source turns its log (pgoutput, a MySQL binlog...) into these events and a sink turns them into its own writes
(SQL, Kafka records, HTTP requests), so a MySQL source can feed a Kafka sink without either knowing the other or
PostgreSQL. Shapes follow what CDC users already know from Debezium's envelope: a transaction is ``Begin``, row
changes, ``Commit``; a row change carries the row before and after, and which columns the source did not send
("unchanged", e.g. PostgreSQL's unchanged TOAST values).

Values are Python objects chosen by the column's :class:`ColumnType`:

=============== ======================================== ===============================================
logical kind    Python value                             notes
=============== ======================================== ===============================================
``int``         ``int``                                  ``bits`` 8/16/32/64 (+ ``unsigned``)
``decimal``     ``decimal.Decimal``                      ``precision``/``scale`` when the source fixes them
``float``       ``float``                                ``bits`` 32 or 64
``bool``        ``bool``
``text``        ``str``                                  ``length`` when bounded (varchar(n), char(n))
``bytes``       ``bytes``
``date``        ``datetime.date``
``time``        ``datetime.time`` (aware for ``timetz``)
``timestamp``   ``datetime.datetime`` naive
``timestamptz`` ``datetime.datetime`` aware (UTC)
``interval``    ``datetime.timedelta`` (or the source's text when it has months)
``uuid``        ``uuid.UUID``
``json``        ``str`` (the JSON text, as the source holds it)
``array``       ``list`` of the ``element`` type's values
``enum``        ``str`` (one of ``enum_values``)
``native``      ``str`` (the source's own text form)     types with no logical kind (geometry, ranges...)
=============== ======================================== ===============================================

Every type also keeps ``native``: the source's own type name (``numeric(12,2)``, ``bigint unsigned``), so a sink of
the same database kind can create exactly the source's type — PostgreSQL → PostgreSQL keeps ``public.mood[]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sluice.worker.positions import Position

__all__ = [
    "Begin",
    "Change",
    "Column",
    "ColumnType",
    "Commit",
    "Event",
    "ExistingValues",
    "Op",
    "RowChange",
    "SchemaChange",
    "TableId",
    "TableSchema",
    "Truncate",
    "TypeKind",
]


class TypeKind(StrEnum):
    """Logical column types, the vocabulary sources and sinks share."""

    INT = "int"
    DECIMAL = "decimal"
    FLOAT = "float"
    BOOL = "bool"
    TEXT = "text"
    BYTES = "bytes"
    DATE = "date"
    TIME = "time"
    TIMETZ = "timetz"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    INTERVAL = "interval"
    UUID = "uuid"
    JSON = "json"
    ARRAY = "array"
    ENUM = "enum"
    NATIVE = "native"


@dataclass(frozen=True)
class ColumnType:
    """A column's logical type, plus the source's own spelling of it (``native``) and which source said so."""

    kind: TypeKind
    #: the source's type as it would write it in DDL (``numeric(12,2)``, ``public.mood``, ``tinyint(1)``)
    native: str = ""
    #: which source kind ``native`` belongs to (``postgres``, ``mysql``)
    dialect: str = ""
    bits: int | None = None
    unsigned: bool = False
    precision: int | None = None
    scale: int | None = None
    length: int | None = None
    element: ColumnType | None = None
    enum_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = True


@dataclass(frozen=True, order=True)
class TableId:
    """A source table: ``namespace`` is the PostgreSQL schema or the MySQL database."""

    namespace: str
    name: str
    #: ``namespace.name``, made once: every change of a busy stream asks for it several times
    label: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", f"{self.namespace}.{self.name}")


@dataclass(frozen=True)
class TableSchema:
    """One table as the source has it now. ``key`` is the primary key (or replica identity); empty = keyless."""

    table: TableId
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def index(self, name: str) -> int:
        return self.column_names.index(name)

    def key_of(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """The key values of ``row`` (a full row in column order)."""
        names = self.column_names
        return tuple(row[names.index(k)] for k in self.key)


class Op(StrEnum):
    """Debezium's operation letters, which every CDC user reads already."""

    INSERT = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # a snapshot row


@dataclass(frozen=True)
class Begin:
    """A source transaction starts.

    ``position``, when the source knows it up front, is where the transaction's commit begins in the log: lower
    than its :class:`Commit` position and not lower than the previous transaction's. A stream resumed at a stored
    position skips a transaction whose ``position`` is lower (it is in the sink already).
    """

    xid: str | None
    position: Position | None = None
    commit_time: datetime | None = None


@dataclass(frozen=True)
class Commit:
    """A source transaction committed; after it the stream may resume at ``position``."""

    xid: str | None
    position: Position
    commit_time: datetime | None = None
    #: events of this transaction per table, as Debezium's transaction metadata counts them
    event_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row inserted, updated, deleted, or read by a snapshot.

    ``before`` is the old row as far as the source knows it (for keyed tables often only the key columns, the others
    None); ``after`` the new row. Both are in the column order of the table's current :class:`TableSchema`.
    ``unchanged`` lists the indexes of ``after`` columns the source did not send: the sink must keep what it has.
    """

    op: Op
    table: TableId
    before: tuple[Any, ...] | None
    after: tuple[Any, ...] | None
    unchanged: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Truncate:
    tables: tuple[TableId, ...]
    cascade: bool = False
    restart_identity: bool = False


@dataclass(frozen=True)
class ExistingValues:
    """What rows that existed before an added column hold in it, so the sink can end equal to the source.

    ``constant`` (its native text, or None for NULL) when every existing row got the same value, as with a
    constant default; otherwise ``per_row`` is True and the source supplies the values by key afterwards (volatile
    defaults such as ``random()`` or ``clock_timestamp()``).
    """

    constant: Any = None
    per_row: bool = False


@dataclass(frozen=True)
class SchemaChange:
    """A table's shape changed (or a table appeared): the sink adapts under its ``migration_strategy``.

    ``existing`` says, for each added column, what rows that were there before hold in it.
    """

    schema: TableSchema
    previous: TableSchema | None = None
    existing: dict[str, ExistingValues] = field(default_factory=dict)


Change = RowChange | Truncate | SchemaChange
Event = Begin | Commit | RowChange | Truncate | SchemaChange
