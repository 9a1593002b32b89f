"""The connector's ``catalog`` rules (which schemas, tables and columns replicate), for every source.

Sources differ in what a "schema" is (a PostgreSQL schema, a MySQL database) but read the rules the same way.
"""

from __future__ import annotations

from typing import Any

__all__ = ["action", "excluded_columns", "is_selected"]


def action(value: Any) -> str:
    return str(getattr(value, "value", value))


def is_selected(catalog: Any, schema: str, table: str) -> bool:
    """The most specific catalog rule wins; without one, ``default_action``."""
    if catalog is None:
        return True
    verdict = action(catalog.default_action) == "Include"
    for s in catalog.schemas:
        if s.name != schema:
            continue
        verdict = action(s.action) == "Include"
        for t in s.tables:
            if t.name == table:
                return action(t.action) == "Include"
    return verdict


def excluded_columns(catalog: Any, schema: str, table: str) -> set[str]:
    if catalog is None:
        return set()
    out: set[str] = set()
    for s in catalog.schemas:
        if s.name != schema:
            continue
        for t in s.tables:
            if t.name == table:
                out |= {c.name for c in t.columns if action(c.action) == "Exclude"}
    return out
