"""The connector models: defaults, one-of rules, ids, secrets, schedules and every source/sink variant."""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

import sluice.models
from sluice.models import (
    REDACTED,
    Connector,
    ConnectorBody,
    ConnectorSpec,
    SecretRef,
    buffer,
    catalog,
    common,
    connector,
    limits,
    migration,
    postgres,
    schedule,
    sinks,
    sources,
    tunnel,
)
from sluice.models import status as status_module

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"

PG_CONNECTION = {"host": "db.example.com", "user": "replicator", "database": "app"}

MINIMAL_SOURCES: dict[str, dict[str, Any]] = {
    "postgres": {"connection": PG_CONNECTION, "replication_type": {"logical_replication": {}}},
    "sqlserver": {
        "connection": {"host": "mssql", "database": "app", "auth": {"standard": {"user": "sa", "password": "x"}}},
        "replication_type": {"capture_table_replication": {}},
    },
    "mysql": {"connection": {"host": "mysql", "user": "repl", "database": "app"}},
    "mongo": {
        "connection": {"address": "mongo:27017", "database": "app"},
        "replication_type": {"change_streams": {"replication_mode": {"schemaless_mode": {}}}},
    },
    "oracle": {
        "connection": {"connect_string": "ora:1521/ORCLCDB", "user": "logminer"},
        "replication_type": {"log_miner": {"dict": "RedoLogs"}},
    },
    "file_source": {
        "object_store": {"url": "s3://bucket/in"},
        "format_details": {"json": {}},
        "table_mapping": {"single": {"destination": "events"}},
    },
}

MINIMAL_SINKS: dict[str, dict[str, Any]] = {
    "postgres": {"connection": PG_CONNECTION},
    "clickhouse": {"connection": {"http_url": "https://ch:8443", "user": "default"}, "target_database": "dw"},
    "snowflake": {
        "connection": {
            "account_identifier": "org-acct",
            "user": "loader",
            "warehouse": "wh",
            "auth": {"key_pair": {"private_key_pem_secret_ref": {"name": "sf", "key": "pem"}}},
        },
        "target_database": "DW",
        "target_schema": "PUBLIC",
    },
    "materialize": {
        "connection": {"host": "mz", "dbname": "materialize", "user": "me@example.com", "app_password": "x"},
        "target_schema": "public",
    },
    "kafka": {"connection": {"brokers": ["kafka:9092"]}, "format": {"debezium": {}}},
    "databricks": {
        "auth": {"pat": {"workspace_host": "https://adb.example.net", "personal_access_token": "dapi"}},
        "warehouse": "wh1",
        "target_catalog": "main",
        "target_schema": "cdc",
    },
    "webhook": {"url": "https://hooks.example.com/cdc"},
}


def body(**overrides: Any) -> dict[str, Any]:
    """A valid connector body (postgres → postgres) with top-level overrides."""
    data: dict[str, Any] = {
        "id": "orders",
        "source": {"postgres": copy.deepcopy(MINIMAL_SOURCES["postgres"])},
        "sink": {"postgres": copy.deepcopy(MINIMAL_SINKS["postgres"])},
    }
    data.update(overrides)
    return data


def errors_of(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple[tuple[Any, ...], str, str]]:
    return [(tuple(e["loc"]), e["type"], e["msg"]) for e in exc.value.errors()]


# --- the reference example -------------------------------------------------------------------------------------

# Fields the reference's response example fills with placeholders ("string", {}) for optional values that the
# request did not set; Sluice omits unset optional fields (exclude_none) instead.
PLACEHOLDER_PATHS = [
    ("source", "postgres", "connection", "ssl_cert"),
    ("source", "postgres", "connection", "ssl_key"),
    ("source", "postgres", "connection", "ssl_root_cert"),
    ("source", "postgres", "catalog"),
    ("sink", "postgres", "connection", "ssl_cert"),
    ("sink", "postgres", "connection", "ssl_key"),
    ("sink", "postgres", "connection", "ssl_root_cert"),
    ("sink", "postgres", "target_schema"),
    ("sink", "postgres", "migration_strategy"),
    ("buffer",),
    ("limits",),
    ("schedule",),
    ("name",),
]


