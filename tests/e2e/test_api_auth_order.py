"""Authentication and authorization come before validation (`sluice.api.access`): a caller without a token, with
a bad one, or without rights is refused (401/403, JSON) whatever it sent; one with rights is told what is wrong.

Found by the fuzz run without rights (tests/e2e/test_api_fuzz.py): an invalid id, namespace or query parameter
and a malformed body were answered 422/400 before the caller was refused.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.e2e

Headers = dict[str, str]
# (method, path, query, raw body): each is malformed in a different place.
MALFORMED = [
    ("get", "/api/v1/connectors/Not_A_Label", {}, None),
    ("delete", "/api/v1/connectors/" + "x" * 70, {}, None),
    ("post", "/api/v1/connectors", {"dry_run": "maybe"}, b"{}"),
    ("post", "/api/v1/connector/command/fuzz", {}, b"{not json"),
    ("post", "/api/v1/validate/source", {}, b"{not json"),
    ("post", "/api/v1/catalog/source", {}, b"[]"),
    ("get", "/api/v1/connectors", {"namespace": "N" * 64}, None),
]


def _send(
    api: TestClient, namespace: str, headers: Headers, request: tuple[str, str, dict[str, str], bytes | None]
) -> httpx.Response:
    method, path, query, body = request
    params = {"namespace": namespace, **query}
    sent = {**headers, "Content-Type": "application/json"}
    response: httpx.Response = api.request(method.upper(), path, params=params, content=body, headers=sent)
    return response


@pytest.mark.parametrize("caller", ["no credentials", "invalid token", "no RBAC"])
def test_callers_without_rights_are_refused_before_their_request_is_validated(
    api: TestClient, api_user: Callable[..., Headers], namespace: str, caller: str
) -> None:
    if caller == "no credentials":
        headers: Headers = {}
    elif caller == "invalid token":
        headers = {"Authorization": "Bearer not-a-kubernetes-token"}
    else:
        headers = api_user("outsider", None)
    expected = 403 if caller == "no RBAC" else 401
    for request in MALFORMED:
        r = _send(api, namespace, headers, request)
        assert r.status_code == expected, (request, r.status_code, r.text)
        assert r.json()["error"] == ("Forbidden" if expected == 403 else "Unauthorized"), r.text


def test_a_caller_with_rights_is_told_what_is_wrong(
    api: TestClient, api_user: Callable[..., Headers], namespace: str
) -> None:
    editor = api_user("editor")
    answers = [_send(api, namespace, editor, request).status_code for request in MALFORMED]
    # The last request names a namespace that cannot exist: only cluster-wide rights would reach its 422.
    assert answers == [422, 422, 422, 400, 400, 422, 403], answers
