"""The Kafka sink's pure parts: librdkafka settings from the spec (and refusals naming the field), topic names,
error classification by Kafka error code."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError

from sluice.errors import ConfigError, ConflictError, TransientError
from sluice.models.sinks import KafkaSink
from sluice.worker.events import TableId
from sluice.worker.sinks.kafka.errors import classify_error
from sluice.worker.sinks.kafka.settings import producer_settings, redacted, transactional_id
from sluice.worker.sinks.kafka.topics import TopicNamer


def model(**connection: Any) -> KafkaSink:
    body: dict[str, Any] = {"connection": {"brokers": ["b1:9092", "b2:9092"], **connection}, "format": {"debezium": {}}}
    return KafkaSink.model_validate(body)


def test_defaults_are_an_idempotent_producer_with_acks_all() -> None:
    s = producer_settings(model(), "c1")
    assert s["bootstrap.servers"] == "b1:9092,b2:9092"
    assert (s["acks"], s["enable.idempotence"], s["security.protocol"]) == ("all", True, "plaintext")
    assert "transactional.id" not in s
    assert transactional_id(model(), "c1") is None
    assert s["queue.buffering.max.kbytes"] == 32 * 1024  # bounded memory, not librdkafka's 1 GiB


def test_transactions_and_producer_options() -> None:
    config = {
        "compression_type": "ZSTD",
        "linger_ms": 20,
        "batch_size": 65536,
        "transactions": {"enabled": True, "timeout_ms": 30000},
    }
    s = producer_settings(model(config=config), "c1")
    assert s["transactional.id"] == "sluice-c1"
    assert (s["compression.type"], s["linger.ms"], s["batch.size"], s["transaction.timeout.ms"]) == (
        "zstd",
        20,
        65536,
        30000,
    )
    named = model(config={"transactions": {"enabled": True, "transactional_id": "mine"}})
    assert producer_settings(named, "c1")["transactional.id"] == "mine"


def test_sasl_scram_and_tls_material_and_no_secret_in_the_loggable_copy() -> None:
    auth = {
        "protocol": "SaslSsl",
        "mechanism": "ScramSha512",
        "username": "u",
        "password": "pw-secret",
        "ssl_ca_pem": "CA",
        "ssl_cert_pem": "CERT",
        "ssl_key_pem": "KEY-secret",
    }
    s = producer_settings(model(auth=auth), "c1")
    assert (s["security.protocol"], s["sasl.mechanisms"], s["sasl.username"]) == ("sasl_ssl", "SCRAM-SHA-512", "u")
    assert (s["sasl.password"], s["ssl.ca.pem"], s["ssl.certificate.pem"], s["ssl.key.pem"]) == (
        "pw-secret",
        "CA",
        "CERT",
        "KEY-secret",
    )
    assert "secret" not in repr(redacted(s))


@pytest.mark.parametrize(
    ("connection", "field"),
    [
        ({"auth": {"protocol": "SaslSsl", "mechanism": "GssApi"}}, "sink.kafka.connection.auth.mechanism"),
        ({"auth": {"protocol": "SaslPlaintext", "mechanism": "OauthBearer"}}, "sink.kafka.connection.auth.mechanism"),
        ({"auth": {"protocol": "SaslPlaintext"}}, "sink.kafka.connection.auth.mechanism"),
        ({"auth": {"protocol": "SaslPlaintext", "mechanism": "Plain", "username": "u"}}, "auth.password"),
        ({"auth": {"protocol": "Plaintext", "mechanism": "Plain"}}, "sink.kafka.connection.auth.mechanism"),
        ({"auth": {"protocol": "Plaintext", "ssl_ca_pem": "CA"}}, "sink.kafka.connection.auth.protocol"),
        ({"auth": {"protocol": "Ssl", "ssl_cert_pem": "C"}}, "sink.kafka.connection.auth.ssl_key_pem"),
        ({"config": {"acks": "Leader", "enable_idempotence": True}}, "sink.kafka.connection.config.acks"),
        ({"config": {"acks": "None", "transactions": {"enabled": True}}}, "sink.kafka.connection.config.acks"),
        ({"config": {"compression_type": "brotli"}}, "sink.kafka.connection.config.compression_type"),
        (
            {"config": {"enable_idempotence": False, "transactions": {"enabled": True}}},
            "sink.kafka.connection.config.enable_idempotence",
        ),
    ],
)
def test_refusals_name_the_field_and_the_fix(connection: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        producer_settings(model(**connection), "c1")
    assert field in info.value.message
    assert info.value.fix


def test_leader_acks_without_idempotence_is_allowed() -> None:
    s = producer_settings(model(config={"acks": "Leader", "enable_idempotence": False}), "c1")
    assert (s["acks"], s["enable.idempotence"]) == ("1", False)


def test_avro_is_refused_naming_the_serde_field() -> None:
    m = KafkaSink.model_validate(
        {"connection": {"brokers": ["b:9092"]}, "format": {"debezium": {"value_serde": "avro"}}}
    )
    with pytest.raises(ConfigError) as info:
        producer_settings(m, "c1")
    assert "sink.kafka.format.debezium.value_serde" in info.value.message


def test_topic_names_from_the_template() -> None:
    namer = TopicNamer("{prefix}.{database_or_schema}.{table}", "orders")
    assert namer.topic(TableId("public", "line items")) == "orders.public.line_items"
    assert namer.transaction_topic == "orders.transaction"
    with pytest.raises(ConfigError) as info:
        TopicNamer("{prefix}.{schema}", "orders")
    assert "{schema}" in info.value.message and "sink.kafka.topic_name_template" in info.value.message


@pytest.mark.parametrize(
    ("code", "cls", "fix_has"),
    [
        (KafkaError.SASL_AUTHENTICATION_FAILED, ConfigError, "username and password"),
        (KafkaError._AUTHENTICATION, ConfigError, "username and password"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, ConfigError, "ACLs"),
        (KafkaError.PRODUCER_FENCED, ConflictError, "transactional_id"),
        (KafkaError._ALL_BROKERS_DOWN, TransientError, "brokers"),
        (KafkaError.NOT_ENOUGH_REPLICAS, TransientError, "brokers"),
        (KafkaError.INVALID_REPLICATION_FACTOR, ConfigError, "replication_factor"),
    ],
)
def test_errors_by_code(code: int, cls: type[Exception], fix_has: str) -> None:
    err = classify_error(KafkaError(code, "x"), "doing")
    assert type(err) is cls
    assert fix_has in err.fix
