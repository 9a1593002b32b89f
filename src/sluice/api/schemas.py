"""Shapes of the API's own bodies (errors, command results, history) and the OpenAPI components of all bodies.

Connector bodies are `sluice.models` classes; the components are generated from them in one pass so every
``$ref`` in the document resolves and one-of objects keep their ``oneOf``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from sluice.api.services.validation import CatalogResult, ValidationResult
from sluice.models import Buffer, ConnectorBody, Sink, Source
from sluice.models.status import ConnectorCommand, ConnectorList, ConnectorResponse, HistoryEvent

__all__ = [
    "REF",
    "CommandResult",
    "DryRunResult",
    "ErrorBody",
    "HistoryList",
    "body_doc",
    "component_schemas",
    "json_response",
    "one_of_response",
]

REF = "#/components/schemas/{model}"


class _Doc(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class ErrorDetailBody(_Doc):
    """One problem at one place."""

    loc: list[str | int]
    """Path of the field, e.g. ["source", "postgres", "connection", "port"]."""
    field: str
    """The same path, dotted: source.postgres.connection.port."""
    msg: str
    """What is wrong."""
    fix: str | None = None
    """What to do about it."""


class ErrorBody(_Doc):
    """Every error response."""

    error: str
    """CamelCase reason (InvalidSpec, NotFound, Forbidden, KubernetesUnavailable, ...)."""
    message: str
    """What went wrong, for a person."""
    fix: str | None = None
    """What to do about it."""
    details: list[ErrorDetailBody] = Field(default_factory=list)
    """Field-level problems (validation errors)."""


class CommandResult(_Doc):
    """A command that was recorded on the connector (or a delete that was done)."""

    id: str
    """Connector id."""
    command: str
    """The command."""
    command_id: str
    """Unique id of this request, also in the annotation sluice.dev/command-id."""
    requested_at: str
    """When the command was recorded (RFC 3339), also in sluice.dev/command-requested-at."""
    deleted: bool = False
    """True for Delete and ForceDelete: deletion has started (the operator finishes it)."""
    connector: ConnectorResponse | None = None
    """The connector after the command was recorded (absent after a delete)."""


class DryRunResult(ConnectorResponse):
    """What a request with ``?dry_run=true`` would have produced; nothing was written."""

    dry_run: Literal[True]
    """Always true: the apiserver validated and admitted the connector (and its credentials Secret) in a
    server-side dry run and stored nothing."""
    created: bool
    """Whether the request would have created the connector (false: replaced or patched it)."""


class HistoryList(_Doc):
    """Status events of a connector, oldest first; empty until the operator records any."""

    events: list[HistoryEvent] = Field(default_factory=list)
    """The events."""


_MODELS: list[type[BaseModel]] = [
    ConnectorBody,
    ConnectorResponse,
    ConnectorList,
    ConnectorCommand,
    CommandResult,
    DryRunResult,
    HistoryList,
    ErrorBody,
    Source,
    Sink,
    Buffer,
    ValidationResult,
    CatalogResult,
]


def component_schemas() -> dict[str, Any]:
    """JSON schemas of every body, keyed by component name."""
    _, top = models_json_schema([(m, "validation") for m in _MODELS], ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def body_doc(model: type[BaseModel] | None, media_types: tuple[str, ...] = ("application/json",)) -> dict[str, Any]:
    """``openapi_extra`` documenting a request body that the handler reads itself."""
    schema: dict[str, Any] = (
        _ref(model)
        if model is not None
        else {
            "type": "object",
            "description": "RFC 7396 JSON merge patch of the connector: members replace, null deletes, objects "
            "merge. The source/sink kind and the connection's host, port and database cannot change.",
        }
    )
    return {"requestBody": {"required": True, "content": {m: {"schema": schema} for m in media_types}}}


def json_response(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def one_of_response(models: list[type[BaseModel]], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"oneOf": [_ref(m) for m in models]}}},
    }


ERRORS: dict[int | str, dict[str, Any]] = {
    status: json_response(ErrorBody, text)
    for status, text in {
        400: "Malformed JSON.",
        401: "No or invalid bearer token.",
        403: "Kubernetes RBAC does not allow this action on connectors in the namespace.",
        404: "No such connector.",
        409: "Already exists, or changed concurrently.",
        413: "Body larger than the limit.",
        415: "Content-Type not accepted.",
        422: "Invalid connector or parameters (field paths in details).",
        503: "The Kubernetes API server cannot be reached.",
    }.items()
}
