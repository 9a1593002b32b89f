"""How a sink follows schema changes at the source (``migration_strategy``).

Kept apart from any one sink because five sinks share it; the worker compares a changed relation with the sink
table and applies only the kinds of change listed in ``allowed``, stopping with a clear condition otherwise.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from sluice.models.common import SluiceModel

__all__ = ["MigrationKind", "MigrationStrategy"]


class MigrationKind(StrEnum):
    """A kind of schema change at the source."""

    ADD = "Add"
    DROP = "Drop"
    DATATYPE = "Datatype"
    NULLABILITY = "Nullability"
    ORDER = "Order"


class MigrationStrategy(SluiceModel):
    """Which source schema changes are applied to the sink automatically."""

    allowed: list[MigrationKind] = Field(default_factory=list)
    """Kinds of change applied automatically: Add (new column), Drop (dropped column), Datatype (column type
    change), Nullability (NOT NULL added or removed), Order (column order). The list is exact: any other change
    stops the connector with a condition naming the change. Without a migration_strategy, Add alone is applied."""
    disable_all: bool = False
    """When true no schema change is applied, whatever `allowed` says: every change stops the connector."""
