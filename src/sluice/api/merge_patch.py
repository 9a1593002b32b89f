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

__all__ = ["merge_patch", "reconcile_secret_siblings"]

REF_SUFFIX = "_secret_ref"

#: Connection fields that identify the database a connector is bound to (per kind, whichever exist).


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
