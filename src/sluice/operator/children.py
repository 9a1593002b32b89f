"""Where a reconcile pass reads a connector's children (StatefulSet, pod, Secrets, RBAC) from: the watch cache.

Why: at a thousand connectors and one pass per connector every ``refresh_seconds``, a GET per child per pass is
most of what the operator asks of the apiserver, and all of it to learn what a watch already told us. So the
operator keeps kopf indexes (``handlers.py``) of the objects it reads — its children, labelled
``app.kubernetes.io/managed-by: sluice-operator``, and the metadata of Secrets a spec may reference — and a pass
reads them from there (:class:`IndexView`). kopf fills every index from a full LIST before it calls any handler,
so "not in the index" means "does not exist" from the first pass on.

A watch lags our own writes by a moment: a pass right after one that created or changed a child might read the
older object, and write the run id or replica count of before back. So every object the operator writes is
remembered (:class:`WriteMemo`) until the index holds that version or a newer one (``resourceVersion``), or for
``MEMO_SECONDS`` at most; :class:`IndexView` answers with the newer of the two.

Only metadata of Secrets the operator did not create is kept: ``secrets_not_allowed`` needs labels and owners, not
values; the few passes that need a value (``sourcedb``) still read the Secret itself.

:class:`ApiView` is the same interface over plain GETs, for callers without kopf (the delete finalizer, tools,
tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from sluice.k8s.jsonclient import JsonClient, api_path

__all__ = [
    "INDEXED",
    "MANAGED_BY",
    "MEMO_SECONDS",
    "ApiView",
    "ChildView",
    "IndexView",
    "WriteMemo",
    "index_entry",
]

JsonObj = dict[str, Any]

#: The kinds a pass reads, by plural (the kopf index for each is named ``<plural>_idx``).
INDEXED = ("statefulsets", "pods", "secrets", "serviceaccounts", "roles", "rolebindings")
#: The label value on every child (``naming.child_labels``).
MANAGED_BY = "sluice-operator"
MEMO_SECONDS = 30.0

_META_KEYS = ("name", "namespace", "uid", "resourceVersion", "labels", "ownerReferences", "deletionTimestamp")


class ChildView(Protocol):
    def get(self, plural: str, namespace: str, name: str) -> JsonObj | None:
        """The object as last known, or None when it does not exist."""

    def wrote(self, plural: str, obj: JsonObj) -> None:
        """Remember an object the operator has just written (the apiserver's answer)."""

    def dropped(self, plural: str, namespace: str, name: str) -> None:
        """Forget an object the operator has just deleted."""


def _plain(value: Any) -> Any:
    """A deep copy of plain dicts and lists (kopf hands out views of its own objects)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def index_entry(plural: str, body: Mapping[str, Any]) -> JsonObj:
    """What an index keeps of one object: what a pass reads of it (no ``managedFields``; ``status`` of pods only),
    and of Secrets the operator did not create only their metadata."""
    obj: JsonObj = _plain(body)
    meta = obj.get("metadata") or {}
    if plural == "secrets" and (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") != MANAGED_BY:
        return {"metadata": {k: meta[k] for k in _META_KEYS if k in meta}}
    # Nothing a pass reads, and most of the bytes: who wrote which field, and (except of pods) the status.
    meta.pop("managedFields", None)
    if plural != "pods":
        obj.pop("status", None)
    return obj


def _rv(obj: JsonObj) -> int | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else None


class WriteMemo:
    """Objects the operator wrote, until the watch has caught up with them (see the module docstring)."""

    def __init__(self, ttl: float = MEMO_SECONDS) -> None:
        self._ttl = ttl
        self._items: dict[tuple[str, str, str], tuple[float, JsonObj | None]] = {}
        self._lock = threading.Lock()

    def put(self, plural: str, obj: JsonObj | None, namespace: str = "", name: str = "") -> None:
        meta = (obj or {}).get("metadata") or {}
        key = (plural, meta.get("namespace") or namespace, meta.get("name") or name)
        with self._lock:
            self._items[key] = (time.monotonic(), obj)

    def newer(self, plural: str, namespace: str, name: str, cached: JsonObj | None) -> JsonObj | None:
        """``cached`` (from the index), unless what we wrote is newer."""
        key = (plural, namespace, name)
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return cached
            at, mine = item
            if time.monotonic() - at > self._ttl:
                del self._items[key]
                return cached
            if mine is None:  # we deleted it
                if cached is None:
                    del self._items[key]
                return None
            if cached is not None:
                theirs, ours = _rv(cached), _rv(mine)
                if theirs is None or ours is None or theirs >= ours:
                    del self._items[key]
                    return cached
            return mine

    def forget(self, namespace: str, names: Iterable[str]) -> None:
        wanted = set(names)
        with self._lock:
            for key in [k for k in self._items if k[1] == namespace and k[2] in wanted]:
                del self._items[key]

    def __len__(self) -> int:
        return len(self._items)


class IndexView:
    """Children from kopf indexes keyed ``(namespace, name)`` (see ``handlers.py``), corrected by a memo."""

    def __init__(self, indexes: Mapping[str, Mapping[Any, Iterable[JsonObj]]], memo: WriteMemo) -> None:
        self._indexes = indexes
        self._memo = memo

    def get(self, plural: str, namespace: str, name: str) -> JsonObj | None:
        cached: JsonObj | None = None
        for _ in range(3):  # the event loop may change a store while this thread reads it
            try:
                store = self._indexes[plural].get((namespace, name))
                found = list(store) if store is not None else []
                break
            except RuntimeError:
                continue
        else:
            found = []
        if found:
            cached = max(found, key=lambda o: _rv(o) or 0)
        return self._memo.newer(plural, namespace, name, cached)

    def wrote(self, plural: str, obj: JsonObj) -> None:
        self._memo.put(plural, index_entry(plural, obj))  # as the index would keep it (no managedFields)

    def dropped(self, plural: str, namespace: str, name: str) -> None:
        self._memo.put(plural, None, namespace, name)


class ApiView:
    """Children by GET: what a pass did before the indexes, and what callers without kopf still use."""

    def __init__(self, client: JsonClient) -> None:
        self._client = client

    def get(self, plural: str, namespace: str, name: str) -> JsonObj | None:
        return self._client.get_or_none(api_path(plural, namespace, name))

    def wrote(self, plural: str, obj: JsonObj) -> None:
        pass

    def dropped(self, plural: str, namespace: str, name: str) -> None:
        pass
