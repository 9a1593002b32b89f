"""The REST API end to end against the real control plane: CRs, Secrets, RBAC, and nothing half-created."""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sluice import kinds
from sluice.devstack import ControlPlane
from tests.support.cluster import get_json, poll

pytestmark = pytest.mark.e2e

PASSWORD = "pa$$word"

# The example body of the reference page (seed), verbatim.
SEED_BODY: dict[str, Any] = {
    "id": "string",
    "source": {
        "postgres": {
            "connection": {"host": "example.com", "user": "string", "password": PASSWORD, "database": "string"},
            "replication_type": {"logical_replication": {}},
        }
    },
    "sink": {
        "postgres": {
            "connection": {"host": "example.com", "user": "string", "password": PASSWORD, "database": "string"}
        }
    },
}

Headers = dict[str, str]
MakeUser = Callable[..., Headers]
Objects = Callable[[], dict[str, list[str]]]


def body(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(SEED_BODY)
    out.update(changes)
    return out


def secret_values(control_plane: ControlPlane, namespace: str, name: str) -> dict[str, str]:
    data = get_json(control_plane, "secret", name, "-n", namespace)["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


@pytest.fixture
def editor(api_user: MakeUser) -> Headers:
    return api_user("editor")


def test_seed_body_creates_connector_and_secret_and_redacts(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers
) -> None:
    r = api.post("/api/v1/connectors", params={"namespace": namespace}, json=SEED_BODY, headers=editor)
    assert r.status_code == 201, r.text
    out = r.json()
    assert set(out) == {"connector", "status", "run_id", "created_at"}
    cid = out["connector"]["id"]
    assert re.fullmatch(r"c-[a-z0-9]{10}", cid), cid
    assert r.headers["location"] == f"/api/v1/connectors/{cid}"
    assert PASSWORD not in r.text
    assert out["created_at"]
    conn = out["connector"]["source"]["postgres"]["connection"]
    assert "password" not in conn
    assert conn["password_secret_ref"] == {"name": f"{cid}-credentials", "key": "source.postgres.connection.password"}

    cr = get_json(control_plane, "connector", cid, "-n", namespace)
    assert PASSWORD not in json.dumps(cr)
    for side in ("source", "sink"):
        stored = cr["spec"][side]["postgres"]["connection"]
        assert "password" not in stored
        assert stored["password_secret_ref"]["name"] == f"{cid}-credentials"

    secret = get_json(control_plane, "secret", f"{cid}-credentials", "-n", namespace)
    assert secret["metadata"]["labels"]["sluice.dev/usable-by-connectors"] == "true"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == cr["metadata"]["uid"]
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Connector"
    assert secret_values(control_plane, namespace, f"{cid}-credentials") == {
        "source.postgres.connection.password": PASSWORD,
        "sink.postgres.connection.password": PASSWORD,
    }

    # A second create gets a fresh id.
    r2 = api.post("/api/v1/connectors", params={"namespace": namespace}, json=SEED_BODY, headers=editor)
    assert r2.status_code == 201
    assert r2.json()["connector"]["id"] != cid


def test_path_id_create_replace_get_list_delete(
    api: TestClient,
    control_plane: ControlPlane,
    namespace: str,
    editor: Headers,
    api_objects: Objects,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ns = {"namespace": namespace}
    r = api.post("/api/v1/connectors/orders", params=ns, json=body(id="ignored"), headers=editor)
    assert r.status_code == 201, r.text
    assert r.json()["connector"]["id"] == "orders"
    uid = get_json(control_plane, "connector", "orders", "-n", namespace)["metadata"]["uid"]

    replaced = body(id="whatever")
    replaced["sink"]["postgres"]["connection"]["password"] = "new-sink-pw"
    replaced["sink"]["postgres"]["target_schema"] = "analytics"
    r = api.post("/api/v1/connectors/orders", params=ns, json=replaced, headers=editor)
    assert r.status_code == 200, r.text
    assert r.json()["connector"]["sink"]["postgres"]["target_schema"] == "analytics"
    cr = get_json(control_plane, "connector", "orders", "-n", namespace)
    assert cr["metadata"]["uid"] == uid
    assert cr["spec"]["sink"]["postgres"]["target_schema"] == "analytics"
    assert secret_values(control_plane, namespace, "orders-credentials")["sink.postgres.connection.password"] == (
        "new-sink-pw"
    )

    # Re-posting what GET returned (references instead of passwords) keeps the stored credentials.
    got = api.get("/api/v1/connectors/orders", params=ns, headers=editor)
    assert got.status_code == 200
    assert "new-sink-pw" not in got.text
    r = api.post("/api/v1/connectors/orders", params=ns, json=got.json()["connector"], headers=editor)
    assert r.status_code == 200, r.text
    assert secret_values(control_plane, namespace, "orders-credentials") == {
        "source.postgres.connection.password": PASSWORD,
        "sink.postgres.connection.password": "new-sink-pw",
    }

    api.post("/api/v1/connectors/other", params=ns, json=SEED_BODY, headers=editor)
    listed = api.get("/api/v1/connectors", params=ns, headers=editor)
    assert listed.status_code == 200
    assert [c["connector"]["id"] for c in listed.json()["connectors"]] == ["orders", "other"]
    assert PASSWORD not in listed.text

    history = api.get("/api/v1/connector/history/orders", params=ns, headers=editor)
    assert history.status_code == 200
    assert history.json() == {"events": []}

    r = api.post("/api/v1/connector/command/orders", params=ns, json={"command": "Delete"}, headers=editor)
    assert r.status_code == 202, r.text
    assert r.json()["deleted"] is True
    assert api.get("/api/v1/connectors/orders", params=ns, headers=editor).status_code == 404
    # The garbage collector (kube-controller-manager) removes the owned Secret after the Connector.
    poll(lambda: "orders-credentials" not in api_objects()["secrets"], timeout=60, message="Secret to be collected")
    assert api_objects() == {"connectors": ["other"], "secrets": ["other-credentials"]}

    assert api.delete("/api/v1/connectors/other", params=ns, headers=editor).status_code == 204
    poll(lambda: api_objects() == {"connectors": [], "secrets": []}, timeout=60, message="everything gone")
    assert api.delete("/api/v1/connectors/other", params=ns, headers=editor).status_code == 404
    # Even at DEBUG, with the Kubernetes client's own loggers, no credential reaches a log line.
    assert caplog.records, "the API logs something at DEBUG"
    assert PASSWORD not in caplog.text
    assert "new-sink-pw" not in caplog.text


def test_patch_allowed_and_refused(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers
) -> None:
    ns = {"namespace": namespace}
    assert api.post("/api/v1/connectors/p1", params=ns, json=SEED_BODY, headers=editor).status_code == 201
    url = "/api/v1/connectors/p1"
    merge = {**editor, "Content-Type": "application/merge-patch+json"}

    r = api.patch(
        url,
        params=ns,
        content=json.dumps({"name": "Orders", "sink": {"postgres": {"target_schema": "s2"}}}),
        headers=merge,
    )
    assert r.status_code == 200, r.text
    cr = get_json(control_plane, "connector", "p1", "-n", namespace)
    assert cr["spec"]["name"] == "Orders"
    assert cr["spec"]["sink"]["postgres"]["target_schema"] == "s2"

    # A new inline password replaces the stored one; the spec keeps the reference. application/json works too.
    r = api.patch(
        url, params=ns, json={"source": {"postgres": {"connection": {"password": "rotated"}}}}, headers=editor
    )
    assert r.status_code == 200, r.text
    assert "rotated" not in r.text
    cr = get_json(control_plane, "connector", "p1", "-n", namespace)
    assert "rotated" not in json.dumps(cr)
    assert secret_values(control_plane, namespace, "p1-credentials")["source.postgres.connection.password"] == "rotated"

    # null removes a field (RFC 7396).
    r = api.patch(url, params=ns, content=json.dumps({"name": None}), headers=merge)
    assert r.status_code == 200
    assert "name" not in get_json(control_plane, "connector", "p1", "-n", namespace)["spec"]

    before = get_json(control_plane, "connector", "p1", "-n", namespace)["metadata"]["resourceVersion"]
    refused = [
        ({"source": {"postgres": {"connection": {"host": "elsewhere"}}}}, "source.postgres.connection.host"),
        ({"sink": {"postgres": {"connection": {"port": 5433}}}}, "sink.postgres.connection.port"),
        ({"source": {"postgres": {"connection": {"database": "other"}}}}, "source.postgres.connection.database"),
        (
            {"source": {"postgres": None, "mysql": {"connection": {"host": "h", "user": "u", "database": "d"}}}},
            "source",
        ),
    ]
    for patch, field in refused:
        r = api.patch(url, params=ns, content=json.dumps(patch), headers=merge)
        assert r.status_code == 422, (patch, r.text)
        assert r.json()["error"] == "ImmutableField"
        assert field in [d["field"] for d in r.json()["details"]], r.text
    invalid = api.patch(
        url, params=ns, content=json.dumps({"source": {"postgres": {"connection": {"port": "x"}}}}), headers=merge
    )
    assert invalid.status_code == 422
    assert api.patch(url, params=ns, content=b"[]", headers=merge).status_code == 422
    assert api.patch(url, params=ns, content=b"{}", headers={**editor, "Content-Type": "text/plain"}).status_code == 415
    after = get_json(control_plane, "connector", "p1", "-n", namespace)["metadata"]["resourceVersion"]
    assert after == before, "a refused patch must not write"
    assert api.patch("/api/v1/connectors/nope", params=ns, json={"name": "x"}, headers=editor).status_code == 404


def test_commands_record_intent(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers, api_objects: Objects
) -> None:
    ns = {"namespace": namespace}
    assert api.post("/api/v1/connectors/cmd", params=ns, json=SEED_BODY, headers=editor).status_code == 201

    def command(name: str) -> dict[str, Any]:
        r = api.post("/api/v1/connector/command/cmd", params=ns, json={"command": name}, headers=editor)
        assert r.status_code == 202, r.text
        out: dict[str, Any] = r.json()
        return out

    def cr() -> dict[str, Any]:
        out: dict[str, Any] = get_json(control_plane, "connector", "cmd", "-n", namespace)
        return out

    # Stop/Start are declarative: spec.disabled, written by the API; no annotation (the operator refuses those).
    command("Stop")
    assert cr()["spec"]["disabled"] is True
    assert "sluice.dev/command" not in (cr()["metadata"].get("annotations") or {})
    command("Start")
    assert cr()["spec"]["disabled"] is False
    assert "sluice.dev/command" not in (cr()["metadata"].get("annotations") or {})
    first = command("Restart")
    annotations = cr()["metadata"]["annotations"]
    assert annotations["sluice.dev/command"] == "Restart"
    assert annotations["sluice.dev/command-id"] == first["command_id"]
    assert annotations["sluice.dev/command-requested-at"] == first["requested_at"]
    second = command("Restart")
    assert second["command_id"] != first["command_id"], "a repeated command must be distinguishable"
    command("ReIntialize")
    assert cr()["metadata"]["annotations"]["sluice.dev/command"] == "ReIntialize"

    # ForceDelete marks the resource before deleting it: hold it with a finalizer to see the mark.
    control_plane.kubectl(
        "patch",
        "connector",
        "cmd",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":["test.sluice.dev/hold"]}}',
    )
    out = command("ForceDelete")
    assert out["deleted"] is True
    held = cr()
    assert held["metadata"]["annotations"]["sluice.dev/force-delete"] == "true"
    assert held["metadata"].get("deletionTimestamp")
    control_plane.kubectl(
        "patch", "connector", "cmd", "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    poll(lambda: api_objects() == {"connectors": [], "secrets": []}, timeout=60, message="connector and Secret gone")
    r = api.post("/api/v1/connector/command/cmd", params=ns, json={"command": "Stop"}, headers=editor)
    assert r.status_code == 404


def _bad_requests(namespace: str) -> list[tuple[str, str, dict[str, Any], int]]:
    """(method, url, httpx kwargs, expected status) for every kind of bad input."""
    two_sources = body()
    two_sources["source"]["mysql"] = {"connection": {"host": "h", "user": "u", "database": "d"}}
    port = body()
    port["source"]["postgres"]["connection"]["port"] = 70000
    ssl = body()
    ssl["sink"]["postgres"]["connection"]["ssl_mode"] = "Sometimes"
    no_sink = body()
    del no_sink["sink"]
    placeholder = body()
    placeholder["source"]["postgres"]["connection"]["password"] = "**********"
    both = body()
    both["source"]["postgres"]["connection"]["password_secret_ref"] = {"name": "x", "key": "y"}
    url = "/api/v1/connectors"
    json_ct = {"Content-Type": "application/json"}
    return [
        ("post", url, {"content": b'{"id": "x", "source": ', "headers": json_ct}, 400),
        ("post", url, {"content": b"\xff\xfe{}", "headers": json_ct}, 400),
        ("post", url, {"content": b"", "headers": json_ct}, 400),
        ("post", url, {"content": json.dumps(SEED_BODY).encode(), "headers": {"Content-Type": "text/yaml"}}, 415),
        ("post", url, {"content": b"{" + b" " * (1024 * 1024 + 1) + b"}", "headers": json_ct}, 413),
        ("post", url, {"json": [SEED_BODY]}, 422),
        ("post", url, {"json": body(id=None)}, 422),
        ("post", url, {"json": body(sink={"clickhouse": CLICKHOUSE_SINK})}, 422),
        ("post", f"{url}/with-oracle", {"json": body(source={"oracle": ORACLE_SOURCE})}, 422),
        ("post", url, {"json": {k: v for k, v in SEED_BODY.items() if k != "id"}}, 422),
        ("post", url, {"json": two_sources}, 422),
        ("post", url, {"json": no_sink}, 422),
        ("post", url, {"json": port}, 422),
        ("post", url, {"json": ssl}, 422),
        ("post", url, {"json": body(unknown_field=1)}, 422),
        ("post", url, {"json": placeholder}, 422),
        ("post", url, {"json": both}, 422),
        ("post", f"{url}/Bad_Id", {"json": SEED_BODY}, 422),
        ("post", f"{url}/{'a' * 64}", {"json": SEED_BODY}, 422),
        ("get", f"{url}/missing", {}, 404),
        ("put", url, {"json": SEED_BODY}, 405),
        ("post", "/api/v1/connector/command/missing", {"json": {"command": "Start"}}, 404),
        ("post", "/api/v1/connector/command/missing", {"json": {"command": "start"}}, 422),
    ]


def test_bad_input_gets_the_right_status_and_creates_nothing(
    api: TestClient, namespace: str, editor: Headers, api_objects: Objects
) -> None:
    assert api_objects() == {"connectors": [], "secrets": []}
    for method, url, kwargs, expected in _bad_requests(namespace):
        headers = {**editor, **kwargs.pop("headers", {})}
        r = api.request(method, url, params={"namespace": namespace}, headers=headers, **kwargs)
        assert r.status_code == expected, (method, url, r.text)
        err = r.json()
        assert err["error"] and err["message"], r.text
        assert PASSWORD not in r.text
        if expected == 422 and "details" in err:
            assert all(d["field"] is not None and d["msg"] for d in err["details"])
    assert api_objects() == {"connectors": [], "secrets": []}


def test_failed_secret_write_leaves_no_connector(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers, api_objects: Objects
) -> None:
    # A Secret with the name the API would use, but not Sluice's: the create must fail and roll back.
    control_plane.kubectl("create", "secret", "generic", "taken-credentials", "--from-literal=k=v", "-n", namespace)
    r = api.post("/api/v1/connectors/taken", params={"namespace": namespace}, json=SEED_BODY, headers=editor)
    assert r.status_code == 409, r.text
    assert "not managed by Sluice" in r.json()["message"]
    poll(lambda: api_objects()["connectors"] == [], timeout=30, message="the connector to be rolled back")
    assert secret_values(control_plane, namespace, "taken-credentials") == {"k": "v"}


def test_duplicate_path_id_is_replaced_not_conflicting(api: TestClient, namespace: str, editor: Headers) -> None:
    ns = {"namespace": namespace}
    assert api.post("/api/v1/connectors/dup", params=ns, json=SEED_BODY, headers=editor).status_code == 201
    assert api.post("/api/v1/connectors/dup", params=ns, json=SEED_BODY, headers=editor).status_code == 200


def test_authentication_and_rbac(
    api: TestClient, control_plane: ControlPlane, namespace: str, api_user: MakeUser, api_objects: Objects
) -> None:
    ns = {"namespace": namespace}
    url = "/api/v1/connectors"
    r = api.post(url, params=ns, json=SEED_BODY)
    assert r.status_code == 401
    assert r.json()["error"] == "Unauthorized"
    r = api.post(url, params=ns, json=SEED_BODY, headers={"Authorization": "Bearer not-a-real-token"})
    assert r.status_code == 401
    assert "not accepted" in r.json()["message"]

    nobody = api_user("nobody", None)
    r = api.post(url, params=ns, json=SEED_BODY, headers=nobody)
    assert r.status_code == 403, r.text
    err = r.json()
    assert f"system:serviceaccount:{namespace}:nobody" in err["message"]
    assert "create" in err["message"]
    assert "connectors.sluice.dev" in err["message"]
    assert namespace in err["message"]
    assert "rolebinding" in err["fix"]
    static = {"Authorization": f"Bearer {control_plane.static_token('static-nobody')}"}
    assert api.get(url, params=ns, headers=static).status_code == 403

    viewer = api_user("viewer", "sluice-connector-viewer")
    assert api.get(url, params=ns, headers=viewer).status_code == 200
    assert api.post(url, params=ns, json=SEED_BODY, headers=viewer).status_code == 403
    assert api_objects() == {"connectors": [], "secrets": []}

    editor = api_user("editor")
    r = api.post(url, params=ns, json=SEED_BODY, headers=editor)
    assert r.status_code == 201
    cid = r.json()["connector"]["id"]
    assert api.get(f"{url}/{cid}", params=ns, headers=viewer).status_code == 200
    assert api.patch(f"{url}/{cid}", params=ns, json={"name": "x"}, headers=viewer).status_code == 403
    r = api.post(f"/api/v1/connector/command/{cid}", params=ns, json={"command": "Delete"}, headers=viewer)
    assert r.status_code == 403
    assert "delete" in r.json()["message"]
    # The editor's rights stop at its namespace.
    assert api.get(url, params={"namespace": "default"}, headers=editor).status_code == 403

    # Rights granted after a denial work at once (denials are not cached).
    control_plane.kubectl(
        "create",
        "rolebinding",
        "nobody-edit",
        "--clusterrole=sluice-connector-editor",
        f"--serviceaccount={namespace}:nobody",
        "-n",
        namespace,
    )
    poll(lambda: api.get(url, params=ns, headers=nobody).status_code == 200, timeout=30, message="RBAC to apply")


def test_missing_namespace_is_404(api: TestClient, editor: Headers, control_plane: ControlPlane) -> None:
    admin = {"Authorization": f"Bearer {control_plane.static_token('static-admin')}"}
    r = api.post("/api/v1/connectors", params={"namespace": "no-such-ns"}, json=SEED_BODY, headers=admin)
    assert r.status_code == 404, r.text
    assert 'namespace "no-such-ns"' in r.json()["message"]


def test_replace_with_own_references_drops_the_managed_secret(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers, api_objects: Objects
) -> None:
    ns = {"namespace": namespace}
    assert api.post("/api/v1/connectors/r1", params=ns, json=SEED_BODY, headers=editor).status_code == 201
    control_plane.kubectl("create", "secret", "generic", "my-creds", "--from-literal=pw=theirs", "-n", namespace)
    # The editor's own Secret: it may read it (a connector may reference only Secrets its writer may read).
    control_plane.kubectl(
        "create",
        "role",
        "read-my-creds",
        "--verb=get",
        "--resource=secrets",
        "--resource-name=my-creds",
        "-n",
        namespace,
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "read-my-creds",
        "--role=read-my-creds",
        f"--serviceaccount={namespace}:editor",
        "-n",
        namespace,
    )
    state = api.app.state.sluice  # type: ignore[attr-defined]
    poll(lambda: _may_read(state, editor, namespace, "my-creds"), timeout=30, message="editor may get my-creds")
    own = body()
    for side in ("source", "sink"):
        conn = own[side]["postgres"]["connection"]
        del conn["password"]
        conn["password_secret_ref"] = {"name": "my-creds", "key": "pw"}
    # A name no Secret can have is refused before anything is looked up.
    bad = copy.deepcopy(own)
    bad["source"]["postgres"]["connection"]["password_secret_ref"]["name"] = "Not_A/Name"
    r = api.post("/api/v1/connectors/r1", params=ns, json=bad, headers=editor)
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["details"]] == ["source.postgres.connection.password_secret_ref.name"]
    # Not marked for connectors yet: refused with the operator's words (it would not run a worker with it).
    r = api.post("/api/v1/connectors/r1", params=ns, json=own, headers=editor)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "SecretNotAllowed"
    assert "kubectl label secret my-creds sluice.dev/usable-by-connectors=true" in r.json()["fix"]
    assert {d["field"] for d in r.json()["details"]} == {
        "source.postgres.connection.password_secret_ref",
        "sink.postgres.connection.password_secret_ref",
    }
    control_plane.kubectl("label", "secret", "my-creds", "sluice.dev/usable-by-connectors=true", "-n", namespace)
    r = api.post("/api/v1/connectors/r1", params=ns, json=own, headers=editor)
    assert r.status_code == 200, r.text
    assert r.json()["connector"]["sink"]["postgres"]["connection"]["password_secret_ref"]["name"] == "my-creds"
    assert api_objects() == {"connectors": ["r1"], "secrets": ["my-creds"]}
    assert secret_values(control_plane, namespace, "my-creds") == {"pw": "theirs"}


def test_leftover_managed_secret_is_adopted(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers
) -> None:
    # What a deleted connector of the same name leaves until the garbage collector runs.
    control_plane.kubectl(
        "create", "secret", "generic", "again-credentials", "--from-literal=old=value", "-n", namespace
    )
    control_plane.kubectl(
        "label", "secret", "again-credentials", "app.kubernetes.io/managed-by=sluice-api", "-n", namespace
    )
    r = api.post("/api/v1/connectors/again", params={"namespace": namespace}, json=SEED_BODY, headers=editor)
    assert r.status_code == 201, r.text
    uid = get_json(control_plane, "connector", "again", "-n", namespace)["metadata"]["uid"]
    secret = get_json(control_plane, "secret", "again-credentials", "-n", namespace)
    assert [o["uid"] for o in secret["metadata"]["ownerReferences"]] == [uid]
    assert set(secret_values(control_plane, namespace, "again-credentials")) == {
        "source.postgres.connection.password",
        "sink.postgres.connection.password",
    }


def test_status_and_history_written_by_the_operator_are_shown(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers
) -> None:
    ns = {"namespace": namespace}
    assert api.post("/api/v1/connectors/st", params=ns, json=SEED_BODY, headers=editor).status_code == 201
    # Stored form (flat, as the operator writes it: a source that failed its setup is attributed to the Source) ...
    event = {
        "id": "e1",
        "run_id": "run-1",
        "created_at": "2026-01-01T00:00:00Z",
        "component": "Source",
        "state": "initialize",
        "status": {"type": "failed", "reason": "wal_level is replica"},
    }
    # ... and the reference's form the history endpoint shows.
    shown = {
        "id": "e1",
        "connector_id": "st",
        "run_id": "run-1",
        "created_at": "2026-01-01T00:00:00Z",
        "component": "Source",
        "state": "initialize",
        "status": {"failed": {"reason": "wal_level is replica"}},
    }
    status = {
        "state": "realtime",
        "state_detail": {"name": "public.orders"},
        "status": {"type": "retry", "attempt": 2, "reason": "connection reset"},
        "run_id": "run-1",
        "history": [event],
    }
    control_plane.kubectl(
        "patch",
        "connector",
        "st",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    got = api.get("/api/v1/connectors/st", params=ns, headers=editor).json()
    assert got["status"] == {
        "state": {"realtime": {"name": "public.orders"}},
        "status": {"retry": {"attempt": 2, "reason": "connection reset"}},
    }
    assert got["run_id"] == "run-1"
    history = api.get("/api/v1/connector/history/st", params=ns, headers=editor)
    assert history.json() == {"events": [shown]}


# A sink valid by the schema whose kind this version does not run (sluice.kinds): only its availability is refused.
CLICKHOUSE_SINK: dict[str, Any] = {
    "connection": {"http_url": "https://clickhouse.example.svc:8443", "user": "u"},
    "target_database": "dw",
}
ORACLE_SOURCE: dict[str, Any] = {
    "connection": {"connect_string": "oracle.example.svc:1521/app", "user": "u"},
    "replication_type": {"log_miner": {}},
}


def test_any_body_id_is_a_placeholder(api: TestClient, namespace: str, editor: Headers, api_objects: Objects) -> None:
    ns = {"namespace": namespace}
    r = api.post("/api/v1/connectors", params=ns, json=body(id=""), headers=editor)  # the reference's placeholder
    assert r.status_code == 201, r.text
    generated = r.json()["connector"]["id"]
    assert re.fullmatch(r"c-[a-z0-9]{10}", generated), generated
    r = api.post("/api/v1/connectors", params=ns, json=body(id="Not A Label!"), headers=editor)
    assert r.status_code == 201, r.text
    assert r.json()["connector"]["id"] not in ("Not A Label!", generated)
    r = api.post("/api/v1/connectors/mine", params=ns, json=body(id="someone-else"), headers=editor)
    assert r.status_code == 201, r.text
    assert r.json()["connector"]["id"] == "mine"
    r = api.post("/api/v1/connectors/mine", params=ns, json=body(id=""), headers=editor)
    assert r.status_code == 200, r.text
    assert r.json()["connector"]["id"] == "mine"
    assert "mine" in api_objects()["connectors"]


def test_unavailable_kind_is_refused_with_the_same_words_as_kubectl(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers, api_objects: Objects
) -> None:
    ns = {"namespace": namespace}
    with_ch = body(sink={"clickhouse": CLICKHOUSE_SINK})
    r = api.post("/api/v1/connectors", params=ns, json=with_ch, headers=editor)
    assert r.status_code == 422, r.text
    out = r.json()
    assert out["error"] == "UnsupportedKind"
    sinks = ", ".join(kinds.AVAILABLE_SINKS)
    assert out["message"] == f"sink.clickhouse is not available in this version of Sluice yet; available sinks: {sinks}"
    assert out["fix"] == "Use one of the available sinks, or upgrade Sluice once clickhouse support lands."
    assert [d["field"] for d in out["details"]] == ["sink.clickhouse"]
    assert api.post("/api/v1/connectors/k1", params=ns, json=with_ch, headers=editor).status_code == 422
    assert api_objects() == {"connectors": [], "secrets": []}

    # kubectl apply of the same connector: the apiserver's CEL rule says the very same thing.
    cr = {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Connector",
        "metadata": {"name": "k1"},
        "spec": {
            "source": {
                "postgres": {
                    "connection": {"host": "h", "user": "u", "database": "d"},
                    "replication_type": {"logical_replication": {}},
                }
            },
            "sink": {"clickhouse": CLICKHOUSE_SINK},
        },
    }
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(cr), check=False)
    assert result.returncode != 0, result.stdout
    said = " ".join(result.stderr.split())
    assert "spec.sink.clickhouse" in said, said
    assert out["message"] in said and out["fix"] in said, said

    # PATCH: turning an existing connector's sink into clickhouse is refused; the details name sink.clickhouse too.
    assert api.post("/api/v1/connectors/p2", params=ns, json=SEED_BODY, headers=editor).status_code == 201
    merge = {**editor, "Content-Type": "application/merge-patch+json"}
    patch = {"sink": {"postgres": None, "clickhouse": CLICKHOUSE_SINK}}
    r = api.patch("/api/v1/connectors/p2", params=ns, content=json.dumps(patch), headers=merge)
    assert r.status_code == 422, r.text
    details = {d["field"]: d for d in r.json()["details"]}
    assert {"sink", "sink.clickhouse"} <= set(details), r.text
    assert details["sink.clickhouse"]["msg"] == out["message"]
    assert details["sink.clickhouse"]["fix"] == out["fix"]
    assert "postgres" in get_json(control_plane, "connector", "p2", "-n", namespace)["spec"]["sink"]


MATERIALIZE_SINK = {
    "connection": {"host": "m", "user": "u", "dbname": "d", "password_secret_ref": {"name": "c", "key": "k"}},
    "target_schema": "s",
}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"source": {"postgres": {"connection": {"host": "elsewhere"}}}}, "source.postgres.connection.host"),
        ({"sink": {"postgres": {"connection": {"port": 5433}}}}, "sink.postgres.connection.port"),
        ({"source": {"postgres": {"connection": {"database": "other"}}}}, "source.postgres.connection.database"),
        ({"sink": {"postgres": None, "materialize": MATERIALIZE_SINK}}, "sink"),
    ],
    ids=["source-host", "sink-port", "source-database", "sink-kind"],
)
def test_kubectl_and_rest_refuse_an_identity_change_with_the_same_words(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers, patch: dict[str, Any], field: str
) -> None:
    """The REST PATCH (422 ImmutableField) and ``kubectl patch`` (the CRD's transition rules) say the same thing."""
    ns = {"namespace": namespace}
    assert api.post("/api/v1/connectors/ident", params=ns, json=SEED_BODY, headers=editor).status_code == 201
    before = get_json(control_plane, "connector", "ident", "-n", namespace)
    merge = {**editor, "Content-Type": "application/merge-patch+json"}

    r = api.patch("/api/v1/connectors/ident", params=ns, content=json.dumps(patch), headers=merge)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "ImmutableField"
    details = {d["field"]: d for d in r.json()["details"]}
    assert field in details, r.text
    said_by_rest = details[field]

    # The same change on the resource itself, as `kubectl edit` would send it: refused by the apiserver.
    result = control_plane.kubectl(
        "patch", "connector", "ident", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": patch}), check=False
    )
    assert result.returncode != 0, f"kubectl accepted an identity change: {result.stdout}"
    said = " ".join(result.stderr.split())
    assert said_by_rest["msg"] in said, said
    assert said_by_rest["fix"] in said, said
    assert f"spec.{field}" in said, said
    after = get_json(control_plane, "connector", "ident", "-n", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    # Other fields still change through both paths.
    r = api.patch(
        "/api/v1/connectors/ident", params=ns, json={"sink": {"postgres": {"target_schema": "s2"}}}, headers=editor
    )
    assert r.status_code == 200, r.text
    control_plane.kubectl(
        "patch",
        "connector",
        "ident",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"source": {"postgres": {"connection": {"user": "someone-else"}}}}}),
    )
    spec = get_json(control_plane, "connector", "ident", "-n", namespace)["spec"]
    assert spec["sink"]["postgres"]["target_schema"] == "s2"
    assert spec["source"]["postgres"]["connection"]["user"] == "someone-else"


