"""Turn what the ``kubernetes`` client raises into ``sluice.errors`` classes, in one place.

Every call to the Kubernetes API from product code goes through :func:`kube_errors`, so callers only ever see
Sluice errors: a handler can answer with the right HTTP status and the operator with the right retry decision
without knowing about ``ApiException`` or urllib3. The apiserver's own explanation (``Status.message`` and
``Status.details.causes``) is kept, because it usually names the field and the rule.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import urllib3.exceptions
from kubernetes.client.exceptions import ApiException, OpenApiException

from sluice.errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigError,
    ConflictError,
    ErrorDetail,
    KubernetesUnavailableError,
    NotFoundError,
    SluiceError,
    TransientError,
)

__all__ = ["kube_errors", "translate_api_exception", "translate_connection_error"]

log = logging.getLogger(__name__)


class _HasHost(Protocol):
    @property
    def host(self) -> str: ...


def _status_body(exc: ApiException) -> dict[str, Any]:
    """The apiserver's ``Status`` object, or ``{}`` when the body is not one (a proxy's HTML page, say)."""
    raw = exc.body
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str) or not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _causes(status: dict[str, Any]) -> list[ErrorDetail]:
    """``details.causes`` as field-path details; ``spec.source.postgres.connection.port`` → loc list."""
    details = status.get("details") or {}
    out: list[ErrorDetail] = []
    for cause in details.get("causes") or []:
        if not isinstance(cause, dict):
            continue
        field = str(cause.get("field") or "")
        loc: list[str | int] = []
        for part in field.replace("[", ".[").split("."):
            if not part:
                continue
            if part.startswith("[") and part.endswith("]") and part[1:-1].isdigit():
                loc.append(int(part[1:-1]))
            else:
                loc.append(part)
        if loc and loc[0] == "spec":
            # The REST body is the spec: report paths the way the user wrote them.
            loc = loc[1:]
        out.append(ErrorDetail(loc=loc, msg=str(cause.get("message") or cause.get("reason") or "invalid")))
    return out


def translate_api_exception(exc: ApiException, what: str) -> SluiceError:
    """Map one apiserver answer to the Sluice error with the same meaning.

    ``what`` names the object acted on (``connector "c-1" in namespace "default"``) so messages say which.
    """
    status = _status_body(exc)
    code = int(exc.status or 0)
    message = str(status.get("message") or exc.reason or "no message")
    if code == 404:
        details = status.get("details") or {}
        if details.get("kind") == "namespaces":
            return NotFoundError(
                f'namespace "{details.get("name", "")}" does not exist',
                fix="Create the namespace first, or pass ?namespace= with an existing one.",
            )
        return NotFoundError(f"{what} not found", fix="Check the id and the namespace; list connectors to see them.")
    if code == 409:
        reason = status.get("reason")
        if reason == "AlreadyExists":
            return ConflictError(
                f"{what} already exists",
                fix="Choose another id, or use POST /api/v1/connectors/{id} to replace it.",
            )
        return ConflictError(
            f"{what} was changed by someone else meanwhile: {message}",
            fix="Read it again and retry your change.",
        )
    if code in (400, 422):
        return ConfigError(f"the Kubernetes API server rejected {what}: {message}", details=_causes(status))
    if code == 401:
        return AuthenticationError(
            f"the Kubernetes API server did not accept Sluice's own credentials while acting on {what}",
            fix="Check the Sluice API's kubeconfig or ServiceAccount token.",
        )
    if code == 403:
        return AuthorizationError(
            f"the Kubernetes API server refused Sluice's own account while acting on {what}: {message}",
            fix="Grant the Sluice API's ServiceAccount the rights in manifests/ (its Role), then retry.",
        )
    if code == 429 or code >= 500 or code == 0:
        answered = code or "nothing"
        return KubernetesUnavailableError(f"the Kubernetes API server answered {answered} for {what}: {message}")
    return SluiceError(f"unexpected answer {code} from the Kubernetes API server for {what}: {message}")


def translate_connection_error(exc: BaseException, host: str) -> TransientError:
    """Connection refused, DNS failure, TLS failure or timeout: the apiserver cannot be reached right now."""
    reason = type(exc).__name__
    inner = getattr(exc, "reason", None)
    if inner is not None:
        reason = f"{reason} ({type(inner).__name__})"
    return KubernetesUnavailableError(f"cannot reach the Kubernetes API server at {host}: {reason}")


@contextmanager
def kube_errors(what: str, ctx: _HasHost) -> Iterator[None]:
    """Run a block of Kubernetes calls; anything the client raises leaves as a ``SluiceError``.

    ``ctx.host`` is read only on failure: the client may have been built inside the block.
    """
    try:
        yield
    except ApiException as exc:
        err = translate_api_exception(exc, what)
        log.debug("kubernetes api %s for %s -> %s", exc.status, what, err.reason)
        raise err from exc
    except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
        raise translate_connection_error(exc, ctx.host) from exc
    except OpenApiException as exc:  # client-side validation of a value we built: a bug, but say what
        raise SluiceError(f"invalid request to the Kubernetes API for {what}: {exc}") from exc