def test_seed_example_parses_and_dumps_the_seed_response_defaults() -> None:
    request = json.loads((GOLDEN / "seed_create_request.json").read_text())
    expected = json.loads((GOLDEN / "seed_create_response.json").read_text())["connector"]
    for path in PLACEHOLDER_PATHS:
        node = expected
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    # The example shows 0 (a placeholder integer); the documented default of retry_window_seconds is 300.
    assert expected["source"]["postgres"]["replication_type"]["logical_replication"]["retry_window_seconds"] == 0
    expected["source"]["postgres"]["replication_type"]["logical_replication"]["retry_window_seconds"] = 300

    parsed = ConnectorBody.model_validate(request)
    dumped = parsed.model_dump(mode="json", exclude_none=True, context={"reveal_secrets": True})
    assert dumped == expected


def test_seed_example_id_is_a_placeholder_for_the_body_but_must_be_a_label_for_a_connector() -> None:
    request = json.loads((GOLDEN / "seed_create_request.json").read_text())
    assert ConnectorBody.model_validate({**request, "id": "Any Placeholder!"}).id == "Any Placeholder!"
    # The reference's note: "use a placeholder value like an empty string".
    assert ConnectorBody.model_validate({**request, "id": ""}).id == ""
    for not_a_string in (None, 7, {"x": 1}):
        with pytest.raises(ValidationError) as exc:
            ConnectorBody.model_validate({**request, "id": not_a_string})
        assert errors_of(exc)[0][0] == ("id",)
    without_id = {k: v for k, v in request.items() if k != "id"}
    with pytest.raises(ValidationError) as exc:
        ConnectorBody.model_validate(without_id)
    assert errors_of(exc)[0][0] == ("id",)
    # A connector (and so a CR's metadata.name) keeps the DNS-1123 rule.
    for bad in ("Any Placeholder!", ""):
        with pytest.raises(ValidationError):
            Connector.model_validate({**request, "id": bad})


def test_defaults_of_a_minimal_postgres_connector() -> None:
    c = Connector.model_validate(body())
    src = c.source.postgres
    assert src is not None
    assert src.connection.port == 5432
    assert src.connection.ssl_mode == "Prefer"
    assert src.connection.max_pool_size == 0
    assert src.connection.operation_lock_timeout_seconds == 0
    assert src.parallel_snapshots_enabled is True
    assert src.partitions_as_root is False
    logical = src.replication_type.logical_replication
    assert logical is not None
    assert (logical.publication_name, logical.retry_window_seconds, logical.skip_snapshots) == (None, 300, False)
    assert c.disabled is False
    assert (c.buffer, c.limits, c.schedule, c.name) == (None, None, None, None)


def test_kind_and_config_name_the_set_key() -> None:
    c = Connector.model_validate(body())
    assert c.source.kind == "postgres"
    assert c.source.config is c.source.postgres
    assert c.sink.kind == "postgres"
    assert c.source.postgres is not None
    assert c.source.postgres.replication_type.kind == "logical_replication"


# --- ids -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["a", "0", "orders", "orders-to-dw", "a1-b2-c3", "x" * 63])
def test_dns_label_ids_are_accepted(good: str) -> None:
    assert Connector.model_validate(body(id=good)).id == good


