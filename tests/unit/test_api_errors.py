"""Mapping of Kubernetes client failures and bad request bodies to Sluice errors (and so HTTP statuses)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from sluice.api.body import media_type, parse_json
from sluice.api.validation import config_error
from sluice.errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigError,
    ConflictError,
    KubernetesUnavailableError,
    NotFoundError,
    RequestError,
    SluiceError,
)
from sluice.k8s.errors import kube_errors, translate_api_exception
from sluice.models import Connector


def _api_exc(code: int, **status: Any) -> ApiException:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, **status}
    return ApiException(status=code, reason="x", body=json.dumps(body))


@pytest.mark.parametrize(
    ("code", "cls", "http"),
    [
        (404, NotFoundError, 404),
        (409, ConflictError, 409),
        (422, ConfigError, 422),
        (400, ConfigError, 422),
        (401, AuthenticationError, 401),
        (403, AuthorizationError, 403),
        (429, KubernetesUnavailableError, 503),
        (500, KubernetesUnavailableError, 503),
        (503, KubernetesUnavailableError, 503),
    ],
)
def test_status_codes_map_to_error_classes(code: int, cls: type[SluiceError], http: int) -> None:
    err = translate_api_exception(_api_exc(code, message="m"), 'connector "a" in namespace "b"')
    assert type(err) is cls
    assert err.http_status == http
    assert err.fix


def test_already_exists_says_how_to_replace() -> None:
    err = translate_api_exception(_api_exc(409, reason="AlreadyExists"), 'connector "a"')
    assert "already exists" in err.message
    assert "POST /api/v1/connectors/{id}" in err.fix


def test_422_causes_become_field_details_relative_to_spec() -> None:
    exc = _api_exc(
        422,
        reason="Invalid",
        message='Connector.sluice.dev "a" is invalid',
        details={
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": "must be <= 65535",
                    "field": "spec.source.postgres.connection.port",
                },
                {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.tables[2].name"},
            ]
        },
    )
    err = translate_api_exception(exc, "x")
    assert isinstance(err, ConfigError)
    dicts = [d.as_dict() for d in err.details]
    assert dicts[0]["loc"] == ["source", "postgres", "connection", "port"]
    assert dicts[0]["msg"] == "must be <= 65535"
    assert dicts[1]["loc"] == ["tables", 2, "name"]
    assert dicts[1]["field"] == "tables[2].name"


def test_non_json_body_still_maps() -> None:
    err = translate_api_exception(ApiException(status=502, reason="Bad Gateway", body="<html>"), "x")
    assert isinstance(err, KubernetesUnavailableError)
    assert "Bad Gateway" in err.message


class _Ctx:
    host = "https://127.0.0.1:1"


@pytest.mark.parametrize(
    "exc",
    [
        urllib3.exceptions.MaxRetryError(None, "/x", reason=ConnectionRefusedError(111, "refused")),  # type: ignore[arg-type]
        urllib3.exceptions.ReadTimeoutError(None, "/x", "read timed out"),  # type: ignore[arg-type]
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),
    ],
)
def test_connection_failures_are_503(exc: BaseException) -> None:
    with pytest.raises(KubernetesUnavailableError) as info, kube_errors("x", _Ctx()):
        raise exc
    assert "127.0.0.1:1" in info.value.message
    assert info.value.http_status == 503


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"{", "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
def test_malformed_bodies_are_400(raw: bytes, fragment: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_json(raw)
    assert info.value.http_status == 400
    assert fragment in info.value.message


def test_media_type_parsing() -> None:
    assert media_type("Application/JSON; charset=utf-8") == "application/json"
    assert media_type(None) == ""


def test_validation_errors_name_path_problem_and_fix_without_echoing_input() -> None:
    body = {
        "id": "a",
        "source": {
            "postgres": {
                "connection": {
                    "host": "h",
                    "port": 70000,
                    "user": "u",
                    "password": "hunter2-secret",
                    "database": "d",
                    "ssl_mode": "Sometimes",
                },
                "replication_type": {"logical_replication": {}},
            }
        },
        "sink": {"postgres": {"connection": {"host": "h", "user": "u", "database": "d"}}},
        "bogus": 1,
    }
    with pytest.raises(ValidationError) as info:
        Connector.model_validate(body)
    err = config_error(info.value)
    assert err.http_status == 422
    fields = {d.as_dict()["field"]: d for d in err.details}
    assert "source.postgres.connection.port" in fields
    assert "source.postgres.connection.ssl_mode" in fields
    assert "bogus" in fields
    assert fields["bogus"].fix
    assert "hunter2-secret" not in json.dumps(err.as_dict())


def test_missing_namespace_is_named() -> None:
    exc = _api_exc(
        404, reason="NotFound", message='namespaces "nope" not found', details={"name": "nope", "kind": "namespaces"}
    )
    err = translate_api_exception(exc, 'connector "a" in namespace "nope"')
    assert isinstance(err, NotFoundError)
    assert err.message == 'namespace "nope" does not exist'
