"""Pure parts of the validate/catalog service and the dry-run documentation: parsing, views, the documents."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.api.app import create_app
from sluice.api.services.validation import (
    VALIDATION_ID,
    Caller,
    ValidationService,
    _as_view,
    _without_selection,
)
from sluice.api.settings import ApiSettings
from sluice.errors import ConfigError
from sluice.k8s import Kube
from sluice.worker.sources.base import Check

CALLER = Caller(user=None, namespace="default")
CONN = {"host": "db", "user": "u", "password": "pw-123", "database": "d"}


@pytest.fixture
def service() -> ValidationService:
    return ValidationService(Kube())  # never connects: these paths do not reach Kubernetes


def test_a_source_alone_becomes_a_connector_around_it(service: ValidationService) -> None:
    body = {"postgres": {"connection": CONN, "replication_type": {"logical_replication": {}}}}
    connector = service.source_connector(CALLER, body)
    assert connector.id == VALIDATION_ID
    assert connector.source.kind == "postgres"
    assert connector.source.config.connection.password.get_secret_value() == "pw-123"


def test_a_bad_source_is_422_with_paths_under_source(service: ValidationService) -> None:
    with pytest.raises(ConfigError) as info:
        service.source_connector(CALLER, {"postgres": {"connection": {"host": "db"}}})
    fields = {d.as_dict()["field"] for d in info.value.details}
    assert "source.postgres.connection.user" in fields
    assert "pw" not in info.value.message


@pytest.mark.parametrize("body", [[], "x", None])
def test_a_body_that_is_not_an_object_is_422(service: ValidationService, body: Any) -> None:
    with pytest.raises(ConfigError) as info:
        service.sink_connector(CALLER, body)
    assert info.value.details[0].loc == ["body"]


def test_an_unavailable_kind_is_refused_with_the_shared_words(service: ValidationService) -> None:
    with pytest.raises(ConfigError) as info:
        service.source_connector(CALLER, {"sqlserver": {}})
    assert info.value.reason == "UnsupportedKind"
    assert "source.sqlserver is not available" in info.value.message


def test_the_redaction_placeholder_is_not_a_password(service: ValidationService) -> None:
    with pytest.raises(ConfigError):
        service.source_connector(
            CALLER,
            {"postgres": {"connection": CONN | {"password": "**********"}, "replication_type": {"snapshot": {}}}},
        )


def test_listing_everything_drops_the_catalog_and_the_publication(service: ValidationService) -> None:
    body = {
        "postgres": {
            "connection": CONN,
            "replication_type": {"logical_replication": {"publication_name": "mine"}},
            "catalog": {"default_action": "Exclude", "schemas": [{"name": "public"}]},
        }
    }
    connector = service.source_connector(CALLER, body)
    everything = _without_selection(connector)
    config = everything.source.config
    assert config.catalog is None or (config.catalog.default_action == "Include" and not config.catalog.schemas)
    assert not config.replication_type.logical_replication.publication_name
    assert config.connection.password.get_secret_value() == "pw-123"
    # the original is untouched
    assert connector.source.config.replication_type.logical_replication.publication_name == "mine"


def test_a_check_becomes_a_view_with_a_dotted_field() -> None:
    view = _as_view(Check("publication", False, "missing", "create it", ("source", "postgres", "catalog")))
    assert view.status == "failed" and view.fix == "create it"
    assert view.field == "source.postgres.catalog" and view.loc == ["source", "postgres", "catalog"]
    passed = _as_view(Check("wal_level", True, "ok"))
    assert passed.status == "passed" and passed.field is None and passed.fix is None


def test_a_buffer_is_checked_by_its_fields_and_said_unused(service: ValidationService) -> None:
    result = service.validate_buffer(CALLER, {"object_store": {"url": "gs://b/p"}})
    assert result.valid is True and result.kind == "object_store"
    assert [(c.name, c.status) for c in result.checks] == [("fields", "passed"), ("connection", "skipped")]
    with pytest.raises(ConfigError) as info:
        service.validate_buffer(CALLER, {"object_store": {"url": "ftp://x"}})
    assert info.value.details[0].as_dict()["field"] == "buffer.object_store.url"


def test_the_openapi_document_describes_validate_catalog_and_dry_run() -> None:
    doc = create_app(ApiSettings(no_auth=True)).openapi()
    for path in ("/api/v1/validate/source", "/api/v1/validate/sink", "/api/v1/validate/buffer"):
        ok = doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/ValidationResult"}
    catalog = doc["paths"]["/api/v1/catalog/source"]["post"]
    assert catalog["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/CatalogResult")
    body = catalog["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert body[0] == {"$ref": "#/components/schemas/Source"} and body[1]["required"] == ["connector_id"]
    for path, method in (
        ("/api/v1/connectors", "post"),
        ("/api/v1/connectors/{id}", "post"),
        ("/api/v1/connectors/{id}", "patch"),
    ):
        params = {p["name"]: p for p in doc["paths"][path][method]["parameters"]}
        assert params["dry_run"]["schema"]["type"] == "boolean", path
    dry = doc["components"]["schemas"]["DryRunResult"]
    assert {"dry_run", "created", "connector"} <= set(dry["required"])
    assert doc["components"]["schemas"]["CheckView"]["properties"]["status"]["enum"] == ["passed", "failed", "skipped"]


class _Exploding:
    def checks(self) -> list[Check]:
        raise UnicodeError("encoding with 'idna' codec failed")

    def close(self) -> None:
        raise OSError("already closed")


def test_a_driver_failure_without_a_class_is_a_failed_check_not_a_500() -> None:
    from sluice.api.services.validation import _run_checks

    result = _run_checks("source", "mysql", _Exploding)
    assert result.valid is False
    (check,) = result.checks
    assert check.name == "connection" and check.status == "failed"
    assert "UnicodeError" in check.message and check.field == "source.mysql.connection"

    def cannot_build() -> Any:
        raise ValueError("bad port")

    built = _run_checks("sink", "postgres", cannot_build)
    assert [(c.name, c.status) for c in built.checks] == [("configuration", "failed")]


@pytest.mark.parametrize(
    ("part", "body", "field"),
    [
        ("sink", {"webhook": {"url": "https://hooks.example/in", "ssl_root_cert": "/etc/shadow"}}, "ssl_root_cert"),
        (
            "source",
            {
                "postgres": {
                    "connection": CONN | {"ssl_mode": "VerifyCa", "ssl_root_cert": "/var/run/secrets/ca.crt"},
                    "replication_type": {"snapshot": {}},
                }
            },
            "ssl_root_cert",
        ),
    ],
)
def test_a_certificate_path_is_not_read_by_the_api(
    service: ValidationService, part: str, body: dict[str, Any], field: str
) -> None:
    """validate/catalog build the source or sink inside the API pod: a path would make it read (and reveal whether
    there is) any file of that pod. PEM text is taken; a path is for the worker."""
    parse = service.sink_connector if part == "sink" else service.source_connector
    with pytest.raises(ConfigError) as info:
        parse(CALLER, body)
    [detail] = info.value.details
    assert detail.loc[0] == part and detail.loc[-1] == field and "PEM" in detail.fix
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    kind = next(iter(body))
    if part == "sink":
        ok = {kind: body[kind] | {field: pem}}
    else:
        ok = {kind: body[kind] | {"connection": body[kind]["connection"] | {field: pem}}}
    assert parse(CALLER, ok) is not None