@pytest.mark.parametrize("bad", ["", "-a", "a-", "Orders", "a_b", "a.b", "a b", "x" * 64, "ä", "abc\n", "{id}"])
def test_other_ids_are_refused_with_the_rule(bad: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(body(id=bad))
    (loc, _type, msg), *_ = errors_of(exc)
    assert loc == ("id",)
    assert "DNS-1123 label" in msg
    assert "at most 63 characters" in msg
    assert "lowercase letters" in msg


def test_cr_spec_id_is_optional_but_still_a_label_when_given() -> None:
    data = body()
    del data["id"]
    assert ConnectorSpec.model_validate(data).id is None
    with pytest.raises(ValidationError):
        ConnectorSpec.model_validate({**data, "id": "Not_A_Label"})


def test_name_is_non_empty_when_given() -> None:
    assert Connector.model_validate(body(name="Orders to DW")).name == "Orders to DW"
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(body(name=""))
    assert errors_of(exc)[0][0] == ("name",)


# --- one-of ----------------------------------------------------------------------------------------------------


def test_source_without_a_kind_names_the_choices() -> None:
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(body(source={}))
    (loc, type_, msg), *_ = errors_of(exc)
    assert loc == ("source",)
    assert type_ == "one_of"
    assert "none is given" in msg
    for key in MINIMAL_SOURCES:
        assert key in msg


def test_two_source_kinds_are_refused_naming_both() -> None:
    two = {"postgres": MINIMAL_SOURCES["postgres"], "mysql": MINIMAL_SOURCES["mysql"]}
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(body(source=two))
    (loc, type_, msg), *_ = errors_of(exc)
    assert (loc, type_) == (("source",), "one_of")
    assert "several are given (postgres, mysql)" in msg


def test_unknown_source_kind_is_an_unknown_field() -> None:
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(body(source={"cassandra": {}}))
    locs = [e[0] for e in errors_of(exc)]
    assert ("source", "cassandra") in locs


def test_nested_one_of_replication_type() -> None:
    src = copy.deepcopy(MINIMAL_SOURCES["postgres"])
    src["replication_type"] = {"logical_replication": {}, "snapshot": {}}
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(body(source={"postgres": src}))
    (loc, type_, msg), *_ = errors_of(exc)
    assert loc == ("source", "postgres", "replication_type")
    assert type_ == "one_of"
    assert "replication type" in msg
    src["replication_type"] = {"snapshot": {}}
    snap = Connector.model_validate(body(source={"postgres": src}))
    assert snap.source.postgres is not None
    assert snap.source.postgres.replication_type.kind == "snapshot"


def test_explicit_null_is_the_same_as_absent_in_a_one_of() -> None:
    c = Connector.model_validate(body(source={"postgres": MINIMAL_SOURCES["postgres"], "mysql": None}))
    assert c.source.kind == "postgres"


# --- strictness ------------------------------------------------------------------------------------------------


def test_unknown_fields_are_refused_with_their_path() -> None:
    data = body()
    data["source"]["postgres"]["connection"]["hots"] = "typo"
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(data)
    assert (("source", "postgres", "connection", "hots"), "extra_forbidden") in [(e[0], e[1]) for e in errors_of(exc)]


@pytest.mark.parametrize(("port", "ok"), [(1, True), (65535, True), (0, False), (70000, False)])
def test_port_bounds(port: int, ok: bool) -> None:
    data = body()
    data["source"]["postgres"]["connection"]["port"] = port
    if ok:
        assert Connector.model_validate(data).source.postgres.connection.port == port  # type: ignore[union-attr]
    else:
        with pytest.raises(ValidationError) as exc:
            Connector.model_validate(data)
        assert errors_of(exc)[0][0] == ("source", "postgres", "connection", "port")


def test_unknown_ssl_mode_lists_the_allowed_values() -> None:
    data = body()
    data["sink"]["postgres"]["connection"]["ssl_mode"] = "prefer"
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(data)
    (loc, type_, msg), *_ = errors_of(exc)
    assert loc == ("sink", "postgres", "connection", "ssl_mode")
    assert type_ == "enum"
    assert "'VerifyFull'" in msg


def test_negative_counters_are_refused() -> None:
    data = body()
    data["source"]["postgres"]["connection"]["max_pool_size"] = -1
    with pytest.raises(ValidationError):
        Connector.model_validate(data)


# --- secrets ---------------------------------------------------------------------------------------------------


def test_password_is_hidden_in_repr_and_redacted_in_json() -> None:
    data = body()
    data["source"]["postgres"]["connection"]["password"] = "hunter2"
    c = Connector.model_validate(data)
    assert "hunter2" not in repr(c)
    assert "hunter2" not in c.model_dump_json()
    assert c.model_dump(mode="json")["source"]["postgres"]["connection"]["password"] == REDACTED
    revealed = c.model_dump(mode="json", context={"reveal_secrets": True})
    assert revealed["source"]["postgres"]["connection"]["password"] == "hunter2"
    password = c.source.postgres.connection.password  # type: ignore[union-attr]
    assert isinstance(password, SecretStr)
    assert password.get_secret_value() == "hunter2"


def test_a_secret_and_its_reference_are_exclusive() -> None:
    data = body()
    conn = data["sink"]["postgres"]["connection"]
    conn["password"] = "x"
    conn["password_secret_ref"] = {"name": "creds", "key": "sink"}
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(data)
    (loc, type_, msg), *_ = errors_of(exc)
    assert loc == ("sink", "postgres", "connection")
    assert type_ == "secret_and_ref"
    assert "'password' and 'password_secret_ref'" in msg
    assert "give only one" in msg


def test_secret_reference_needs_name_and_key() -> None:
    data = body()
    data["sink"]["postgres"]["connection"]["password_secret_ref"] = {"name": "creds"}
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(data)
    assert errors_of(exc)[0][0] == ("sink", "postgres", "connection", "password_secret_ref", "key")


def _all_models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for module in (buffer, catalog, common, connector, limits, migration, postgres, schedule, sinks, sources, tunnel):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseModel) and obj.__module__.startswith("sluice.models"):
                found[obj.__qualname__] = obj
    for _, obj in inspect.getmembers(status_module, inspect.isclass):
        if issubclass(obj, BaseModel) and obj.__module__ == status_module.__name__:
            found[obj.__qualname__] = obj
    return [found[k] for k in sorted(found)]


