"""No secret value in a CR spec, a response or a log line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluice.api.secrets import check_no_placeholders, connector_view, redact_raw, referenced_keys, secret_name
from sluice.errors import ConfigError
from sluice.models import REDACTED, Connector
from sluice.models.resource import connector_to_resource
from sluice.models.secrets import extract_secrets

PASSWORD = "pa$$word-unit-test"


def seed_body(password: str = PASSWORD) -> dict[str, Any]:
    conn = {"host": "example.com", "user": "string", "password": password, "database": "string"}
    return {
        "id": "c-abc",
        "source": {"postgres": {"connection": dict(conn), "replication_type": {"logical_replication": {}}}},
        "sink": {"postgres": {"connection": dict(conn)}},
    }


def test_extracted_resource_holds_only_references() -> None:
    connector = Connector.model_validate(seed_body())
    stored, data = extract_secrets(connector, secret_name(connector.id))
    resource = connector_to_resource(stored, "ns")
    text = json.dumps(resource)
    assert PASSWORD not in text
    conn = resource["spec"]["source"]["postgres"]["connection"]
    assert conn["password_secret_ref"] == {"name": "c-abc-credentials", "key": "source.postgres.connection.password"}
    assert "password" not in conn
    assert data == {"source.postgres.connection.password": PASSWORD, "sink.postgres.connection.password": PASSWORD}
    assert referenced_keys(stored, "c-abc-credentials") == set(data)


def test_view_of_a_cr_with_references_shows_the_references() -> None:
    connector = Connector.model_validate(seed_body())
    stored, _ = extract_secrets(connector, "c-abc-credentials")
    view = connector_view(connector_to_resource(stored, "ns") | {"metadata": {"name": "c-abc"}})
    assert view["id"] == "c-abc"
    assert view["source"]["postgres"]["connection"]["password_secret_ref"]["name"] == "c-abc-credentials"
    assert PASSWORD not in json.dumps(view)


def test_view_of_a_cr_with_an_inline_password_redacts_it() -> None:
    spec = seed_body()
    spec.pop("id")
    view = connector_view({"metadata": {"name": "c-abc"}, "spec": spec})
    assert view["source"]["postgres"]["connection"]["password"] == REDACTED
    assert PASSWORD not in json.dumps(view)


def test_view_of_an_invalid_spec_still_redacts() -> None:
    spec = seed_body()
    spec["unknown_field"] = 1
    spec["sink"]["postgres"]["connection"]["client_secret"] = "s3cr3t-value"
    view = connector_view({"metadata": {"name": "c-abc"}, "spec": spec})
    text = json.dumps(view)
    assert PASSWORD not in text
    assert "s3cr3t-value" not in text
    assert view["unknown_field"] == 1


def test_redact_raw_keeps_references_and_non_secrets() -> None:
    raw = {"password_secret_ref": {"name": "n", "key": "k"}, "host": "h", "ssl_key": "K", "nested": [{"token": "t"}]}
    assert redact_raw(raw) == {
        "password_secret_ref": {"name": "n", "key": "k"},
        "host": "h",
        "ssl_key": REDACTED,
        "nested": [{"token": REDACTED}],
    }


@pytest.mark.parametrize("placeholder", [REDACTED, "**redacted**"])
def test_placeholder_sent_back_as_a_password_is_refused(placeholder: str) -> None:
    connector = Connector.model_validate(seed_body(password=placeholder))
    with pytest.raises(ConfigError) as info:
        check_no_placeholders(connector)
    fields = [d.as_dict()["field"] for d in info.value.details]
    assert "source.postgres.connection.password" in fields
