"""A connector's identity: what cannot change after creation, and THE words that refuse a change.

The source/sink kind and the connection fields that name the database (host, port, database, ...) cannot change:
the replication slot, the publication and the sink tables belong to them, so a change means a new connector.
Two places refuse such a change, with the same words, built once here:

- the REST API's PATCH and replace: 422 ``ImmutableField`` whose details are `Immutable.detail` of each change
  (``sluice.api.services.connectors``);
- ``kubectl edit`` / ``apply`` / ``patch``: CEL transition rules (``oldSelf``) on ``spec.source``, ``spec.sink``
  and each kind's ``connection``, generated into the CRD by ``sluice generate`` (``sluice.schemagen``), whose
  message is `Immutable.text`.

A CEL message is a static string, so the words name the field but not the old and new values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sluice.errors import ErrorDetail

__all__ = ["IDENTITY_FIELDS", "REASON", "Immutable", "identity_changes", "immutable_field", "immutable_kind"]

#: Connection fields that identify the database a connector is bound to (per kind, whichever exist).
IDENTITY_FIELDS = ("host", "port", "database", "dbname", "address", "connect_string", "http_url", "account_identifier")

#: CamelCase reason of the API error.
REASON = "ImmutableField"

Part = Literal["source", "sink"]


@dataclass(frozen=True)
class Immutable:
    """One field that cannot change after creation, and what to say when a change tries to."""

    loc: tuple[str, ...]
    message: str
    fix: str

    @property
    def field(self) -> str:
        return ".".join(self.loc)

    @property
    def text(self) -> str:
        """Message and fix in one line: the CEL rule's message."""
        return f"{self.message}. Fix: {self.fix}"

    def detail(self) -> ErrorDetail:
        return ErrorDetail(list(self.loc), self.message, self.fix)


def immutable_kind(part: Part) -> Immutable:
    """THE refusal of a change of ``spec.<part>``'s kind."""
    return Immutable(
        loc=(part,),
        message=f"the {part} kind cannot change after creation",
        fix=f"Create a new connector with the new {part} kind, then delete this one.",
    )


def immutable_field(part: Part, kind: str, field: str) -> Immutable:
    """THE refusal of a change of ``spec.<part>.<kind>.connection.<field>``."""
    return Immutable(
        loc=(part, kind, "connection", field),
        message=f"{part}.{kind}.connection.{field} cannot change after creation",
        fix="The replication slot and the sink tables belong to the old database: create a new connector instead, "
        "then delete this one.",
    )


def _kind(side: Any) -> str | None:
    if isinstance(side, Mapping):
        keys = [k for k, v in side.items() if v is not None]
        if len(keys) == 1:
            return str(keys[0])
    return None


def identity_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Immutable]:
    """What a change from ``old`` to ``new`` (connector dicts, defaults filled) alters that must not change."""
    problems: list[Immutable] = []
    parts: tuple[Part, Part] = ("source", "sink")
    for part in parts:
        old_kind, new_kind = _kind(old.get(part)), _kind(new.get(part))
        if old_kind is None or new_kind is None:
            continue
        if old_kind != new_kind:
            problems.append(immutable_kind(part))
            continue
        old_conf, new_conf = old[part][old_kind], new[part][new_kind]
        if not isinstance(old_conf, Mapping) or not isinstance(new_conf, Mapping):
            continue
        old_conn, new_conn = old_conf.get("connection") or {}, new_conf.get("connection") or {}
        if not isinstance(old_conn, Mapping) or not isinstance(new_conn, Mapping):
            continue
        for field in IDENTITY_FIELDS:
            if (field in old_conn or field in new_conn) and old_conn.get(field) != new_conn.get(field):
                problems.append(immutable_field(part, new_kind, field))
    return problems
