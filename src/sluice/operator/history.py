"""The connector's status history, kept in ``status.history`` for ``GET /api/v1/connector/history/{id}``.

Why the operator keeps it rather than the worker: the worker patches its own progress many times a second and may
die between two patches; the operator sees every state the resource ends up in (on change and on its timer), so it
records each transition of ``(state, status)`` once, whoever caused it. The list is bounded so a flapping
connector cannot grow its resource without limit.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

__all__ = ["MAX_EVENTS", "next_history"]

MAX_EVENTS = 50

JsonObj = dict[str, Any]

# Error reasons that say which side of the pipeline failed (the reference's event component).
_SOURCE_REASONS = {"SourceNotReady", "SourceUnreachable", "SlotLagHigh"}
_TARGET_REASONS = {"SchemaChangeNotAllowed", "SinkUnreachable"}


def _key(state: Any, status: Any) -> tuple[Any, Any, Any, Any]:
    status = status or {}
    return (state, status.get("type"), status.get("reason"), status.get("attempt"))


def _component(status: JsonObj) -> str:
    reason = ((status.get("last_error") or {}).get("error")) or ((status.get("last_error") or {}).get("reason"))
    if (status.get("status") or {}).get("type") in {"failed", "retry"}:
        if reason in _SOURCE_REASONS:
            return "Source"
        if reason in _TARGET_REASONS:
            return "Target"
    return "Connector"


def next_history(current: JsonObj, patch: JsonObj, now: datetime) -> list[JsonObj] | None:
    """The new ``status.history`` if ``(state, status)`` changed since the last recorded event, else ``None``.

    ``current`` is the status as stored, ``patch`` what this pass is about to write over it.
    """
    merged = {**current, **patch}
    state, status = merged.get("state"), merged.get("status")
    if state is None and status is None:
        return None
    history = [e for e in current.get("history") or [] if isinstance(e, dict)]
    if history and _key(history[-1].get("state"), history[-1].get("status")) == _key(state, status):
        return None
    event: JsonObj = {
        "id": uuid.uuid4().hex[:16],
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "component": _component(merged),
        "run_id": merged.get("run_id"),
        "state": state,
        "status": status,
    }
    return [*history, {k: v for k, v in event.items() if v is not None}][-MAX_EVENTS:]
