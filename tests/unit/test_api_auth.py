"""Authorizer logic: header parsing, 401/403 messages, and what is cached (with a stub review client)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from sluice.api.auth import Authorizer, bearer_token
from sluice.errors import AuthenticationError, AuthorizationError
from sluice.k8s import AccessDecision, UserInfo


@dataclass
class StubReviews:
    """Stands in for the apiserver's reviews: a token table and a set of allowed (user, verb, namespace)."""

    users: dict[str, UserInfo]
    allowed: set[tuple[str, str, str]]
    token_calls: int = 0
    access_calls: list[tuple[str, str, str]] = field(default_factory=list)

    def review_token(self, token: str) -> UserInfo | None:
        self.token_calls += 1
        return self.users.get(token)

    def review_access(
        self, user: UserInfo, *, verb: str, group: str, resource: str, namespace: str, name: str | None = None
    ) -> AccessDecision:
        assert (group, resource) == ("sluice.dev", "connectors")
        self.access_calls.append((user.username, verb, namespace))
        if (user.username, verb, namespace) in self.allowed:
            return AccessDecision(True)
        return AccessDecision(False, "no RBAC policy matched")


SA = UserInfo(username="system:serviceaccount:team-a:ci", groups=("system:serviceaccounts",))


def make(ttl: float = 60.0) -> tuple[Authorizer, StubReviews]:
    stub = StubReviews(users={"good": SA}, allowed={(SA.username, "create", "team-a")})
    return Authorizer(stub, cache_seconds=ttl), stub  # type: ignore[arg-type]


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwdw==", "Bearer", "Bearer   "])
def test_missing_or_malformed_header_is_401(header: str | None) -> None:
    with pytest.raises(AuthenticationError) as info:
        bearer_token(header)
    assert info.value.http_status == 401


def test_bearer_token_is_extracted() -> None:
    assert bearer_token("bearer abc.def") == "abc.def"


def test_token_not_accepted_is_401_with_a_fix() -> None:
    auth, _ = make()
    with pytest.raises(AuthenticationError) as info:
        auth.authorize("Bearer bad", "create", "team-a")
    assert "kubectl create token" in info.value.fix


def test_denied_is_403_naming_verb_resource_namespace_and_the_fix() -> None:
    auth, _ = make()
    with pytest.raises(AuthorizationError) as info:
        auth.authorize("Bearer good", "delete", "team-a")
    err = info.value
    assert err.http_status == 403
    assert "delete" in err.message
    assert "connectors.sluice.dev" in err.message
    assert '"team-a"' in err.message
    assert "--serviceaccount=team-a:ci" in err.fix
    assert "--verb=delete" in err.fix


def test_allowed_returns_the_user_and_is_cached() -> None:
    auth, stub = make()
    assert auth.authorize("Bearer good", "create", "team-a") == SA
    assert auth.authorize("Bearer good", "create", "team-a") == SA
    assert stub.token_calls == 1
    assert len(stub.access_calls) == 1


def test_denials_are_not_cached() -> None:
    auth, stub = make()
    for _ in range(2):
        with pytest.raises(AuthorizationError):
            auth.authorize("Bearer good", "list", "team-a")
    assert len(stub.access_calls) == 2
    stub.allowed.add((SA.username, "list", "team-a"))
    assert auth.authorize("Bearer good", "list", "team-a") == SA


def test_cache_off_asks_every_time() -> None:
    auth, stub = make(ttl=0)
    auth.authorize("Bearer good", "create", "team-a")
    auth.authorize("Bearer good", "create", "team-a")
    assert stub.token_calls == 2
    assert len(stub.access_calls) == 2


def test_disabled_auth_lets_anything_through() -> None:
    stub = StubReviews(users={}, allowed=set())
    auth = Authorizer(stub, enabled=False)  # type: ignore[arg-type]
    assert auth.authorize(None, "delete", "x").username == "system:sluice:no-auth"
    assert stub.token_calls == 0