SECRET_WORDS = ("password", "token", "secret", "private_key", "ssl_key", "client_key", "passphrase")


@pytest.mark.parametrize("model", _all_models(), ids=lambda m: m.__qualname__)
def test_every_field_is_documented_and_every_secret_has_a_reference(model: type[BaseModel]) -> None:
    fields = model.model_fields
    for name, field in fields.items():
        assert field.description, f"{model.__qualname__}.{name} has no docstring"
        if name.endswith("_secret_ref"):
            assert name.removesuffix("_secret_ref") in fields, f"{model.__qualname__}.{name} has no inline twin"
            continue
        looks_secret = any(word in name for word in SECRET_WORDS)
        nested = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        if looks_secret and not nested and "Auth" not in str(field.annotation):
            assert f"{name}_secret_ref" in fields, f"{model.__qualname__}.{name} looks secret but has no _secret_ref"
            assert "SecretStr" in str(field.annotation), f"{model.__qualname__}.{name} is not a SecretStr"


def test_models_are_reexported() -> None:
    for name in sluice.models.__all__:
        assert hasattr(sluice.models, name), name
    assert SecretRef.model_validate({"name": "s", "key": "k"}).key == "k"


# --- schedule --------------------------------------------------------------------------------------------------


def test_rate_schedule() -> None:
    c = Connector.model_validate(body(schedule={"rate": {"value": 6, "unit": "Hour"}}))
    assert c.schedule is not None
    assert c.schedule.kind == "rate"
    with pytest.raises(ValidationError):
        Connector.model_validate(body(schedule={"rate": {"value": 0, "unit": "Hour"}}))
    with pytest.raises(ValidationError):
        Connector.model_validate(body(schedule={"rate": {"value": 1, "unit": "Week"}}))


