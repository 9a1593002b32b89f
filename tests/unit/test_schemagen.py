"""Schema generation: the checked-in CRD and OpenAPI document are current, and the CRD schema is structural."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice import kinds, schemagen
from sluice.models import Connector, PostgresSslMode

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return schemagen.build_crd()


@pytest.fixture(scope="module")
def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.fixture(scope="module")
def spec_schema(root_schema: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = root_schema["properties"]["spec"]
    return spec


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (properties, items, additionalProperties)."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = schema
    for part in dotted.split("."):
        node = node["properties"][part]
    return node


# --- golden ----------------------------------------------------------------------------------------------------


def test_checked_in_files_match_the_models() -> None:
    """The golden files are the checked-in outputs themselves; regenerate with `make generate`."""
    for item in schemagen.generated_files():
        checked_in = (REPO_ROOT / item.path).read_text(encoding="utf-8")
        assert checked_in == item.text, f"{item.path} is stale: run `sluice generate` and commit"


def test_check_mode_reports_drift_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(check=False, root=tmp_path)
    assert schemagen.run(args) == 0
    crd_file = tmp_path / schemagen.CRD_PATH
    assert crd_file.exists()
    assert (tmp_path / schemagen.OPENAPI_PATH).exists()
    assert schemagen.run(argparse.Namespace(check=True, root=tmp_path)) == 0

    crd_file.write_text(crd_file.read_text().replace("default: 5432", "default: 5433", 1))
    capsys.readouterr()
    assert schemagen.run(argparse.Namespace(check=True, root=tmp_path)) == 1
    out, err = capsys.readouterr()
    assert "-                            default: 5433" in out
    assert "+                            default: 5432" in out
    assert "crds/connector.yaml" in err
    assert "make generate" in err
    assert "default: 5433" in crd_file.read_text()  # --check never writes


def test_generated_yaml_has_no_anchors() -> None:
    text = (REPO_ROOT / schemagen.CRD_PATH).read_text()
    assert "&id" not in text
    assert "*id" not in text
    assert yaml.safe_load(text) == schemagen.build_crd()


# --- structural schema -----------------------------------------------------------------------------------------


def test_crd_identity(crd: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "connectors.sluice.dev"
    spec = crd["spec"]
    assert spec["group"] == "sluice.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "Connector"
    assert spec["names"]["plural"] == "connectors"
    assert spec["names"]["singular"] == "connector"
    assert spec["names"]["categories"] == ["sluice"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns(crd: dict[str, Any]) -> None:
    columns = {c["name"]: c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Source"]["jsonPath"] == ".status.source_kind"
    assert columns["Sink"]["jsonPath"] == ".status.sink_kind"
    assert columns["State"]["jsonPath"] == ".status.state"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Lag"]["jsonPath"] == ".status.lag_seconds"
    assert columns["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    status_props = set(at(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "status")["properties"])
    for column in columns.values():
        if column["jsonPath"].startswith(".status."):
            field = column["jsonPath"].split(".")[2].split("[")[0]
            assert field in status_props, column


FORBIDDEN_KEYS = {"$ref", "$defs", "anyOf", "allOf", "oneOf", "not", "title", "writeOnly", "readOnly", "const"}


def test_schema_is_structural(root_schema: dict[str, Any]) -> None:
    for path, node in walk(root_schema):
        assert not FORBIDDEN_KEYS & set(node), f"{path}: {FORBIDDEN_KEYS & set(node)}"
        assert node.get("additionalProperties") is not False, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        if "properties" in node:
            assert "additionalProperties" not in node, path
        if "format" in node:
            assert node["format"] in schemagen.K8S_FORMATS, path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True, path


def test_every_field_has_a_description(root_schema: dict[str, Any]) -> None:
    for path, node in walk(root_schema):
        if path.endswith("[]") or path.endswith("{}") or path == ".metadata":
            continue
        assert node.get("description"), f"{path} has no description"
        assert "\n" not in node["description"].strip() or "\n\n" in node["description"], path


def test_explain_worthy_connection_docs(spec_schema: dict[str, Any]) -> None:
    conn = at(spec_schema, "source.postgres.connection")
    assert conn["description"] == "Connection to the source database."
    ssl_mode = conn["properties"]["ssl_mode"]
    # `kubectl explain` says what each mode does in Sluice's words (not a pointer to libpq's manual).
    assert "libpq" not in ssl_mode["description"]
    assert ssl_mode["enum"] == [m.value for m in PostgresSslMode]
    for mode in ssl_mode["enum"]:
        assert f"{mode} (" in ssl_mode["description"], f"ssl_mode {mode} is not explained"
    assert conn["required"] == ["host", "user", "database"]


def test_defaults_and_bounds_follow_the_seed(spec_schema: dict[str, Any]) -> None:
    conn = at(spec_schema, "source.postgres.connection")["properties"]
    assert conn["port"] == {
        "description": "TCP port of the PostgreSQL server.",
        "type": "integer",
        "default": 5432,
        "minimum": 1,
        "maximum": 65535,
    }
    assert conn["ssl_mode"]["default"] == "Prefer"
    assert conn["ssl_mode"]["enum"] == ["Prefer", "Require", "Disable", "VerifyCa", "VerifyFull"]
    assert conn["max_pool_size"]["default"] == 0
    assert conn["max_pool_size"]["minimum"] == 0
    assert conn["operation_lock_timeout_seconds"]["default"] == 0
    pg = at(spec_schema, "source.postgres")["properties"]
    assert pg["parallel_snapshots_enabled"]["default"] is True
    assert pg["partitions_as_root"]["default"] is False
    logical = at(spec_schema, "source.postgres.replication_type.logical_replication")["properties"]
    assert logical["retry_window_seconds"]["default"] == 300
    assert logical["skip_snapshots"]["default"] is False
    assert spec_schema["properties"]["disabled"]["default"] is False
    # Optional values without a default: nullable, never `default: null`.
    assert conn["ssl_cert"].get("nullable") is True
    assert "default" not in conn["ssl_cert"]


def test_spec_requires_source_and_sink_but_not_id(spec_schema: dict[str, Any]) -> None:
    assert spec_schema["required"] == ["source", "sink"]
    assert spec_schema["properties"]["id"]["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    assert spec_schema["properties"]["id"]["maxLength"] == 63


def rules_of(node: dict[str, Any]) -> dict[str, str]:
    return {r["rule"]: r["message"] for r in node.get("x-kubernetes-validations", [])}


def test_exactly_one_source_and_sink_as_cel(spec_schema: dict[str, Any]) -> None:
    source_rules = rules_of(spec_schema["properties"]["source"])
    one_of = "[has(self.postgres), has(self.sqlserver), has(self.mysql), has(self.mongo), has(self.oracle), "
    one_of += "has(self.file_source)].filter(x, x).size() == 1"
    assert source_rules[one_of] == "exactly one of postgres, sqlserver, mysql, mongo, oracle, file_source must be set"
    sink_rules = rules_of(spec_schema["properties"]["sink"])
    ((rule, message),) = [(r, m) for r, m in sink_rules.items() if r.endswith(".size() == 1")]
    for key in ("postgres", "clickhouse", "snowflake", "materialize", "kafka", "databricks", "webhook"):
        assert f"has(self.{key})" in rule
        assert key in message
    # The one-of keys themselves are optional in the schema.
    assert "required" not in spec_schema["properties"]["source"]


def test_every_one_of_in_the_models_became_a_cel_rule(spec_schema: dict[str, Any]) -> None:
    one_ofs = [path for path, node in walk(spec_schema) if any(".size() == 1" in r for r in rules_of(node))]
    # source, sink, schedule, tunnel, ssh auth, replication types, TLS modes, auth methods, formats, mappings...
    assert len(one_ofs) >= 20
    assert "" not in one_ofs


def test_secret_and_reference_exclusive_as_cel(spec_schema: dict[str, Any]) -> None:
    conn = at(spec_schema, "sink.postgres.connection")
    rules = rules_of(conn)
    assert "!(has(self.password) && has(self.password_secret_ref))" in rules
    assert "!(has(self.ssl_key) && has(self.ssl_key_secret_ref))" in rules
    ref = conn["properties"]["password_secret_ref"]
    assert ref["required"] == ["name", "key"]
    assert conn["properties"]["password"]["format"] == "password"


def test_root_rules_tie_the_name_to_the_id(root_schema: dict[str, Any]) -> None:
    rules = rules_of(root_schema)
    assert any("self.metadata.name.matches(" in r for r in rules)
    assert "!has(self.spec.id) || self.spec.id == self.metadata.name" in rules


def test_status_schema_is_permissive_and_has_no_defaults(root_schema: dict[str, Any]) -> None:
    status = root_schema["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    for field in ("observedGeneration", "conditions", "state", "run_id", "tables", "lag_bytes", "lag_seconds"):
        assert field in status["properties"], field
    assert status["properties"]["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert status["properties"]["lag_seconds"]["type"] == "number"
    assert status["properties"]["created_at"]["format"] == "date-time"
    for path, node in walk(status):
        assert "default" not in node, path


def test_conversion_refuses_what_it_cannot_express() -> None:
    with pytest.raises(schemagen.SchemaConversionError, match="union of several types"):
        schemagen.to_structural(
            {"description": "x", "anyOf": [{"type": "string"}, {"type": "integer"}]}, {}, path="spec.x"
        )
    with pytest.raises(schemagen.SchemaConversionError, match="not supported"):
        schemagen.to_structural({"description": "x", "type": "string", "contentEncoding": "base64"}, {})
    with pytest.raises(schemagen.SchemaConversionError, match="no description"):
        schemagen.to_structural({"type": "object", "properties": {"a": {"type": "string"}}}, {}, path="spec")


def test_crd_defaults_match_model_defaults(spec_schema: dict[str, Any]) -> None:
    """Applying the CRD's defaults to a minimal spec yields what pydantic fills in (the two must agree)."""

    def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
        if isinstance(value, dict) and "properties" in schema:
            for name, prop in schema["properties"].items():
                if name not in value and "default" in prop:
                    value[name] = prop["default"]
                if name in value:
                    value[name] = apply_defaults(prop, value[name])
        elif isinstance(value, list) and "items" in schema:
            return [apply_defaults(schema["items"], v) for v in value]
        return value

    minimal = {
        "id": "orders",
        "source": {
            "postgres": {
                "connection": {"host": "h", "user": "u", "database": "d"},
                "replication_type": {"logical_replication": {}},
            }
        },
        "sink": {"postgres": {"connection": {"host": "h", "user": "u", "database": "d"}}},
    }
    defaulted = apply_defaults(spec_schema, json.loads(json.dumps(minimal)))
    assert defaulted == Connector.model_validate(minimal).model_dump(mode="json", exclude_none=True)


