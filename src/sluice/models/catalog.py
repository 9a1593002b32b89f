"""Which schemas, tables and columns replicate: the ``catalog`` of a source.

Rules nest (schema → table → column); the most specific rule wins and anything without a rule follows
``default_action``. The worker turns this into the publication's table list and the copied column lists.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from sluice.models.common import SluiceModel

__all__ = ["Catalog", "CatalogAction", "CatalogColumn", "CatalogSchema", "CatalogTable"]


class CatalogAction(StrEnum):
    """Whether an object replicates."""

    INCLUDE = "Include"
    EXCLUDE = "Exclude"


class CatalogColumn(SluiceModel):
    """A rule for one column."""

    name: str = Field(min_length=1)
    """Column name as it appears in the source (case-sensitive)."""
    action: CatalogAction = CatalogAction.INCLUDE
    """Include or Exclude this column. An excluded column is not copied and never reaches the sink."""


class CatalogTable(SluiceModel):
    """A rule for one table, optionally with per-column rules."""

    name: str = Field(min_length=1)
    """Table name as it appears in the source (case-sensitive)."""
    action: CatalogAction = CatalogAction.INCLUDE
    """Include or Exclude this table."""
    columns: list[CatalogColumn] = Field(default_factory=list)
    """Per-column rules; columns without a rule are included when the table is."""


class CatalogSchema(SluiceModel):
    """A rule for one schema (or database), optionally with per-table rules."""

    name: str = Field(min_length=1)
    """Schema name as it appears in the source (case-sensitive)."""
    action: CatalogAction = CatalogAction.INCLUDE
    """Include or Exclude this schema; tables without a rule follow it."""
    tables: list[CatalogTable] = Field(default_factory=list)
    """Per-table rules inside this schema."""


class Catalog(SluiceModel):
    """Selection of the schemas, tables and columns to replicate."""

    name: str | None = None
    """Optional name of this selection (for display only)."""
    default_action: CatalogAction = CatalogAction.INCLUDE
    """What happens to objects no rule mentions: Include replicates everything not excluded, Exclude replicates
    only what is explicitly included."""
    schemas: list[CatalogSchema] = Field(default_factory=list)
    """Per-schema rules."""
