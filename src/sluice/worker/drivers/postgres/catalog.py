"""PostgreSQL catalog descriptions shared by the PostgreSQL source, the PostgreSQL sink and the PG->PG fast path.

They describe a table as PostgreSQL spells it (``format_type`` text, OIDs, replica identity); the neutral
:class:`~sluice.worker.events.TableSchema` is built from them for everything that is not PostgreSQL-specific.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FIRST_NORMAL_OID", "SourceColumn", "SourceTable", "UserType"]

#: OIDs below this are built in; user types have larger ones.
FIRST_NORMAL_OID = 16384


@dataclass(frozen=True)
class SourceColumn:
    name: str
    type_sql: str  # format_type(...) output, schema-qualified for user types
    type_oid: int
    not_null: bool
    #: binary COPY of this column is portable between servers (no embedded type OIDs of user types)
    binary_safe: bool
    text_compare: bool  # type has no btree equality (json, xml, point...): compare as text


@dataclass
class SourceTable:
    oid: int
    schema: str
    name: str
    relkind: str  # 'r' table, 'p' partitioned root
    replica_identity: str  # d n f i
    columns: list[SourceColumn]
    key: list[str]  # primary key, else replica identity index columns; empty = keyless
    #: tables to read rows from: itself, or its leaf partitions when replicated as root
    leaves: list[tuple[int, str, str]] = field(default_factory=list)
    user_type_oids: set[int] = field(default_factory=set)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def binary_safe(self) -> bool:
        return all(c.binary_safe for c in self.columns)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass(frozen=True)
class UserType:
    oid: int
    schema: str
    name: str
    kind: str  # 'e' enum, 'd' domain
    labels: tuple[str, ...] = ()
    base_sql: str = ""
    constraints: tuple[str, ...] = ()
    not_null: bool = False
