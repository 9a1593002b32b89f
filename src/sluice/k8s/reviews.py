"""TokenReview and SubjectAccessReview: let Kubernetes decide who a caller is and what they may do.

The API server of Sluice has no users of its own. It asks the apiserver (with its own credentials, which need
``create`` on ``tokenreviews`` and ``subjectaccessreviews``) whether a bearer token is valid and whether that
user may perform a verb on ``connectors.sluice.dev`` in a namespace, so RBAC Roles are the only access policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubernetes import client

from sluice.k8s.client import KubeContext
from sluice.k8s.errors import kube_errors

__all__ = ["AccessDecision", "ReviewClient", "UserInfo"]


@dataclass(frozen=True)
class UserInfo:
    """An authenticated caller, as the apiserver's TokenReview reported it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    reason: str = ""


class ReviewClient:
    def __init__(self, ctx: KubeContext) -> None:
        self._ctx = ctx

    def review_token(self, token: str) -> UserInfo | None:
        """The user a token belongs to, or ``None`` when the apiserver does not accept the token."""
        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
        with kube_errors("a TokenReview", self._ctx):
            out = client.AuthenticationV1Api(self._ctx.api_client).create_token_review(
                body, _request_timeout=self._ctx.request_timeout
            )
        status = out.status
        if status is None or not status.authenticated or status.user is None:
            return None
        user = status.user
        return UserInfo(
            username=user.username or "",
            uid=user.uid or "",
            groups=tuple(user.groups or ()),
            extra={k: list(v) for k, v in (user.extra or {}).items()},
        )

    def review_access(
        self, user: UserInfo, *, verb: str, group: str, resource: str, namespace: str, name: str | None = None
    ) -> AccessDecision:
        attrs = client.V1ResourceAttributes(verb=verb, group=group, resource=resource, namespace=namespace, name=name)
        spec = client.V1SubjectAccessReviewSpec(
            user=user.username,
            uid=user.uid or None,
            groups=list(user.groups) or None,
            extra=user.extra or None,
            resource_attributes=attrs,
        )
        with kube_errors("a SubjectAccessReview", self._ctx):
            out = client.AuthorizationV1Api(self._ctx.api_client).create_subject_access_review(
                client.V1SubjectAccessReview(spec=spec), _request_timeout=self._ctx.request_timeout
            )
        status = out.status
        allowed = bool(status and status.allowed and not status.denied)
        reason = (status.reason or status.evaluation_error or "") if status else ""
        return AccessDecision(allowed=allowed, reason=reason)

    def ping(self) -> str:
        """The apiserver's version string; raises ``KubernetesUnavailableError`` when it cannot be reached."""
        with kube_errors("the version endpoint", self._ctx):
            out = client.VersionApi(self._ctx.api_client).get_code(_request_timeout=self._ctx.request_timeout)
        return str(out.git_version)
