"""Finding, moving and resolving credentials; rendering and reading Connector resources."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from sluice.models import Connector, SecretRef
from sluice.models.resource import API_VERSION, KIND, connector_from_resource, connector_to_resource
from sluice.models.secrets import extract_secrets, iter_secrets, resolve_secrets, secret_key_for
from tests.unit.test_models import GOLDEN, MINIMAL_SINKS, MINIMAL_SOURCES, body


def with_inline_secrets() -> dict[str, Any]:
    data = body()
    data["source"]["postgres"]["connection"]["password"] = "src-pw"
    data["source"]["postgres"]["connection"]["ssl_key"] = "-----BEGIN KEY-----"
    data["sink"]["postgres"]["connection"]["password_secret_ref"] = {"name": "existing", "key": "pw"}
    data["buffer"] = {
        "object_store": {"url": "s3://b", "options": [{"name": "aws_region", "value": "eu-1"}, {"name": "empty"}]}
    }
    return data


def test_iter_secrets_finds_every_slot_with_wire_paths() -> None:
    c = Connector.model_validate(with_inline_secrets())
    slots = {path: (value.get_secret_value() if value else None, ref) for path, value, ref in iter_secrets(c)}
    assert slots[("source", "postgres", "connection", "password")] == ("src-pw", None)
    assert slots[("source", "postgres", "connection", "ssl_key")] == ("-----BEGIN KEY-----", None)
    assert slots[("sink", "postgres", "connection", "password")] == (None, SecretRef(name="existing", key="pw"))
    assert slots[("sink", "postgres", "connection", "ssl_key")] == (None, None)
    assert slots[("buffer", "object_store", "options", 0, "value")] == ("eu-1", None)
    assert slots[("buffer", "object_store", "options", 1, "value")] == (None, None)
    assert len(slots) == 6


@pytest.mark.parametrize(
    ("kind", "where", "expected"),
    [
        ("sqlserver", "source", ("source", "sqlserver", "connection", "auth", "standard", "password")),
        ("materialize", "sink", ("sink", "materialize", "connection", "app_password")),
        ("databricks", "sink", ("sink", "databricks", "auth", "pat", "personal_access_token")),
    ],
)
def test_iter_secrets_in_other_variants(kind: str, where: str, expected: tuple[str, ...]) -> None:
    table = MINIMAL_SOURCES if where == "source" else MINIMAL_SINKS
    c = Connector.model_validate(body(**{where: {kind: copy.deepcopy(table[kind])}}))
    inline = [path for path, value, _ in iter_secrets(c) if value is not None]
    assert inline == [expected]


def test_extract_then_resolve_round_trips_and_leaves_no_inline_value() -> None:
    original = Connector.model_validate(with_inline_secrets())
    stored, data = extract_secrets(original, "orders-credentials")
    assert data == {
        "source.postgres.connection.password": "src-pw",
        "source.postgres.connection.ssl_key": "-----BEGIN KEY-----",
        "buffer.object_store.options.0.value": "eu-1",
    }
    assert all(value is None for _, value, _ in iter_secrets(stored))
    pg = stored.source.postgres
    assert pg is not None
    assert pg.connection.password_secret_ref == SecretRef(
        name="orders-credentials", key=secret_key_for(("source", "postgres", "connection", "password"))
    )
    # A reference the user gave stays as it was.
    assert stored.sink.postgres is not None
    assert stored.sink.postgres.connection.password_secret_ref == SecretRef(name="existing", key="pw")

    secrets = {("orders-credentials", k): v for k, v in data.items()} | {("existing", "pw"): "sink-pw"}
    resolved = resolve_secrets(stored, lambda ref: secrets[(ref.name, ref.key)])
    assert all(ref is None for _, _, ref in iter_secrets(resolved))
    assert resolved.sink.postgres is not None
    sink_pw = resolved.sink.postgres.connection.password
    assert sink_pw is not None
    assert sink_pw.get_secret_value() == "sink-pw"
    expected = copy.deepcopy(with_inline_secrets())
    expected["sink"]["postgres"]["connection"] = {**expected["sink"]["postgres"]["connection"], "password": "sink-pw"}
    del expected["sink"]["postgres"]["connection"]["password_secret_ref"]
    assert resolved == Connector.model_validate(expected)


def test_resolve_propagates_lookup_errors() -> None:
    stored = Connector.model_validate(with_inline_secrets())

    def missing(ref: SecretRef) -> str:
        raise KeyError(ref.key)

    with pytest.raises(KeyError, match="pw"):
        resolve_secrets(stored, missing)


def test_to_resource_refuses_inline_secrets_and_names_them() -> None:
    c = Connector.model_validate(with_inline_secrets())
    with pytest.raises(ValueError, match=r"source\.postgres\.connection\.password") as exc:
        connector_to_resource(c, "default")
    assert "src-pw" not in str(exc.value)


def test_resource_round_trip() -> None:
    stored, _ = extract_secrets(Connector.model_validate(with_inline_secrets()), "orders-credentials")
    cr = connector_to_resource(stored, "team-a", labels={"app": "x"})
    assert cr["apiVersion"] == API_VERSION == "sluice.dev/v1alpha1"
    assert cr["kind"] == KIND == "Connector"
    assert cr["metadata"] == {"name": "orders", "namespace": "team-a", "labels": {"app": "x"}}
    assert "id" not in cr["spec"]
    assert "**********" not in str(cr)
    assert connector_from_resource(cr) == stored


def test_from_resource_uses_the_name_and_refuses_a_different_spec_id() -> None:
    cr = {"metadata": {"name": "from-name"}, "spec": {k: v for k, v in body().items() if k != "id"}}
    assert connector_from_resource(cr).id == "from-name"
    cr["spec"]["id"] = "from-name"
    assert connector_from_resource(cr).id == "from-name"
    cr["spec"]["id"] = "other"
    with pytest.raises(ValueError, match=r"differs from metadata\.name"):
        connector_from_resource(cr)


def test_from_resource_reports_spec_errors_with_paths() -> None:
    cr = {"metadata": {"name": "x"}, "spec": {"source": {}, "sink": {"postgres": MINIMAL_SINKS["postgres"]}}}
    with pytest.raises(ValidationError) as exc:
        connector_from_resource(cr)
    assert exc.value.errors()[0]["loc"] == ("source",)


def test_seed_example_becomes_this_custom_resource_and_secret() -> None:
    """Golden: what the REST API stores for the reference's example body (with a server-chosen id).

    Regenerate with ``SLUICE_UPDATE_GOLDEN=1`` after an intended change, and review the diff.
    """
    request = json.loads((GOLDEN / "seed_create_request.json").read_text())
    connector = Connector.model_validate({**request, "id": "c-7f3a9b2e"})
    stored, secret_data = extract_secrets(connector, "c-7f3a9b2e-credentials")
    rendered = {
        "connector": connector_to_resource(stored, "sluice"),
        "secret_data": secret_data,
    }
    golden = GOLDEN / "seed_connector_resource.yaml"
    text = yaml.safe_dump(rendered, sort_keys=False, width=120)
    if os.environ.get("SLUICE_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), "golden differs; rerun with SLUICE_UPDATE_GOLDEN=1 if the change is intended"
    assert "pa$$word" not in yaml.safe_dump(rendered["connector"])
