"""RFC 7396 JSON merge patch, plus the two connector-specific rules a patch must respect.

1. Secret siblings: the stored spec holds ``password_secret_ref``; a patch that sends ``password`` must replace
   that reference (and vice versa), or the merged object would carry both and be refused.
2. Identity fields: a connector's source/sink kind and the host, port and database it points at cannot change,
   because the replication slot, the publication and the sink tables belong to them. Changing them means a new
   connector.
"""

from __future__ import annotations

import copy
from typing import Any

from sluice.errors import ErrorDetail

__all__ = ["IDENTITY_FIELDS", "identity_changes", "merge_patch", "reconcile_secret_siblings"]

REF_SUFFIX = "_secret_ref"

#: Connection fields that identify the database a connector is bound to (per kind, whichever exist).
IDENTITY_FIELDS = ("host", "port", "database", "dbname", "address", "connect_string", "http_url", "account_identifier")


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply ``patch`` to ``target`` as RFC 7396 says; neither argument is modified.

    A non-object patch replaces the target; ``null`` members delete; objects merge recursively; arrays replace.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def reconcile_secret_siblings(merged: Any, patch: Any) -> Any:
    """Drop the sibling of every secret field or reference the patch sets, in place; returns ``merged``.

    Sending ``{"password": "new"}`` where the stored object has ``password_secret_ref`` means "use this new
    password", and sending ``password_secret_ref`` means "use the Secret from now on".
    """
    if not isinstance(merged, dict) or not isinstance(patch, dict):
        return merged
    for key, value in patch.items():
        if value is None:
            continue
        if key.endswith(REF_SUFFIX):
            sibling = key[: -len(REF_SUFFIX)]
        elif f"{key}{REF_SUFFIX}" in merged and f"{key}{REF_SUFFIX}" not in patch:
            sibling = f"{key}{REF_SUFFIX}"
        else:
            sibling = ""
        if sibling and sibling not in patch:
            merged.pop(sibling, None)
        if isinstance(value, dict):
            reconcile_secret_siblings(merged.get(key), value)
    return merged


def _kind(side: Any) -> str | None:
    if isinstance(side, dict):
        keys = [k for k, v in side.items() if v is not None]
        if len(keys) == 1:
            return str(keys[0])
    return None


def identity_changes(old: dict[str, Any], new: dict[str, Any]) -> list[ErrorDetail]:
    """What a change from ``old`` to ``new`` (connector dicts, defaults filled) alters that must not change."""
    problems: list[ErrorDetail] = []
    for side in ("source", "sink"):
        old_kind, new_kind = _kind(old.get(side)), _kind(new.get(side))
        if old_kind is None or new_kind is None:
            continue
        if old_kind != new_kind:
            problems.append(
                ErrorDetail(
                    loc=[side],
                    msg=f"the {side} kind cannot change after creation ({old_kind} → {new_kind})",
                    fix=f"Create a new connector for the {new_kind} {side}, then delete this one.",
                )
            )
            continue
        old_conf, new_conf = old[side][old_kind], new[side][new_kind]
        if not isinstance(old_conf, dict) or not isinstance(new_conf, dict):
            continue
        old_conn, new_conn = old_conf.get("connection") or {}, new_conf.get("connection") or {}
        if not isinstance(old_conn, dict) or not isinstance(new_conn, dict):
            continue
        for field in IDENTITY_FIELDS:
            if old_conn.get(field) != new_conn.get(field) and (field in old_conn or field in new_conn):
                problems.append(
                    ErrorDetail(
                        loc=[side, new_kind, "connection", field],
                        msg=f"{field} cannot change after creation ({old_conn.get(field)!r} → {new_conn.get(field)!r})",
                        fix="The replication state belongs to the old database: create a new connector instead.",
                    )
                )
    return problems
