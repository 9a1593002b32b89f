"""``?dry_run=true`` on create, replace and patch: every check runs, the apiserver's too, and nothing is written."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sluice.devstack import ControlPlane
from tests.e2e.test_api import PASSWORD, SEED_BODY
from tests.support.cluster import get_json, poll

pytestmark = pytest.mark.e2e

Headers = dict[str, str]
MakeUser = Callable[..., Headers]
Objects = Callable[[], dict[str, list[str]]]

NOTHING: dict[str, list[str]] = {"connectors": [], "secrets": []}


@pytest.fixture
def editor(api_user: MakeUser) -> Headers:
    return api_user("editor")


def dry(api: TestClient, method: str, path: str, namespace: str, headers: Headers, body: Any) -> Any:
    return api.request(method, path, params={"namespace": namespace, "dry_run": "true"}, json=body, headers=headers)


def test_dry_run_create_answers_like_create_and_writes_nothing(
    api: TestClient, namespace: str, editor: Headers, api_objects: Objects
) -> None:
    r = dry(api, "POST", "/api/v1/connectors", namespace, editor, SEED_BODY)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["dry_run"] is True and out["created"] is True
    cid = out["connector"]["id"]
    ref = out["connector"]["source"]["postgres"]["connection"]["password_secret_ref"]
    assert ref == {"name": f"{cid}-credentials", "key": "source.postgres.connection.password"}
    assert PASSWORD not in r.text
    assert "location" not in r.headers
    assert api_objects() == NOTHING

    r = dry(api, "POST", "/api/v1/connectors/mine", namespace, editor, SEED_BODY)
    assert r.status_code == 200, r.text
    assert r.json()["connector"]["id"] == "mine" and r.json()["created"] is True
    assert api_objects() == NOTHING


def test_dry_run_fails_as_the_real_request_would(
    api: TestClient, namespace: str, editor: Headers, api_objects: Objects
) -> None:
    bad = copy.deepcopy(SEED_BODY)
    bad["source"]["postgres"]["connection"]["port"] = "x"
    r = dry(api, "POST", "/api/v1/connectors", namespace, editor, bad)
    assert r.status_code == 422
    assert r.json()["details"][0]["field"] == "source.postgres.connection.port"
    assert api_objects() == NOTHING


def test_the_apiservers_own_admission_runs_in_a_dry_run(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers, api_objects: Objects
) -> None:
    """A quota of zero connectors is enforced by the apiserver's admission alone: the dry run must meet it."""
    control_plane.kubectl("create", "quota", "no-connectors", "--hard=count/connectors.sluice.dev=0", "-n", namespace)
    poll(
        lambda: (
            get_json(control_plane, "resourcequota", "no-connectors", "-n", namespace).get("status", {}).get("hard")
        ),
        message="the quota's status",
    )
    r = dry(api, "POST", "/api/v1/connectors", namespace, editor, SEED_BODY)
    assert r.status_code == 403, r.text
    assert "quota" in r.json()["message"]
    assert api_objects() == NOTHING


def test_dry_run_patch_and_replace_change_nothing(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers
) -> None:
    created = api.post("/api/v1/connectors", params={"namespace": namespace}, json=SEED_BODY, headers=editor)
    assert created.status_code == 201, created.text
    cid = created.json()["connector"]["id"]
    before = get_json(control_plane, "connector", cid, "-n", namespace)
    secret_before = get_json(control_plane, "secret", f"{cid}-credentials", "-n", namespace)

    patch = {"disabled": True, "source": {"postgres": {"connection": {"password": "new-pw-789"}}}}
    r = dry(api, "PATCH", f"/api/v1/connectors/{cid}", namespace, editor, patch)
    assert r.status_code == 200, r.text
    assert r.json()["dry_run"] is True and r.json()["created"] is False
    assert r.json()["connector"]["disabled"] is True
    assert "new-pw-789" not in r.text

    replaced = copy.deepcopy(SEED_BODY) | {"name": "renamed"}
    r = dry(api, "POST", f"/api/v1/connectors/{cid}", namespace, editor, replaced)
    assert r.status_code == 200, r.text
    assert r.json()["created"] is False and r.json()["connector"]["name"] == "renamed"

    after = get_json(control_plane, "connector", cid, "-n", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"] == before["spec"]
    secret_after = get_json(control_plane, "secret", f"{cid}-credentials", "-n", namespace)
    assert secret_after["metadata"]["resourceVersion"] == secret_before["metadata"]["resourceVersion"]
    values = {k: base64.b64decode(v).decode() for k, v in secret_after["data"].items()}
    assert values["source.postgres.connection.password"] == PASSWORD

    # An identity change is refused in a dry run as in a real patch.
    r = dry(
        api,
        "PATCH",
        f"/api/v1/connectors/{cid}",
        namespace,
        editor,
        {"source": {"postgres": {"connection": {"host": "elsewhere"}}}},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "ImmutableField"
