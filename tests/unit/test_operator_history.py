"""The operator's status history: one event per (state, status) transition, bounded."""

from __future__ import annotations

from datetime import UTC, datetime

from sluice.models.status import ConnectorStatus
from sluice.operator.history import MAX_EVENTS, next_history

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_first_state_is_recorded() -> None:
    history = next_history({}, {"state": "snapshot", "status": {"type": "start"}, "run_id": "r1"}, NOW)
    assert history is not None and len(history) == 1
    event = history[0]
    assert event["state"] == "snapshot" and event["status"] == {"type": "start"} and event["run_id"] == "r1"
    assert event["created_at"] == "2026-11-26T12:00:00Z" and event["component"] == "Connector"
    # What the operator writes is valid against the status model (and so against the CRD).
    assert ConnectorStatus.model_validate({"history": history}).history[0].id == event["id"]


def test_no_event_without_a_transition() -> None:
    current = {"state": "realtime", "status": {"type": "heartbeat"}}
    first = next_history({}, current, NOW)
    assert first is not None
    assert next_history({**current, "history": first}, {"rows_applied": 10}, NOW) is None


def test_retry_attempts_are_distinct_events_and_source_failures_are_attributed() -> None:
    current: dict[str, object] = {"state": "realtime", "status": {"type": "heartbeat"}}
    current["history"] = next_history({}, current, NOW)
    patch = {
        "status": {"type": "retry", "attempt": 1, "reason": "connection reset"},
        "last_error": {"error": "SourceNotReady", "message": "m"},
    }
    history = next_history(current, patch, NOW)
    assert history is not None and len(history) == 2
    assert history[-1]["component"] == "Source"
    again = next_history({**current, "history": history}, {**patch, "status": {**patch["status"], "attempt": 2}}, NOW)
    assert again is not None and len(again) == 3


def test_history_is_bounded() -> None:
    current: dict[str, object] = {}
    for i in range(MAX_EVENTS + 10):
        history = next_history(current, {"state": "realtime", "status": {"type": "retry", "attempt": i}}, NOW)
        assert history is not None
        current = {"history": history}
    assert len(current["history"]) == MAX_EVENTS  # type: ignore[arg-type]
    assert current["history"][-1]["status"]["attempt"] == MAX_EVENTS + 9  # type: ignore[index]
