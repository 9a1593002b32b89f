"""The operator's status history: one event per (state, status) transition, bounded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from sluice.errors import ReplicationError, SchemaChangeError, SluiceError, SourceSetupError, TransientError
from sluice.models.status import ConnectorStatus
from sluice.operator.history import MAX_EVENTS, next_history
from sluice.worker.k8s_status import status_patch
from sluice.worker.status import WorkerStatus

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_first_state_is_recorded() -> None:
    history = next_history({}, {"state": "snapshot", "status": {"type": "start"}, "run_id": "r1"}, NOW)
    assert history is not None and len(history) == 1
    event = history[0]
    assert event["state"] == "snapshot" and event["status"] == {"type": "start"} and event["run_id"] == "r1"
    assert event["created_at"] == "2026-11-26T12:00:00Z" and event["component"] == "Connector"
    # What the operator writes is valid against the status model (and so against the CRD).
    assert ConnectorStatus.model_validate({"history": history}).history[0].id == event["id"]


def _reported(state: str, status: str, error: SluiceError | None = None, attempt: int = 0) -> dict[str, Any]:
    """What the worker really writes: ``status_patch`` of a ``WorkerStatus`` (statuses start|complete|failed|retry;
    a retry always carries a retryable error, a failure may carry any)."""
    ws = WorkerStatus(connector="c", run_id="r1", state=state, status=status, retry_attempt=attempt)
    if error is not None:
        ws.last_error = error.as_dict()
    return status_patch(ws)


def test_no_event_without_a_transition() -> None:
    current = _reported("realtime", "start")
    first = next_history({}, current, NOW)
    assert first is not None
    assert next_history({**current, "history": first}, {"rows_applied": 10}, NOW) is None


def test_retry_attempts_are_distinct_events() -> None:
    current: dict[str, Any] = _reported("realtime", "start")
    current["history"] = next_history({}, current, NOW)
    reset = TransientError("connection to the source was reset")
    patch = _reported("realtime", "retry", reset, attempt=1)
    history = next_history(current, patch, NOW)
    assert history is not None and len(history) == 2
    assert history[-1]["status"] == {"type": "retry", "attempt": 1, "reason": "connection to the source was reset"}
    again = next_history({**current, "history": history}, _reported("realtime", "retry", reset, attempt=2), NOW)
    assert again is not None and len(again) == 3


@pytest.mark.parametrize(
    ("error", "component"),
    [
        (SourceSetupError("wal_level is replica", fix="Set wal_level = logical."), "Source"),
        (SchemaChangeError("column dropped at the source"), "Target"),
        (ReplicationError("the worker failed"), "Connector"),
    ],
)
def test_failures_are_attributed_to_the_side_that_failed(error: SluiceError, component: str) -> None:
    current: dict[str, Any] = _reported("initialize", "start")
    current["history"] = next_history({}, current, NOW)
    history = next_history(current, _reported("initialize", "failed", error), NOW)
    assert history is not None
    assert history[-1]["component"] == component


def test_history_is_bounded() -> None:
    current: dict[str, object] = {}
    for i in range(MAX_EVENTS + 10):
        history = next_history(current, _reported("realtime", "retry", TransientError("reset"), attempt=i), NOW)
        assert history is not None
        current = {"history": history}
    assert len(current["history"]) == MAX_EVENTS  # type: ignore[arg-type]
    assert current["history"][-1]["status"]["attempt"] == MAX_EVENTS + 9  # type: ignore[index]
