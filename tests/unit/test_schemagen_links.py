"""OpenAPI links (`sluice.schemagen.add_links`): every link names a real operation and a value its source has."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from sluice import schemagen
from sluice.api.app import create_app
from sluice.api.settings import ApiSettings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return schemagen.build_openapi()


def _operations(doc: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        op["operationId"]: (method, path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }


def _links(doc: dict[str, Any]) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    return [
        (method, path, status, name, link)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict)
        for status, response in op.get("responses", {}).items()
        for name, link in response.get("links", {}).items()
    ]


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        return _resolve(doc, next(s for s in schema["anyOf"] if s.get("type") != "null"))
    return schema


def test_create_links_to_everything_done_with_a_connector(document: dict[str, Any]) -> None:
    links = document["paths"]["/api/v1/connectors"]["post"]["responses"]["201"]["links"]
    assert set(links) == set(schemagen.CONNECTOR_LINKS)
    assert links["GetConnector"]["parameters"] == {
        "path.id": "$response.body#/connector/id",
        "query.namespace": "$request.query.namespace",
    }
    assert links["ValidateSource"]["requestBody"] == {"connector_id": "$response.body#/connector/id"}


def test_every_link_targets_an_operation_and_reads_a_field_its_response_has(document: dict[str, Any]) -> None:
    operations = _operations(document)
    links = _links(document)
    assert len(links) >= 5 * len(schemagen.CONNECTOR_LINKS)
    for method, path, status, name, link in links:
        where = f"{method} {path} {status} {name}"
        target_method, target_path, target = operations[link["operationId"]]
        assert (target_method, target_path) == schemagen.CONNECTOR_LINKS[name][:2], where
        params = {p["name"] for p in target.get("parameters", [])}
        expressions = dict(link["parameters"]) | {f"body.{k}": v for k, v in link.get("requestBody", {}).items()}
        for param, expression in expressions.items():
            place, _, param_name = param.partition(".")
            if place in ("path", "query"):
                assert param_name in params, where
            if expression.startswith("$response.body#/"):
                content = document["paths"][path][method]["responses"][status]["content"]["application/json"]
                schema = _resolve(document, content["schema"])
                for part in expression.removeprefix("$response.body#/").split("/"):
                    if "oneOf" in schema:  # 200 of replace/patch: the connector, or a dry run's; both have it
                        schema = _resolve(document, schema["oneOf"][0])
                    assert part in schema.get("properties", {}), f"{where}: {expression}"
                    schema = _resolve(document, schema["properties"][part])


def test_the_served_document_has_the_links_too(document: dict[str, Any]) -> None:
    served = create_app(ApiSettings(kubeconfig="/nonexistent")).openapi()
    assert _links(served) == _links(document)


def test_add_links_is_idempotent(document: dict[str, Any]) -> None:
    again = schemagen.add_links(dict(document))
    assert _links(again) == _links(document)


def test_schemathesis_builds_a_state_machine_from_the_links(document: dict[str, Any]) -> None:
    """schemathesis rejects links it cannot follow (unknown operation or parameter) when it builds the machine."""
    config = SchemathesisConfig.from_dict({"phases": {"stateful": {"inference": {"algorithms": []}}}})
    schema = schemathesis.openapi.from_dict(document, config=config)
    machine = schema.as_state_machine()
    rules = [name for name in vars(machine) if "GetConnector" in name]
    assert len(rules) >= 5, rules
    assert machine.root_rules, "no operation starts a sequence"
