"""One error hierarchy for every role of Sluice.

Each class says three things once, so that the API, the operator and the worker never disagree:
whether retrying can help (``retryable``), which HTTP status the REST API answers with (``http_status``),
and a one-line ``fix`` telling the user what to do. The operator maps ``retryable`` to kopf's
TemporaryError/PermanentError; the API maps ``http_status`` to its JSON error body; the worker puts
``reason`` and ``fix`` into a status condition.

::

    SluiceError                      (500, not retryable)
    ├── ConfigError                  (422) the connector spec is wrong; the user must change it
    │   ├── ImmutableFieldError      (422) a field that cannot change after creation was changed
    │   └── SourceSetupError         (422) the source lacks something replication needs (wal_level, privilege...)
    ├── RequestError                 (400) the HTTP request itself is malformed (bad JSON, wrong type)
    │   ├── PayloadTooLargeError     (413)
    │   └── UnsupportedMediaTypeError(415)
    ├── AuthenticationError          (401) no or invalid bearer token
    ├── AuthorizationError           (403) RBAC refused the verb on connectors in that namespace
    ├── NotFoundError                (404)
    ├── ConflictError                (409) already exists / changed concurrently
    ├── TransientError               (503, retryable) try again: network blips, restarts, failovers
    │   └── KubernetesUnavailableError (503) the apiserver cannot be reached
    └── ReplicationError             (500) the replication engine hit something it cannot go past
        └── SchemaChangeError        (409) a source schema change the migration_strategy does not allow
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "ConfigError",
    "ConflictError",
    "ErrorDetail",
    "ImmutableFieldError",
    "KubernetesUnavailableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ReplicationError",
    "RequestError",
    "SchemaChangeError",
    "SluiceError",
    "SourceSetupError",
    "TransientError",
    "UnsupportedMediaTypeError",
]


@dataclass(frozen=True)
class ErrorDetail:
    """One problem at one place: ``loc`` is the field path (``["source", "postgres", "connection", "port"]``)."""

    loc: list[str | int]
    msg: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loc": list(self.loc), "field": _dotted(self.loc), "msg": self.msg}
        if self.fix:
            out["fix"] = self.fix
        return out


def _dotted(loc: list[str | int]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts)


class SluiceError(Exception):
    """Base of every error Sluice raises on purpose. Never put a secret value in a message."""

    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    #: CamelCase reason for Kubernetes conditions and events.
    reason: ClassVar[str] = "InternalError"
    default_fix: ClassVar[str] = ""

    def __init__(self, message: str, *, fix: str = "", details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix or self.default_fix
        self.details: list[ErrorDetail] = list(details or [])

    def as_dict(self) -> dict[str, Any]:
        """The JSON error body of the API and the ``last_error`` of a status."""
        body: dict[str, Any] = {"error": self.reason, "message": self.message}
        if self.fix:
            body["fix"] = self.fix
        if self.details:
            body["details"] = [d.as_dict() for d in self.details]
        return body


class ConfigError(SluiceError):
    http_status = 422
    reason = "InvalidSpec"
    default_fix = "Correct the connector spec at the field named and apply it again."


class ImmutableFieldError(ConfigError):
    reason = "ImmutableField"
    default_fix = "Create a new connector instead of changing this field."


class SourceSetupError(ConfigError):
    reason = "SourceNotReady"


class RequestError(SluiceError):
    http_status = 400
    reason = "BadRequest"


class PayloadTooLargeError(RequestError):
    http_status = 413
    reason = "PayloadTooLarge"


class UnsupportedMediaTypeError(RequestError):
    http_status = 415
    reason = "UnsupportedMediaType"
    default_fix = "Send the body as JSON with the header 'Content-Type: application/json'."


class AuthenticationError(SluiceError):
    http_status = 401
    reason = "Unauthorized"
    default_fix = "Send a valid Kubernetes bearer token: 'Authorization: Bearer <token>'."


class AuthorizationError(SluiceError):
    http_status = 403
    reason = "Forbidden"
    default_fix = "Ask a cluster admin for a Role granting this verb on connectors.sluice.dev in the namespace."


class NotFoundError(SluiceError):
    http_status = 404
    reason = "NotFound"


class ConflictError(SluiceError):
    http_status = 409
    reason = "Conflict"


class TransientError(SluiceError):
    http_status = 503
    retryable = True
    reason = "Transient"
    default_fix = "Nothing to do if it clears by itself; otherwise check the network path named in the message."


class KubernetesUnavailableError(TransientError):
    reason = "KubernetesUnavailable"
    default_fix = "Check that the Kubernetes API server is running and reachable, then retry."


class ReplicationError(SluiceError):
    reason = "ReplicationFailed"


class SchemaChangeError(ReplicationError):
    http_status = 409
    reason = "SchemaChangeNotAllowed"
    default_fix = (
        "Add the change kind to sink.<kind>.migration_strategy.allowed, or alter the sink table by hand, "
        "then restart the connector."
    )