# --- OpenAPI ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return schemagen.build_openapi()


def test_openapi_has_the_connector_schemas_with_one_of(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    for name in ("ConnectorBody", "ConnectorResponse", "ConnectorList", "ConnectorCommand", "Source", "Sink"):
        assert name in schemas, name
    assert schemas["Source"]["oneOf"] == [
        {"required": [k]} for k in ("postgres", "sqlserver", "mysql", "mongo", "oracle", "file_source")
    ]
    # One-of members are plain objects (no anyOf-with-null), so generated examples pick exactly one.
    assert schemas["Source"]["properties"]["postgres"] == {
        "$ref": "#/components/schemas/PostgresSource",
        "description": "PostgreSQL (logical replication or snapshot).",
    }
    # Any string is a valid placeholder id in the body, even "" (the reference's note suggests it).
    assert schemas["ConnectorBody"]["properties"]["id"]["type"] == "string"
    assert "minLength" not in schemas["ConnectorBody"]["properties"]["id"]
    assert "pattern" not in schemas["ConnectorBody"]["properties"]["id"]
    assert schemas["ConnectorBody"]["required"] == ["id", "source", "sink"]
    assert schemas["ConnectorBody"]["additionalProperties"] is False


def test_openapi_paths(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"].startswith("3.")
    paths = openapi["paths"]
    assert "post" in paths["/api/v1/connectors"]
    assert "get" in paths["/api/v1/connectors"]
    assert {"get", "post", "patch"} <= set(paths["/api/v1/connectors/{id}"])
    assert "post" in paths["/api/v1/connector/command/{id}"]


def test_fallback_document_without_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the API package existed the document came from the models and the reference endpoint table."""
    monkeypatch.setattr(schemagen, "_app_factory", lambda: None)
    doc = schemagen.build_openapi()
    test_openapi_has_the_connector_schemas_with_one_of(doc)
    test_openapi_paths(doc)
    test_openapi_refs_resolve(doc)
    assert "Error" in doc["components"]["schemas"]


def test_openapi_refs_resolve(openapi: dict[str, Any]) -> None:
    text = json.dumps(openapi)
    schemas = openapi["components"]["schemas"]
    for ref in set(part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]):
        assert ref in schemas, ref


# --- kinds this version runs (sluice.kinds) -----------------------------------------------------------------------


@pytest.mark.parametrize("part", ["source", "sink"])
def test_each_unavailable_kind_is_refused_by_a_cel_rule_with_the_api_message(
    spec_schema: dict[str, Any], part: kinds.Part
) -> None:
    node = spec_schema["properties"][part]
    every = list(node["properties"])
    assert set(every) == set(kinds.schema_kinds(part)), "the CRD documents every kind of the schema"
    refusing = {
        r["fieldPath"]: r
        for r in node["x-kubernetes-validations"]
        if r["rule"].startswith("!has(self.") and "fieldPath" in r
    }
    unavailable = [k for k in every if k not in kinds.available(part)]
    assert unavailable, "the test needs at least one unavailable kind"
    assert sorted(refusing) == sorted(f".{k}" for k in unavailable)
    for kind in unavailable:
        rule = refusing[f".{kind}"]
        assert rule["rule"] == f"!has(self.{kind})"
        assert rule["reason"] == "FieldValueForbidden"
        refusal = kinds.unavailable(part, kind)
        # The same words as the REST API's 422 (message) and its fix.
        assert refusal.message in rule["message"]
        assert refusal.fix in rule["message"]
        assert f"{part}.{kind} is not available in this version of Sluice yet" in rule["message"]
    for kind in kinds.available(part):
        assert f".{kind}" not in refusing


@pytest.mark.parametrize("part", ["source", "sink"])
def test_descriptions_say_which_kinds_are_available(spec_schema: dict[str, Any], part: kinds.Part) -> None:
    node = spec_schema["properties"][part]
    assert "Available in this version of Sluice: " + ", ".join(kinds.available(part)) in node["description"]
    for kind, prop in node["properties"].items():
        refused = "is not available in this version of Sluice yet" in prop["description"]
        assert refused == (kind not in kinds.available(part)), (kind, prop["description"])


def test_openapi_still_describes_every_kind_and_says_which_are_available(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert list(schemas["Sink"]["properties"]) == list(kinds.schema_kinds("sink"))
    assert kinds.availability_note("sink") in schemas["Sink"]["description"]
    assert "sink.clickhouse is not available" in schemas["Sink"]["properties"]["clickhouse"]["description"]
    for kind in kinds.AVAILABLE_SINKS:
        assert "not available" not in schemas["Sink"]["properties"][kind]["description"], kind


def test_flipping_the_switch_drops_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a kind is one edit of one list: the generated rule for it disappears, the others stay."""
    monkeypatch.setattr(kinds, "AVAILABLE_SINKS", ("postgres", "kafka"))
    node = {"properties": {k: {} for k in kinds.schema_kinds("sink")}}
    paths = [r["fieldPath"] for r in schemagen.unavailable_kind_rules("sink", node)]
    assert ".kafka" not in paths
    assert ".webhook" in paths
    assert kinds.unavailable("sink", "webhook").message.endswith("available sinks: postgres, kafka")


@pytest.mark.parametrize("part", ["source", "sink"])
def test_identity_is_immutable_in_the_crd_with_the_rest_api_words(spec_schema: dict[str, Any], part: str) -> None:
    """A transition rule (oldSelf) per identity field of every kind, and one for the kind itself; each message
    is the REST API's refusal for that field (sluice.models.identity)."""
    from sluice.models import identity

    node: dict[str, Any] = at(spec_schema, part)
    kind_rules = [r for r in node["x-kubernetes-validations"] if "oldSelf" in r["rule"]]
    assert [r["message"] for r in kind_rules] == [identity.immutable_kind(part).text]  # type: ignore[arg-type]
    for kind in node["properties"]:
        assert f"has(self.{kind}) == has(oldSelf.{kind})" in kind_rules[0]["rule"]
    checked = 0
    for kind, kind_node in node["properties"].items():
        connection = kind_node.get("properties", {}).get("connection")
        if connection is None:
            continue
        rules = {
            r.get("fieldPath"): r for r in connection.get("x-kubernetes-validations", []) if "oldSelf" in r["rule"]
        }
        fields = [f for f in identity.IDENTITY_FIELDS if f in connection["properties"]]
        for field in fields:
            rule = rules[f".{field}"]
            assert rule["message"] == identity.immutable_field(part, kind, field).text  # type: ignore[arg-type]
            assert f"self.{field} == oldSelf.{field}" in rule["rule"]
            checked += 1
    assert checked >= 3  # postgres host, port, database at least