def test_cron_schedule_defaults_to_utc_and_normalises_spaces() -> None:
    c = Connector.model_validate(body(schedule={"cron": {"expression": "0  3 * * 1-5"}}))
    assert c.schedule is not None
    assert c.schedule.cron is not None
    assert (c.schedule.cron.expression, c.schedule.cron.timezone) == ("0 3 * * 1-5", "UTC")


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("* * * *", "has 4 fields"),
        ("0 0 * * * *", "has 6 fields"),
        ("61 * * * *", "not valid"),
        ("a b c d e", "not valid"),
    ],
)
def test_bad_cron_expressions_say_what_is_wrong(expression: str, needle: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(body(schedule={"cron": {"expression": expression}}))
    (loc, _type, msg), *_ = errors_of(exc)
    assert loc == ("schedule", "cron", "expression")
    assert needle in msg
    assert "minute hour day-of-month month day-of-week" in msg or "minute 0-59" in msg


def test_timezones_are_iana_names() -> None:
    ok = Connector.model_validate(body(schedule={"cron": {"expression": "*/15 * * * *", "timezone": "Europe/Berlin"}}))
    assert ok.schedule is not None
    for bad in ("Mars/Olympus_Mons", "CEST+2", "../etc/passwd"):
        with pytest.raises(ValidationError) as exc:
            Connector.model_validate(body(schedule={"cron": {"expression": "* * * * *", "timezone": bad}}))
        (loc, _type, msg), *_ = errors_of(exc)
        assert loc == ("schedule", "cron", "timezone")
        assert "IANA" in msg


def test_schedule_needs_exactly_one_kind() -> None:
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(
            body(schedule={"rate": {"value": 1, "unit": "Day"}, "cron": {"expression": "* * * * *"}})
        )
    assert errors_of(exc)[0][1] == "one_of"


# --- buffer and limits -----------------------------------------------------------------------------------------


def test_buffer_object_store() -> None:
    c = Connector.model_validate(
        body(buffer={"object_store": {"url": "s3://bucket/sluice", "options": [{"name": "aws_region", "value": "x"}]}})
    )
    assert c.buffer is not None
    store = c.buffer.object_store
    assert (store.allow_http, store.allow_invalid_certificates, store.max_concurrent_parts) == (False, False, None)
    with pytest.raises(ValidationError) as exc:
        Connector.model_validate(body(buffer={"object_store": {"url": "ftp://x"}}))
    assert "s3://" in errors_of(exc)[0][2]


def test_limits() -> None:
    c = Connector.model_validate(body(limits={"cdc": {"flush_interval_ms": 50, "max_buffer_rows": 1000}}))
    assert c.limits is not None
    assert c.limits.cdc is not None
    assert c.limits.cdc.flush_interval_ms == 50
    assert c.limits.snapshot is None
    with pytest.raises(ValidationError):
        Connector.model_validate(body(limits={"cdc": {"flush_interval_ms": 0}}))


# --- every variant ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MINIMAL_SOURCES))
def test_every_source_kind_parses_and_round_trips(kind: str) -> None:
    c = Connector.model_validate(body(source={kind: copy.deepcopy(MINIMAL_SOURCES[kind])}))
    assert c.source.kind == kind
    again = Connector.model_validate(c.model_dump(mode="json", context={"reveal_secrets": True}))
    assert again == c


@pytest.mark.parametrize("kind", list(MINIMAL_SINKS))
def test_every_sink_kind_parses_and_round_trips(kind: str) -> None:
    c = Connector.model_validate(body(sink={kind: copy.deepcopy(MINIMAL_SINKS[kind])}))
    assert c.sink.kind == kind
    again = Connector.model_validate(c.model_dump(mode="json", context={"reveal_secrets": True}))
    assert again == c


def test_all_source_and_sink_kinds_are_covered() -> None:
    assert set(MINIMAL_SOURCES) == set(sources.Source.model_fields)
    assert set(MINIMAL_SINKS) == set(sinks.Sink.model_fields)


def test_wire_names_that_shadow_pydantic_attributes() -> None:
    """``json`` (file format) and ``dict`` (LogMiner) are spelled as in the schema on the wire."""
    c = Connector.model_validate(body(source={"file_source": MINIMAL_SOURCES["file_source"]}))
    assert c.source.file_source is not None
    assert c.source.file_source.format_details.kind == "json"
    dumped = c.model_dump(mode="json")
    assert "json" in dumped["source"]["file_source"]["format_details"]
    o = Connector.model_validate(body(source={"oracle": MINIMAL_SOURCES["oracle"]}))
    assert o.model_dump(mode="json")["source"]["oracle"]["replication_type"]["log_miner"]["dict"] == "RedoLogs"


def test_defaults_of_other_variants() -> None:
    mysql = sources.MySqlSource.model_validate(MINIMAL_SOURCES["mysql"])
    assert (mysql.connection.port, mysql.parallel_snapshots_enabled, mysql.skip_snapshot) == (3306, True, False)
    assert mysql.infer_tinyint1_as_boolean is True
    mssql = sources.SqlServerSource.model_validate(MINIMAL_SOURCES["sqlserver"])
    assert (mssql.connection.port, mssql.snapshot_isolation) == (1433, "Required")
    files = sources.FileSource.model_validate(
        {**MINIMAL_SOURCES["file_source"], "discovery": {"poll": {}}, "error_handling": {}}
    )
    assert files.discovery is not None
    assert files.discovery.poll is not None
    assert files.discovery.poll.interval_seconds == 60
    assert files.error_handling is not None
    assert files.error_handling.on_file_error == "Skip"
    kafka = sinks.KafkaSink.model_validate(MINIMAL_SINKS["kafka"])
    assert kafka.format.debezium is not None
    assert (kafka.format.debezium.include_before, kafka.format.debezium.tombstones_on_delete) == (True, True)
    assert kafka.format.debezium.emit_tx_metadata is False
    webhook = sinks.WebhookSink.model_validate({**MINIMAL_SINKS["webhook"], "batch": {}, "retry": {}})
    assert webhook.request_timeout_ms == 30000
    assert webhook.batch is not None
    assert webhook.batch.max_payload_bytes == 1048576
    assert webhook.retry is not None
    assert (webhook.retry.initial_backoff_ms, webhook.retry.max_backoff_ms) == (1000, 180000)
    assert webhook.retry.max_retry_duration_ms == 3600000
    clickhouse = sinks.ClickHouseSink.model_validate(MINIMAL_SINKS["clickhouse"])
    assert (clickhouse.async_inserts, clickhouse.engine, clickhouse.connection.ssl_verify) == (True, "Auto", True)
    topics = sinks.KafkaTopicOptions()
    assert (topics.partitions, topics.replication_factor) == (1, 1)


def test_catalog_and_migration_strategy() -> None:
    src = copy.deepcopy(MINIMAL_SOURCES["postgres"])
    src["catalog"] = {
        "default_action": "Exclude",
        "schemas": [
            {"name": "public", "tables": [{"name": "orders", "columns": [{"name": "ssn", "action": "Exclude"}]}]}
        ],
    }
    sink = copy.deepcopy(MINIMAL_SINKS["postgres"])
    sink["migration_strategy"] = {"allowed": ["Add", "Nullability"]}
    c = Connector.model_validate(body(source={"postgres": src}, sink={"postgres": sink}))
    assert c.source.postgres is not None
    cat = c.source.postgres.catalog
    assert cat is not None
    assert cat.default_action == "Exclude"
    assert cat.schemas[0].action == "Include"
    assert cat.schemas[0].tables[0].columns[0].action == "Exclude"
    assert c.sink.postgres is not None
    strategy = c.sink.postgres.migration_strategy
    assert strategy is not None
    assert [k.value for k in strategy.allowed] == ["Add", "Nullability"]
    assert strategy.disable_all is False
    sink["migration_strategy"] = {"allowed": ["Rename"]}
    with pytest.raises(ValidationError):
        Connector.model_validate(body(sink={"postgres": sink}))


def test_ssh_tunnel() -> None:
    data = body()
    data["source"]["postgres"]["connection"]["tunnel"] = {
        "ssh": {"bastion_host": "bastion", "user": "jump", "auth": {"private_key": {"private_key": "PEM"}}}
    }
    c = Connector.model_validate(data)
    tunnel_cfg = c.source.postgres.connection.tunnel  # type: ignore[union-attr]
    assert tunnel_cfg is not None
    assert tunnel_cfg.ssh is not None
    assert tunnel_cfg.ssh.bastion_port == 22
    data["source"]["postgres"]["connection"]["tunnel"]["ssh"]["auth"] = {}
    with pytest.raises(ValidationError):
        Connector.model_validate(data)
