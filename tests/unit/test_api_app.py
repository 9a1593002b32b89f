"""The app without a cluster: OpenAPI document, and request checks that answer before Kubernetes is asked."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sluice import kinds
from sluice.api.app import NO_AUTH_WARNING, create_app
from sluice.api.settings import ApiSettings

BODY: dict[str, Any] = {
    "id": "x",
    "source": {
        "postgres": {
            "connection": {"host": "h", "user": "u", "password": "p", "database": "d"},
            "replication_type": {"logical_replication": {}},
        }
    },
    "sink": {"postgres": {"connection": {"host": "h", "user": "u", "password": "p", "database": "d"}}},
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def unreachable_kubeconfig(tmp_path: Path) -> str:
    """A kubeconfig pointing at a closed port on loopback: every Kubernetes call fails to connect."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": f"https://127.0.0.1:{_closed_port()}", "insecure-skip-tls-verify": True},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return str(path)


@pytest.fixture
def client(unreachable_kubeconfig: str) -> Iterator[TestClient]:
    app = create_app(ApiSettings(kubeconfig=unreachable_kubeconfig, no_auth=True, kube_timeout_seconds=2))
    with TestClient(app) as c:
        yield c


def test_create_app_needs_no_cluster_and_the_openapi_document_resolves() -> None:
    doc = create_app(ApiSettings(kubeconfig="/nonexistent")).openapi()
    text = json.dumps(doc)
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
    assert refs <= set(doc["components"]["schemas"]), refs - set(doc["components"]["schemas"])
    paths = doc["paths"]
    assert set(paths["/api/v1/connectors"]) == {"get", "post"}
    assert set(paths["/api/v1/connectors/{id}"]) == {"get", "post", "patch", "delete"}
    assert "post" in paths["/api/v1/connector/command/{id}"]
    assert "get" in paths["/api/v1/connector/history/{id}"]
    body = paths["/api/v1/connectors"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ConnectorBody"}
    assert set(paths["/api/v1/connectors/{id}"]["patch"]["requestBody"]["content"]) == {
        "application/merge-patch+json",
        "application/json",
    }
    source = doc["components"]["schemas"]["Source"]
    assert "oneOf" in source, "one-of objects must be oneOf in the OpenAPI document"
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_wrong_content_type_is_415(client: TestClient) -> None:
    r = client.post("/api/v1/connectors", content=json.dumps(BODY), headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert r.json()["error"] == "UnsupportedMediaType"
    assert "application/json" in r.json()["fix"]


def test_missing_content_type_is_415(client: TestClient) -> None:
    r = client.post("/api/v1/connectors", content=b"{}")
    assert r.status_code == 415


def test_declared_oversized_body_is_413(client: TestClient) -> None:
    r = client.post(
        "/api/v1/connectors",
        content=b"{" + b" " * (1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["error"] == "PayloadTooLarge"


def test_streamed_oversized_body_without_length_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"id": "'
        for _ in range(300):
            yield b"x" * 4096
        yield b'"}'

    r = client.post("/api/v1/connectors", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_malformed_json_is_400(client: TestClient) -> None:
    r = client.post("/api/v1/connectors", content=b'{"id": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "BadRequest"


def test_non_object_body_is_422(client: TestClient) -> None:
    r = client.post("/api/v1/connectors", json=[1, 2])
    assert r.status_code == 422


def test_invalid_connector_is_422_with_field_paths_before_kubernetes_is_asked(client: TestClient) -> None:
    bad = json.loads(json.dumps(BODY))
    bad["source"]["postgres"]["connection"]["port"] = 70000
    del bad["id"]
    r = client.post("/api/v1/connectors", json=bad)
    assert r.status_code == 422, r.text
    fields = {d["field"] for d in r.json()["details"]}
    assert {"id", "source.postgres.connection.port"} <= fields
    assert '"p"' not in r.text


def test_invalid_path_id_is_422_with_the_rule(client: TestClient) -> None:
    r = client.post("/api/v1/connectors/Not_A_Label", json=BODY)
    assert r.status_code == 422
    assert "DNS-1123" in r.json()["fix"]


def test_invalid_namespace_is_422(client: TestClient) -> None:
    r = client.get("/api/v1/connectors", params={"namespace": "Bad_NS"})
    assert r.status_code == 422


def test_unknown_command_is_422(client: TestClient) -> None:
    r = client.post("/api/v1/connector/command/abc", json={"command": "Explode"})
    assert r.status_code == 422
    assert r.json()["details"][0]["field"] == "command"


def test_unknown_path_and_method_are_json(client: TestClient) -> None:
    r = client.get("/api/v2/nothing")
    assert r.status_code == 404
    assert r.json()["error"] == "NotFound"
    r = client.put("/api/v1/connectors")
    assert r.status_code == 405
    assert r.json()["error"] == "MethodNotAllowed"


def test_unreachable_apiserver_is_503(client: TestClient) -> None:
    r = client.post("/api/v1/connectors", json=BODY)
    assert r.status_code == 503
    assert r.json()["error"] == "KubernetesUnavailable"
    assert client.get("/api/v1/connectors").status_code == 503
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_no_auth_mode_warns_at_startup(unreachable_kubeconfig: str, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(ApiSettings(kubeconfig=unreachable_kubeconfig, no_auth=True))
    with caplog.at_level(logging.WARNING), TestClient(app):
        pass
    assert any(r.levelno == logging.WARNING and r.getMessage() == NO_AUTH_WARNING for r in caplog.records)


def test_auth_mode_without_token_is_401(unreachable_kubeconfig: str) -> None:
    with TestClient(create_app(ApiSettings(kubeconfig=unreachable_kubeconfig))) as c:
        r = c.post("/api/v1/connectors", json=BODY)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_no_auth_mode_repeats_the_warning(unreachable_kubeconfig: str, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(
        ApiSettings(kubeconfig=unreachable_kubeconfig, no_auth=True, no_auth_warning_interval_seconds=0.05)
    )

    def warnings() -> int:
        return sum(1 for r in caplog.records if r.levelno == logging.WARNING and r.getMessage() == NO_AUTH_WARNING)

    with caplog.at_level(logging.WARNING), TestClient(app) as c:
        deadline = time.monotonic() + 10
        while warnings() < 3 and time.monotonic() < deadline:
            c.get("/healthz")  # lets the event loop run the periodic task
            time.sleep(0.05)
    assert warnings() >= 3


# --- body ids and kinds this version runs: answered before Kubernetes is asked (a valid body gets 503 here) ------


@pytest.mark.parametrize("body_id", ["", "Any Placeholder!", "x" * 300, "string"])
def test_create_accepts_any_string_id_and_ignores_it(client: TestClient, body_id: str) -> None:
    r = client.post("/api/v1/connectors", json={**BODY, "id": body_id})
    assert r.status_code == 503, r.text  # past validation: only the (unreachable) cluster is left
    r = client.post("/api/v1/connectors/path-wins", json={**BODY, "id": body_id})
    assert r.status_code == 503, r.text


@pytest.mark.parametrize("body_id", [None, 7, ["x"]])
def test_create_still_wants_a_string_id(client: TestClient, body_id: Any) -> None:
    r = client.post("/api/v1/connectors", json={**BODY, "id": body_id})
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["details"]] == ["id"]


def _with(part: str, kind: str, config: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(BODY))
    out[part] = {kind: config}
    return out


KAFKA_SINK: dict[str, Any] = {
    "connection": {"brokers": ["127.0.0.1:9092"]},
    "format": {"debezium": {}},
    "topic_name_template": "{prefix}.{database_or_schema}.{table}",
}
MYSQL_SOURCE: dict[str, Any] = {"connection": {"host": "h", "user": "u", "password": "p", "database": "d"}}
#: kinds of the schema not built yet (the refusals are about them; kafka, webhook and mysql are available now)
CLICKHOUSE_SINK: dict[str, Any] = {
    "connection": {"http_url": "http://127.0.0.1:8123", "user": "u", "password": "p"},
    "target_database": "d",
}
SQLSERVER_SOURCE: dict[str, Any] = {"connection": {"host": "h", "database": "d"}}


@pytest.mark.parametrize(
    ("url", "part", "kind", "config"),
    [
        ("/api/v1/connectors", "sink", "clickhouse", CLICKHOUSE_SINK),
        ("/api/v1/connectors", "sink", "snowflake", {}),
        ("/api/v1/connectors/with-sqlserver", "source", "sqlserver", SQLSERVER_SOURCE),
        # The kind is refused before its own configuration is looked at: no list of clickhouse fields to fill in.
        ("/api/v1/connectors", "sink", "clickhouse", {}),
    ],
)
def test_unavailable_kind_is_422_with_the_field_the_problem_and_the_fix(
    client: TestClient, url: str, part: kinds.Part, kind: str, config: Any
) -> None:
    r = client.post(url, json=_with(part, kind, config))
    assert r.status_code == 422, r.text
    out = r.json()
    refusal = kinds.unavailable(part, kind)
    assert out["error"] == "UnsupportedKind"
    assert out["message"] == refusal.message
    assert out["fix"] == refusal.fix
    assert out["details"] == [
        {"loc": [part, kind], "field": f"{part}.{kind}", "msg": refusal.message, "fix": refusal.fix}
    ]
    available = ", ".join(kinds.available(part))
    assert out["message"] == (
        f"{part}.{kind} is not available in this version of Sluice yet; available {part}s: {available}"
    )
    assert out["fix"] == f"Use one of the available {part}s, or upgrade Sluice once {kind} support lands."
    assert '"p"' not in r.text


def test_both_parts_unavailable_are_reported_together(client: TestClient) -> None:
    body = _with("source", "sqlserver", SQLSERVER_SOURCE)
    body["sink"] = {"clickhouse": CLICKHOUSE_SINK}
    r = client.post("/api/v1/connectors", json=body)
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["details"]] == ["source.sqlserver", "sink.clickhouse"]


def test_two_kinds_or_an_unknown_kind_are_schema_errors_not_unavailable_kinds(client: TestClient) -> None:
    two = json.loads(json.dumps(BODY))
    two["source"]["mysql"] = MYSQL_SOURCE
    r = client.post("/api/v1/connectors", json=two)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "InvalidSpec"
    assert "exactly one source kind" in r.text
    typo = _with("sink", "kafak", KAFKA_SINK)
    r = client.post("/api/v1/connectors", json=typo)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "InvalidSpec"
    assert "sink.kafak" in [d["field"] for d in r.json()["details"]]


def test_available_kinds_pass(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The list is the switch: once clickhouse is listed, the same body goes on to Kubernetes."""
    assert client.post("/api/v1/connectors", json=_with("sink", "clickhouse", CLICKHOUSE_SINK)).status_code == 422
    monkeypatch.setattr(kinds, "AVAILABLE_SINKS", (*kinds.AVAILABLE_SINKS, "clickhouse"))
    assert client.post("/api/v1/connectors", json=_with("sink", "clickhouse", CLICKHOUSE_SINK)).status_code == 503
