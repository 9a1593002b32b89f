"""``sink.kafka`` as librdkafka settings: connection, authentication, TLS and producer options.

Every refusal names the field, the problem and the fix (a :class:`~sluice.errors.ConfigError`, 422 in the API and
a status error in the worker). Secrets (the SASL password, the client key) go into the returned dict only: never
log it (:func:`redacted` gives a loggable copy).
"""

from __future__ import annotations

from typing import Any

from sluice.errors import ConfigError, ErrorDetail
from sluice.models.sinks import (
    DebeziumFormat,
    KafkaAcks,
    KafkaMechanism,
    KafkaProtocol,
    NativeFormat,
    Serde,
)
from sluice.models.sinks import (
    KafkaSink as KafkaSinkModel,
)

__all__ = ["FIELD", "client_settings", "producer_settings", "redacted", "transactional_id"]

#: the sink's field path, for messages
FIELD = ("sink", "kafka")
COMPRESSION = ("none", "gzip", "snappy", "lz4", "zstd")
#: transaction.timeout.ms when transactions.timeout_ms is omitted
DEFAULT_TRANSACTION_TIMEOUT_MS = 900_000

_PROTOCOLS = {
    KafkaProtocol.PLAINTEXT: "plaintext",
    KafkaProtocol.SSL: "ssl",
    KafkaProtocol.SASL_PLAINTEXT: "sasl_plaintext",
    KafkaProtocol.SASL_SSL: "sasl_ssl",
}
_MECHANISMS = {
    KafkaMechanism.PLAIN: "PLAIN",
    KafkaMechanism.SCRAM_SHA256: "SCRAM-SHA-256",
    KafkaMechanism.SCRAM_SHA512: "SCRAM-SHA-512",
}
_ACKS = {KafkaAcks.ALL: "all", KafkaAcks.LEADER: "1", KafkaAcks.NONE: "0"}
_SECRET_KEYS = ("sasl.password", "ssl.key.pem", "ssl.key.password")


def _refuse(path: tuple[str, ...], message: str, fix: str) -> ConfigError:
    dotted = ".".join(path)
    return ConfigError(f"{dotted}: {message}", fix=fix, details=[ErrorDetail(list(path), message, fix)])


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return str(getter()) if getter is not None else str(value)


def client_settings(model: KafkaSinkModel) -> dict[str, Any]:
    """Bootstrap servers, security protocol, SASL and TLS: what every client (producer, consumer, admin) needs."""
    conn = model.connection
    out: dict[str, Any] = {"bootstrap.servers": ",".join(b.strip() for b in conn.brokers), "log_level": 3}
    auth = conn.auth
    if auth is None:
        out["security.protocol"] = "plaintext"
        return out
    base = (*FIELD, "connection", "auth")
    out["security.protocol"] = _PROTOCOLS[auth.protocol]
    sasl = auth.protocol in (KafkaProtocol.SASL_PLAINTEXT, KafkaProtocol.SASL_SSL)
    if auth.mechanism in (KafkaMechanism.GSSAPI, KafkaMechanism.OAUTHBEARER):
        raise _refuse(
            (*base, "mechanism"),
            f"SASL mechanism {auth.mechanism.value} is not supported by this version of Sluice yet",
            "Use mechanism Plain, ScramSha256 or ScramSha512 with a username and password.",
        )
    if sasl:
        if auth.mechanism is None:
            raise _refuse(
                (*base, "mechanism"),
                f"protocol {auth.protocol.value} needs a SASL mechanism",
                "Set mechanism to Plain, ScramSha256 or ScramSha512.",
            )
        password = _secret(auth.password)
        if not auth.username or password is None:
            missing = "username" if not auth.username else "password"
            raise _refuse(
                (*base, missing),
                f"SASL mechanism {auth.mechanism.value} needs a username and a password; {missing} is missing",
                "Set username and password (or password_secret_ref naming a Secret key).",
            )
        out["sasl.mechanisms"] = _MECHANISMS[auth.mechanism]
        out["sasl.username"] = auth.username
        out["sasl.password"] = password
    elif auth.mechanism is not None:
        raise _refuse(
            (*base, "mechanism"),
            f"a SASL mechanism is set but protocol {auth.protocol.value} does not use SASL",
            "Set protocol to SaslPlaintext or SaslSsl, or remove mechanism.",
        )
    tls = auth.protocol in (KafkaProtocol.SSL, KafkaProtocol.SASL_SSL)
    key = _secret(auth.ssl_key_pem)
    if not tls and (auth.ssl_ca_pem or auth.ssl_cert_pem or key):
        raise _refuse(
            (*base, "protocol"),
            f"TLS material is set but protocol {auth.protocol.value} does not use TLS",
            "Set protocol to Ssl or SaslSsl, or remove the ssl_* fields.",
        )
    if tls:
        if auth.ssl_ca_pem:
            out["ssl.ca.pem"] = auth.ssl_ca_pem
        if bool(auth.ssl_cert_pem) != bool(key):
            missing = "ssl_key_pem" if auth.ssl_cert_pem else "ssl_cert_pem"
            raise _refuse(
                (*base, missing),
                "mutual TLS needs both the client certificate and its key",
                f"Set {missing} (the key may be given as ssl_key_pem_secret_ref), or remove the other one.",
            )
        if auth.ssl_cert_pem and key:
            out["ssl.certificate.pem"] = auth.ssl_cert_pem
            out["ssl.key.pem"] = key
    return out


