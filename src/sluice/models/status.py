"""What a connector is doing: the CR ``.status`` subresource and the REST views of it.

Two audiences, two shapes:

- `ConnectorStatus` is the Connector resource's status, written by the operator and the worker (merge patches
  of the status subresource). It follows Kubernetes conventions (``observedGeneration``, ``conditions``) and keeps
  every field flat and scalar where a printer column or ``kubectl get -o jsonpath`` reads it: ``state`` is a plain
  name, its sub-information is in ``state_detail``; ``source_kind``/``sink_kind`` exist because a printer column
  cannot compute which key of ``spec.source`` is set. Unknown fields are kept (``extra="allow"``, and
  ``x-kubernetes-preserve-unknown-fields`` in the CRD) so a newer worker can add detail without a CRD change.
- `ConnectorStatusView` is the reference REST API's ``status``: ``{state, status}`` in its key-named union form
  (``"realtime"`` → ``{"realtime": {"name": ...}}``), derived from `ConnectorStatus` by `ConnectorStatusView.of`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sluice.models.common import NonEmptyStr, OneOf, SluiceModel
from sluice.models.connector import Connector

__all__ = [
    "CommandName",
    "Condition",
    "ConditionStatus",
    "ConnectorCommand",
    "ConnectorList",
    "ConnectorResponse",
    "ConnectorStatus",
    "ConnectorStatusView",
    "ErrorInfo",
    "HistoryComponent",
    "HistoryEvent",
    "InitializeState",
    "NamedState",
    "ReasonStatus",
    "RetryStatus",
    "RunStatus",
    "RunStatusName",
    "StateDetail",
    "StateName",
    "StateObject",
    "StatusEvent",
    "StatusObject",
    "TablePhase",
    "TableProgress",
    "WorkerInfo",
]


class StatusModel(BaseModel):
    """Base of status parts: documented, Kubernetes-cased names on the wire, unknown fields kept."""

    model_config = ConfigDict(
        extra="allow",
        use_attribute_docstrings=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class StateName(StrEnum):
    """Lifecycle state of a connector (the REST API's ``state``)."""

    START = "start"
    INITIALIZE = "initialize"
    SNAPSHOT = "snapshot"
    REALTIME = "realtime"
    SCHEDULED = "scheduled"
    DISABLED = "disabled"
    COMPLETE = "complete"
    SHUTDOWN = "shutdown"


class RunStatusName(StrEnum):
    """Outcome of the latest step (the REST API's ``status``)."""

    START = "start"
    COMPLETE = "complete"
    FAILED = "failed"
    SKIPPED = "skipped"
    HEARTBEAT = "heartbeat"
    RETRY = "retry"


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A Kubernetes condition (Ready, Snapshotting, Streaming, Degraded, ...)."""

    type: NonEmptyStr
    """Condition type in CamelCase, e.g. Ready."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = ""
    """CamelCase reason, e.g. SlotLagging."""
    message: str = ""
    """Human-readable explanation with the action to take."""
    last_transition_time: datetime | None = Field(default=None, alias="lastTransitionTime")
    """When status last changed."""
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    """metadata.generation the condition was computed for."""


class StateDetail(StatusModel):
    """Sub-information of the current state."""

    commands: list[str] = Field(default_factory=list)
    """initialize: the setup commands being run (e.g. CreatePublication, CreateSlot)."""
    sub_state: str | None = None
    """initialize: the step within initialization."""
    name: str | None = None
    """snapshot/realtime: the table or stream being worked on."""


class RunStatus(StatusModel):
    """Outcome of the latest step, flat: ``type`` plus the reason/attempt of failed, skipped and retry."""

    type: RunStatusName
    """start, complete, failed, skipped, heartbeat or retry."""
    reason: str | None = None
    """failed/skipped/retry: why."""
    attempt: int | None = None
    """retry: the attempt number (1 = first retry)."""


class TablePhase(StrEnum):
    """Where one table is in its replication."""

    PENDING = "pending"
    SNAPSHOTTING = "snapshotting"
    SNAPSHOTTED = "snapshotted"
    STREAMING = "streaming"
    SKIPPED = "skipped"
    FAILED = "failed"


class TableProgress(StatusModel):
    """Progress of one table."""

    name: NonEmptyStr
    """Qualified source table name (schema.table)."""
    phase: TablePhase = TablePhase.PENDING
    """pending, snapshotting, snapshotted, streaming, skipped or failed."""
    rows_copied: int = 0
    """Rows copied by the snapshot so far."""
    chunks_done: int | None = None
    """Snapshot chunks finished."""
    chunks_total: int | None = None
    """Snapshot chunks in total."""
    error: str | None = None
    """Why the table failed or was skipped."""
    fix: str | None = None
    """What the user can do about the error."""


class ErrorInfo(StatusModel):
    """The latest error, with the fix the user can apply."""

    reason: str
    """CamelCase error class, e.g. SourceNotReady."""
    message: str
    """What went wrong (never contains a secret)."""
    fix: str | None = None
    """What to do about it."""
    time: datetime | None = None
    """When it happened."""


class WorkerInfo(StatusModel):
    """The worker pod serving this connector."""

    pod: str | None = None
    """Pod name."""
    started_at: datetime | None = None
    """When the worker process started."""


class StatusEvent(StatusModel):
    """One status transition as the resource stores it (flat, structural); the REST history shows it as a
    :class:`HistoryEvent`."""

    id: str
    """Event id."""
    created_at: datetime
    """When the operator observed the transition."""
    component: str = "Connector"
    """Part of the pipeline the event is about: Buffer, Connector, Source or Target."""
    run_id: str | None = None
    """Run the event belongs to."""
    state: StateName | None = None
    """Lifecycle state after the transition."""
    status: RunStatus | None = None
    """Outcome after the transition."""


class ConnectorStatus(StatusModel):
    """Observed state of a Connector (the status subresource)."""

    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    """metadata.generation of the spec this status describes."""
    conditions: list[Condition] = Field(
        default_factory=list,
        # One condition per type, merged by type under server-side apply (Kubernetes API conventions).
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Kubernetes conditions; Ready is True only when the worker replicates without a known problem."""
    source_kind: str | None = None
    """Kind of source (postgres, mysql, ...), for printer columns."""
    sink_kind: str | None = None
    """Kind of sink (postgres, kafka, ...), for printer columns."""
    state: StateName | None = None
    """Lifecycle state: start, initialize, snapshot, realtime, scheduled, disabled, complete or shutdown."""
    state_detail: StateDetail | None = None
    """Sub-information of the state."""
    status: RunStatus | None = None
    """Outcome of the latest step."""
    run_id: str | None = None
    """Id of the current run (changes on each (re)start of replication)."""
    created_at: datetime | None = None
    """When the connector was created."""
    tables: list[TableProgress] = Field(default_factory=list)
    """Per-table progress."""
    rows_copied: int | None = None
    """Rows copied by the snapshot, all tables."""
    rows_applied: int | None = None
    """Changes applied to the sink since the stream started."""
    lag_bytes: int | None = None
    """Log bytes between the source's current position and the position the sink holds (PostgreSQL: WAL)."""
    lag_seconds: float | None = None
    """Seconds between the newest source commit and the time the sink applied it (0 when idle and caught up)."""
    wal_retained_bytes: int | None = None
    """WAL the connector's replication slot keeps on the source (``pg_current_wal_lsn() - restart_lsn``), measured
    by the operator every 30 s while the connector is stopped and every 60 s while it runs (PostgreSQL sources)."""
    wal_budget_bytes: int | None = None
    """The WAL budget in effect (``spec.wal_budget``, else the operator's default): past it, SlotAtRisk is True
    while the connector is stopped or lagging."""
    position: str | None = None
    """The source position the sink holds, in the source's notation (PostgreSQL: an LSN such as 0/16B3748)."""
    delivery: str | None = None
    """The sink's delivery guarantee: exactly-once, or at-least-once (with idempotency keys where the sink has them)."""
    restarts: int | None = None
    """Worker restarts since the connector was created."""
    last_restart_time: datetime | None = None
    """When the worker last restarted."""
    last_error: ErrorInfo | None = None
    """The latest error."""
    worker: WorkerInfo | None = None
    """The worker pod."""
    history: list[StatusEvent] = Field(default_factory=list)
    """The latest status events, oldest first (kept by the operator, bounded; GET /api/v1/connector/history/{id})."""


# --- the REST view -----------------------------------------------------------------------------------------------


class InitializeState(SluiceModel):
    """Initialization in progress."""

    commands: list[str] = Field(default_factory=list)
    """Setup commands being run."""
    sub_state: str | None = None
    """Step within initialization."""


class NamedState(SluiceModel):
    """A state working on a named table or stream."""

    name: str | None = None
    """Table or stream name."""


class StateObject(OneOf):
    """A state with details: exactly one of initialize, snapshot, realtime."""

    one_of_label = "state"

    initialize: InitializeState | None = None
    """Setting up (publication, slot, tables)."""
    snapshot: NamedState | None = None
    """Copying the snapshot."""
    realtime: NamedState | None = None
    """Streaming changes."""


class ReasonStatus(SluiceModel):
    """An outcome with a reason."""

    reason: str
    """Why."""


class RetryStatus(SluiceModel):
    """A retry after a transient failure."""

    attempt: int
    """Attempt number."""
    reason: str
    """Why the previous attempt failed."""


class StatusObject(OneOf):
    """An outcome with details: exactly one of failed, skipped, retry."""

    one_of_label = "status"

    failed: ReasonStatus | None = None
    """The step failed."""
    skipped: ReasonStatus | None = None
    """The step was skipped."""
    retry: RetryStatus | None = None
    """The step is being retried."""


SimpleState = Literal["start", "initialize", "snapshot", "realtime", "scheduled", "disabled", "complete", "shutdown"]
SimpleStatus = Literal["start", "complete", "heartbeat"]


class ConnectorStatusView(SluiceModel):
    """Status as the REST API shows it: ``{state, status}``; empty when nothing has been reported yet."""

    state: SimpleState | StateObject | None = None
    """Lifecycle state: a name, or a one-key object for states with details."""
    status: SimpleStatus | StatusObject | None = None
    """Outcome of the latest step: a name, or a one-key object for failed, skipped and retry."""

    @classmethod
    def of(cls, status: ConnectorStatus | None) -> ConnectorStatusView:
        """Derive the REST view from the resource status."""
        if status is None:
            return cls()
        state: Any = None
        if status.state is not None:
            detail = status.state_detail or StateDetail()
            if status.state is StateName.INITIALIZE and status.state_detail is not None:
                state = StateObject(initialize=InitializeState(commands=detail.commands, sub_state=detail.sub_state))
            elif status.state in (StateName.SNAPSHOT, StateName.REALTIME) and detail.name is not None:
                state = StateObject.model_validate({status.state.value: {"name": detail.name}})
            else:
                state = status.state.value
        run: Any = None
        if status.status is not None:
            kind = status.status.type
            if kind is RunStatusName.RETRY:
                run = StatusObject(
                    retry=RetryStatus(attempt=status.status.attempt or 0, reason=status.status.reason or "")
                )
            elif kind in (RunStatusName.FAILED, RunStatusName.SKIPPED):
                run = StatusObject.model_validate({kind.value: {"reason": status.status.reason or ""}})
            else:
                run = kind.value
        return cls(state=state, status=run)


class ConnectorResponse(SluiceModel):
    """A connector with its status, as returned by create and get. Secret values are never included."""

    connector: Connector
    """The connector; credentials appear only as *_secret_ref references."""
    status: ConnectorStatusView = Field(default_factory=ConnectorStatusView)
    """Current status."""
    run_id: str | None = None
    """Id of the current run."""
    created_at: str | None = None
    """Creation time (RFC 3339)."""


class ConnectorList(SluiceModel):
    """All connectors visible to the caller."""

    connectors: list[ConnectorResponse] = Field(default_factory=list)
    """The connectors."""


class CommandName(StrEnum):
    """A command for a connector (``ReIntialize`` is spelled as in the reference API)."""

    START = "Start"
    STOP = "Stop"
    RESTART = "Restart"
    DELETE = "Delete"
    FORCE_DELETE = "ForceDelete"
    REINITIALIZE = "ReIntialize"


class ConnectorCommand(SluiceModel):
    """Body of POST /api/v1/connector/command/{id}."""

    command: CommandName
    """Start, Stop, Restart, Delete, ForceDelete (delete even if the source is unreachable; Sluice's slot and
    publication may be left behind) or ReIntialize (drop progress and snapshot again)."""


class HistoryComponent(StrEnum):
    """Part of the pipeline an event is about."""

    BUFFER = "Buffer"
    CONNECTOR = "Connector"
    SOURCE = "Source"
    TARGET = "Target"


class HistoryEvent(SluiceModel):
    """One status event of a connector (GET /api/v1/connector/history/{id})."""

    id: str
    """Event id."""
    connector_id: str
    """Connector the event belongs to."""
    run_id: str | None = None
    """Run the event belongs to."""
    created_at: str
    """When the event happened (RFC 3339)."""
    component: HistoryComponent
    """Buffer, Connector, Source or Target."""
    status: SimpleStatus | StatusObject
    """The outcome reported."""
    state: SimpleState | StateObject | None = None
    """Lifecycle state at the time of the event (a Sluice addition to the reference's event)."""
