"""Who is calling, and may they do this? Kubernetes decides.

The caller's bearer token is checked with a TokenReview and each action with a SubjectAccessReview for
``<verb> connectors.sluice.dev`` in the target namespace, so the same RBAC Roles that govern ``kubectl`` govern
the REST API. A connector that references a Secret (``*_secret_ref``) also needs ``get`` on that Secret for the
caller (`Authorizer.may_read_secret`, not cached). The API then acts with its own ServiceAccount (it also writes
the credentials Secret, which the caller need not be allowed to touch).

Positive answers are cached briefly (``auth_cache_seconds``) to keep TokenReview/SAR round trips off the hot
path; denials are not cached.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass

from sluice.errors import AuthenticationError, AuthorizationError
from sluice.k8s import GROUP, PLURAL, ReviewClient, UserInfo

__all__ = ["ANONYMOUS_DEV", "Authorizer", "bearer_token", "secret_forbidden"]

log = logging.getLogger(__name__)

#: The identity recorded for requests in ``--no-auth`` mode.
ANONYMOUS_DEV = UserInfo(username="system:sluice:no-auth")

_RESOURCE = f"{PLURAL}.{GROUP}"


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; 401 when absent or another scheme."""
    if not authorization:
        raise AuthenticationError("no credentials: the request has no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("the Authorization header is not of the form 'Bearer <token>'")
    return token


def _forbidden(user: UserInfo, verb: str, namespace: str, reason: str) -> AuthorizationError:
    subject = user.username
    if subject.startswith("system:serviceaccount:"):
        ns, _, name = subject.removeprefix("system:serviceaccount:").partition(":")
        binding = f"--serviceaccount={ns}:{name}"
    else:
        binding = f"--user={subject}"
    why = f" ({reason})" if reason else ""
    return AuthorizationError(
        f'user "{subject}" may not {verb} {_RESOURCE} in namespace "{namespace}"{why}',
        fix=(
            f"Ask a cluster admin to grant it, e.g. 'kubectl -n {namespace} create role sluice-connectors "
            f"--verb={verb} --resource={_RESOURCE}' and 'kubectl -n {namespace} create rolebinding "
            f"sluice-connectors --role=sluice-connectors {binding}'."
        ),
    )


def secret_forbidden(user: UserInfo, namespace: str, name: str, reason: str) -> AuthorizationError:
    """403 for a connector that references a Secret its caller may not read (`sluice.models.secret_access`)."""
    why = f" ({reason})" if reason else ""
    return AuthorizationError(
        f'user "{user.username}" may not get Secret "{name}" in namespace "{namespace}"{why}, so a connector it '
        "writes may not reference it (the connector's worker would read it)",
        fix=f"Reference a Secret you may read, send the credentials inline (they are stored in a Secret of the "
        f'connector\'s own), or ask a namespace admin for `get` on Secret "{name}".',
    )


@dataclass
class _Entry:
    value: UserInfo
    expires: float


class Authorizer:
    """Authenticate a bearer token and authorize one verb on connectors in one namespace."""

    def __init__(self, reviews: ReviewClient, *, enabled: bool = True, cache_seconds: float = 5.0) -> None:
        self._reviews = reviews
        self.enabled = enabled
        self._ttl = cache_seconds
        self._users: dict[str, _Entry] = {}
        self._allowed: dict[tuple[str, str, str, str], float] = {}
        self._lock = threading.Lock()

    def _cached_user(self, key: str) -> UserInfo | None:
        with self._lock:
            entry = self._users.get(key)
            if entry is not None and entry.expires > time.monotonic():
                return entry.value
        return None

    def authenticate(self, authorization: str | None) -> UserInfo:
        if not self.enabled:
            return ANONYMOUS_DEV
        token = bearer_token(authorization)
        key = hashlib.sha256(token.encode()).hexdigest()
        user = self._cached_user(key) if self._ttl else None
        if user is None:
            user = self._reviews.review_token(token)
            if user is None:
                raise AuthenticationError(
                    "the bearer token was not accepted by Kubernetes (invalid, expired, or for another cluster)",
                    fix="Get a fresh token, e.g. 'kubectl create token <serviceaccount>', and send it as "
                    "'Authorization: Bearer <token>'.",
                )
            if self._ttl:
                with self._lock:
                    if len(self._users) > 10_000:
                        self._users.clear()
                    self._users[key] = _Entry(user, time.monotonic() + self._ttl)
        return user

    def authorize(self, authorization: str | None, verb: str, namespace: str, name: str | None = None) -> UserInfo:
        """The caller, if they may ``verb`` connectors (``name`` if given) in ``namespace``; else 401/403."""
        user = self.authenticate(authorization)
        if not self.enabled:
            return user
        key = (
            hashlib.sha256(repr((user.username, user.uid, user.groups)).encode()).hexdigest(),
            verb,
            namespace,
            name or "",
        )
        now = time.monotonic()
        if self._ttl:
            with self._lock:
                if self._allowed.get(key, 0.0) > now:
                    return user
        decision = self._reviews.review_access(
            user, verb=verb, group=GROUP, resource=PLURAL, namespace=namespace, name=name
        )
        if not decision.allowed:
            log.info('denied: user "%s" %s %s in namespace "%s"', user.username, verb, _RESOURCE, namespace)
            raise _forbidden(user, verb, namespace, decision.reason)
        if self._ttl:
            with self._lock:
                if len(self._allowed) > 10_000:
                    self._allowed.clear()
                self._allowed[key] = now + self._ttl
        return user

    def may_read_secret(self, authorization: str | None, namespace: str, name: str) -> None:
        """403 unless the caller may ``get`` Secret ``name`` in ``namespace`` (a SubjectAccessReview for the
        caller); a connector may reference only Secrets its writer may read. No-op in no-auth mode."""
        user = self.authenticate(authorization)
        if not self.enabled:
            return
        decision = self._reviews.review_access(
            user, verb="get", group="", resource="secrets", namespace=namespace, name=name
        )
        if not decision.allowed:
            log.info('denied: user "%s" may not get Secret "%s" in namespace "%s"', user.username, name, namespace)
            raise secret_forbidden(user, namespace, name, decision.reason)