def transactional_id(model: KafkaSinkModel, connector_id: str) -> str | None:
    """The producer's ``transactional.id`` when transactions are enabled (default ``sluice-<connector id>``)."""
    config = model.connection.config
    tx = config.transactions if config is not None else None
    if tx is None or not tx.enabled:
        return None
    return tx.transactional_id or f"sluice-{connector_id}"


def producer_settings(model: KafkaSinkModel, connector_id: str) -> dict[str, Any]:
    """:func:`client_settings` plus the producer options of ``connection.config`` and the format's serdes checked."""
    check_format(model)
    out = client_settings(model)
    config = model.connection.config
    base = (*FIELD, "connection", "config")
    acks = config.acks if config is not None else KafkaAcks.ALL
    txid = transactional_id(model, connector_id)
    idempotence = config.enable_idempotence if config is not None else None
    if idempotence is None:
        idempotence = acks == KafkaAcks.ALL
    if (idempotence or txid) and acks != KafkaAcks.ALL:
        what = "transactions" if txid else "enable_idempotence"
        raise _refuse(
            (*base, "acks"),
            f"acks {acks.value} cannot be combined with {what} (Kafka requires acks=all for them)",
            f"Set acks to All, or turn {what} off.",
        )
    if txid and idempotence is False:
        raise _refuse(
            (*base, "enable_idempotence"),
            "transactions need an idempotent producer, but enable_idempotence is false",
            "Remove enable_idempotence (or set it to true) when transactions are enabled.",
        )
    out["acks"] = _ACKS[acks]
    out["enable.idempotence"] = bool(idempotence or txid)
    if config is not None:
        if config.compression_type is not None:
            ctype = config.compression_type.strip().lower()
            if ctype not in COMPRESSION:
                raise _refuse(
                    (*base, "compression_type"),
                    f"unknown compression type {config.compression_type!r}",
                    f"Use one of {', '.join(COMPRESSION)}.",
                )
            out["compression.type"] = ctype
        if config.linger_ms is not None:
            out["linger.ms"] = config.linger_ms
        if config.batch_size is not None:
            out["batch.size"] = config.batch_size
        if txid and config.transactions is not None and config.transactions.timeout_ms is not None:
            out["transaction.timeout.ms"] = config.transactions.timeout_ms
    out.setdefault("linger.ms", 5)
    # librdkafka buffers up to 1 GiB of unsent messages by default: a burst of large Debezium events made the worker
    # hold hundreds of MB. 32 MiB keeps every batch full; produce() waits for deliveries when it is reached.
    out.setdefault("queue.buffering.max.kbytes", 32 * 1024)
    if txid:
        out["transactional.id"] = txid
        # A snapshot chunk is one transaction and may take minutes (a whole table without parallel snapshots):
        # default to the brokers' default maximum (transaction.max.timeout.ms, 15 minutes), not the client's 60 s.
        out.setdefault("transaction.timeout.ms", DEFAULT_TRANSACTION_TIMEOUT_MS)
    return out


def check_format(model: KafkaSinkModel) -> None:
    """Only JSON serdes for now: Avro and Protobuf need a schema registry, which this version does not talk to."""
    fmt = model.format
    for kind, sub in (("debezium", fmt.debezium), ("native", fmt.native)):
        if sub is None:
            continue
        assert isinstance(sub, DebeziumFormat | NativeFormat)
        for name in ("key_serde", "value_serde"):
            serde = getattr(sub, name)
            if serde != Serde.JSON:
                raise _refuse(
                    (*FIELD, "format", kind, name),
                    f"{serde.value} needs a schema registry, which this version of Sluice does not support yet",
                    f"Set {name} to json (Kafka Connect's JsonConverter format).",
                )


def redacted(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``settings`` safe to log."""
    return {k: ("***" if k in _SECRET_KEYS else v) for k, v in settings.items()}
