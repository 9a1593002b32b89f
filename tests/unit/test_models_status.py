"""Status models: the CR status written by operator and worker, and the REST views derived from it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sluice.models import Connector
from sluice.models.status import (
    ConnectorCommand,
    ConnectorList,
    ConnectorResponse,
    ConnectorStatus,
    ConnectorStatusView,
    HistoryEvent,
)
from tests.unit.test_models import body


def test_status_uses_kubernetes_names_and_keeps_unknown_fields() -> None:
    status = ConnectorStatus.model_validate(
        {
            "observedGeneration": 4,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Streaming", "lastTransitionTime": "2026-01-02T03:04:05Z"}
            ],
            "state": "realtime",
            "lag_seconds": 0.25,
            "tables": [{"name": "public.orders", "phase": "streaming", "rows_copied": 10, "newer_worker_field": 1}],
            "something_new": {"a": 1},
        }
    )
    assert status.observed_generation == 4
    assert status.conditions[0].last_transition_time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    dumped = status.model_dump(mode="json", exclude_none=True)
    assert dumped["observedGeneration"] == 4
    assert dumped["conditions"][0]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    assert dumped["something_new"] == {"a": 1}
    assert dumped["tables"][0]["newer_worker_field"] == 1
    # Python names work too, for writers.
    assert ConnectorStatus(observed_generation=2).model_dump(exclude_none=True) == {
        "observedGeneration": 2,
        "conditions": [],
        "tables": [],
        "history": [],
    }


def test_status_refuses_unknown_state_names() -> None:
    with pytest.raises(ValidationError):
        ConnectorStatus.model_validate({"state": "running"})
    with pytest.raises(ValidationError):
        ConnectorStatus.model_validate({"conditions": [{"type": "Ready", "status": "yes"}]})


@pytest.mark.parametrize(
    ("status", "view"),
    [
        ({}, {}),
        ({"state": "start", "status": {"type": "start"}}, {"state": "start", "status": "start"}),
        (
            {"state": "initialize", "state_detail": {"commands": ["CreateSlot"], "sub_state": "slot"}},
            {"state": {"initialize": {"commands": ["CreateSlot"], "sub_state": "slot"}}},
        ),
        ({"state": "snapshot", "state_detail": {"name": "public.t"}}, {"state": {"snapshot": {"name": "public.t"}}}),
        ({"state": "realtime"}, {"state": "realtime"}),
        # A stopped worker's last report (shutdown/complete) under the operator's "disabled".
        ({"state": "disabled", "status": {"type": "complete"}}, {"state": "disabled", "status": "complete"}),
        ({"status": {"type": "failed", "reason": "SlotMissing"}}, {"status": {"failed": {"reason": "SlotMissing"}}}),
        ({"status": {"type": "skipped", "reason": "Disabled"}}, {"status": {"skipped": {"reason": "Disabled"}}}),
        (
            # The worker's retry: the attempt and its transient error's message (sluice.worker.k8s_status).
            {"status": {"type": "retry", "attempt": 3, "reason": "connection to the source was reset"}},
            {"status": {"retry": {"attempt": 3, "reason": "connection to the source was reset"}}},
        ),
    ],
)
def test_rest_view_of_status(status: dict[str, object], view: dict[str, object]) -> None:
    got = ConnectorStatusView.of(ConnectorStatus.model_validate(status))
    assert got.model_dump(mode="json", exclude_none=True) == view


def test_rest_view_of_missing_status_is_empty() -> None:
    assert ConnectorStatusView.of(None).model_dump(exclude_none=True) == {}


def test_response_never_contains_a_secret_value() -> None:
    data = body()
    data["source"]["postgres"]["connection"]["password"] = "hunter2"
    response = ConnectorResponse(
        connector=Connector.model_validate(data), run_id="r1", created_at="2026-01-01T00:00:00Z"
    )
    text = response.model_dump_json()
    assert "hunter2" not in text
    listing = ConnectorList(connectors=[response])
    assert "hunter2" not in listing.model_dump_json()
    assert ConnectorResponse.model_validate_json(text).status == ConnectorStatusView()


@pytest.mark.parametrize("command", ["Start", "Stop", "Restart", "Delete", "ForceDelete", "ReIntialize"])
def test_commands_as_spelled_by_the_reference(command: str) -> None:
    assert ConnectorCommand.model_validate({"command": command}).command.value == command


def test_unknown_command_lists_the_valid_ones() -> None:
    with pytest.raises(ValidationError) as exc:
        ConnectorCommand.model_validate({"command": "Reinitialize"})
    assert "'ReIntialize'" in exc.value.errors()[0]["msg"]


def test_history_event() -> None:
    event = HistoryEvent.model_validate(
        {
            "id": "e1",
            "connector_id": "orders",
            "run_id": "r1",
            "created_at": "2026-01-01T00:00:00Z",
            "component": "Source",
            "status": {"retry": {"attempt": 1, "reason": "ConnectionReset"}},
        }
    )
    assert event.component.value == "Source"
    simple = HistoryEvent.model_validate({**event.model_dump(mode="json"), "status": "complete"})
    assert simple.status == "complete"
    with pytest.raises(ValidationError):
        HistoryEvent.model_validate({**event.model_dump(mode="json"), "component": "Sink"})
