"""Who writes which field of a Connector's ``status``: one writer per field.

Two processes merge-patch the status subresource: the worker of the connector (its progress) and the operator
(what it derives from the worker's report, the pod and the spec). If both wrote one field, the last writer would
win at random and a reader could see a value flip back and forth; so every field has one owner:

- the worker (``sluice.worker.k8s_status``) owns what only the replication loop knows: ``state``, ``status``,
  ``tables``, ``rows_copied``, ``rows_applied``, ``lag_bytes``, ``lag_seconds``, ``position``, ``delivery``,
  ``last_error``, ``worker`` (its pod and the run id it runs under) and ``worker_reported_at`` (its heartbeat);
- the operator (``sluice.operator.reconcile`` with ``sluice.operator.conditions``) owns ``observedGeneration``,
  ``conditions``, the kinds, ``created_at``, the restart counters, ``run_id`` (it names each run: the pod template
  and the worker's ``SLUICE_RUN_ID`` follow it), ``next_run_at``, ``reinitialize``, ``history``, and what it
  measures of the slot itself (``wal_retained_bytes``, ``wal_budget_bytes``).

One hand-over, by time rather than by field: while no worker runs (spec.disabled, between scheduled runs, a kind
this version cannot run, a Secret not marked for connectors) nobody else can say what the connector is doing, so
the operator may write the worker fields in :data:`HANDOVER_FIELDS` (``state`` ``disabled``/``scheduled``, the slot
lag it queried itself, ``lag_seconds`` cleared, the ``status``/``last_error`` of an unsupported kind). While a worker
runs, the operator writes none of the worker's fields (:func:`operator_violations` is what the unit tests and the
reconcile pass check).

Each writer also patches only when its patch would change something (:func:`changes`): the operator compares with
the status it just read; the worker with what it last sent, plus a heartbeat well inside the operator's
``STALE_REPORT_SECONDS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "HANDOVER_FIELDS",
    "OPERATOR_FIELDS",
    "WORKER_FIELDS",
    "changes",
    "operator_violations",
    "worker_violations",
]

WORKER_FIELDS = frozenset(
    {
        "state",
        "status",
        "tables",
        "rows_copied",
        "rows_applied",
        "lag_bytes",
        "lag_seconds",
        "position",
        "delivery",
        "last_error",
        "worker",
        "worker_reported_at",
    }
)
OPERATOR_FIELDS = frozenset(
    {
        "observedGeneration",
        "conditions",
        "source_kind",
        "sink_kind",
        "created_at",
        "restarts",
        "restarts_base",
        "restarts_pod_uid",
        "last_restart_time",
        "run_id",
        "next_run_at",
        "reinitialize",
        "history",
        "wal_retained_bytes",
        "wal_budget_bytes",
    }
)
#: Worker fields the operator may write while no worker runs for the connector (see the module docstring).
HANDOVER_FIELDS = frozenset({"state", "status", "last_error", "lag_bytes", "lag_seconds"})


def operator_violations(patch: Mapping[str, Any], *, worker_running: bool) -> list[str]:
    """Fields of an operator status patch the operator does not own at this moment (empty: the patch is fine)."""
    allowed = OPERATOR_FIELDS if worker_running else OPERATOR_FIELDS | HANDOVER_FIELDS
    return sorted(k for k in patch if k not in allowed)


def worker_violations(patch: Mapping[str, Any]) -> list[str]:
    """Fields of a worker status patch the worker does not own (empty: the patch is fine)."""
    return sorted(k for k in patch if k not in WORKER_FIELDS)


def changes(current: Any, patch: Any) -> bool:
    """Whether applying the JSON merge patch ``patch`` (RFC 7386) to ``current`` changes it.

    ``None`` in a patch deletes a key, so it changes nothing when the key is absent or already null. Objects merge
    key by key; anything else (lists included) replaces the value.
    """
    if not isinstance(patch, Mapping):
        return bool(current != patch)
    if not isinstance(current, Mapping):
        return True
    for key, value in patch.items():
        if value is None:
            if current.get(key) is not None:
                return True
        elif isinstance(value, Mapping):
            if key not in current or changes(current[key], value):
                return True
        elif current.get(key) != value:
            return True
    return False