def test_a_connector_may_reference_only_secrets_its_writer_may_read(
    api: TestClient, control_plane: ControlPlane, namespace: str, editor: Headers
) -> None:
    """The service's check with a real SubjectAccessReview for the caller: 403 with the fix, then allowed once the
    caller may ``get`` that Secret (and the Secret is marked for connectors)."""
    from functools import partial

    from sluice.errors import AuthorizationError

    state = api.app.state.sluice  # type: ignore[attr-defined]
    control_plane.kubectl("create", "secret", "generic", "theirs", "--from-literal=pw=not-yours", "-n", namespace)
    control_plane.kubectl("label", "secret", "theirs", "sluice.dev/usable-by-connectors=true", "-n", namespace)
    ref = body()
    ref["source"]["postgres"]["connection"].pop("password")
    ref["source"]["postgres"]["connection"]["password_secret_ref"] = {"name": "theirs", "key": "pw"}
    check = partial(state.authorizer.may_read_secret, editor["Authorization"])

    with pytest.raises(AuthorizationError) as refused:
        state.service.create(namespace, ref, "borrow", check_secret=check)
    err = refused.value.as_dict()
    assert refused.value.http_status == 403, err
    assert 'may not get Secret "theirs"' in err["message"], err
    assert "Reference a Secret you may read" in err["fix"], err
    # The same refusal through the REST routes (create, replace), in the same words; nothing is created.
    ns = {"namespace": namespace}
    for r in (
        api.post("/api/v1/connectors", params=ns, json=ref, headers=editor),
        api.post("/api/v1/connectors/borrow", params=ns, json=ref, headers=editor),
    ):
        assert r.status_code == 403, r.text
        assert (
            'may not get Secret "theirs"' in r.json()["message"]
            and "Reference a Secret you may read" in r.json()["fix"]
        )
    assert control_plane.kubectl("get", "connector", "borrow", "-n", namespace, check=False).returncode != 0

    control_plane.kubectl(
        "create", "role", "read-theirs", "--verb=get", "--resource=secrets", "--resource-name=theirs", "-n", namespace
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "read-theirs",
        "--role=read-theirs",
        f"--serviceaccount={namespace}:editor",
        "-n",
        namespace,
    )
    poll(
        lambda: _may_read(state, editor, namespace),
        timeout=30,
        message="editor allowed to get Secret theirs",
    )
    out = state.service.create(namespace, ref, "borrow", check_secret=check)
    assert out["connector"]["source"]["postgres"]["connection"]["password_secret_ref"]["name"] == "theirs"
    assert "not-yours" not in json.dumps(out)


def _may_read(state: Any, headers: Headers, namespace: str, name: str = "theirs") -> bool:
    from sluice.errors import AuthorizationError

    try:
        state.authorizer.may_read_secret(headers["Authorization"], namespace, name)
    except AuthorizationError:
        return False
    return True
