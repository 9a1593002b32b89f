"""The non-PostgreSQL sinks and the ``sink`` one-of.

Like `sources`, every sink of the schema is modelled so the schema is the complete reference; which kinds this
version runs is decided in `sluice.kinds` alone, and the others are refused with its message.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from sluice.models.common import (
    NonEmptyStr,
    NonNegativeInt,
    OneOf,
    Port,
    PositiveInt,
    Secret,
    SecretRef,
    SluiceModel,
    kind_one_of_json_schema,
)
from sluice.models.migration import MigrationStrategy
from sluice.models.postgres import PostgresSink, PostgresSslMode

__all__ = [
    "ClickHouseConnection",
    "ClickHouseEngine",
    "ClickHouseSink",
    "DatabricksAuth",
    "DatabricksM2mAuth",
    "DatabricksPatAuth",
    "DatabricksSink",
    "DebeziumFormat",
    "KafkaAcks",
    "KafkaAuth",
    "KafkaConfig",
    "KafkaConnection",
    "KafkaMechanism",
    "KafkaProtocol",
    "KafkaSink",
    "KafkaTopicOptions",
    "KafkaTransactions",
    "MaterializeConnection",
    "MaterializeSink",
    "MessageFormat",
    "NativeFormat",
    "Serde",
    "Sink",
    "SnowflakeAuth",
    "SnowflakeConnection",
    "SnowflakeKeyPairAuth",
    "SnowflakePasswordAuth",
    "SnowflakeSink",
    "WebhookAuth",
    "WebhookBasicAuth",
    "WebhookBatch",
    "WebhookBearerAuth",
    "WebhookCompression",
    "WebhookHeaderAuth",
    "WebhookRateLimit",
    "WebhookRetry",
    "WebhookSink",
]


# --- ClickHouse ------------------------------------------------------------------------------------------------


class ClickHouseConnection(SluiceModel):
    """How to reach ClickHouse over its HTTP interface."""

    http_url: NonEmptyStr
    """HTTP(S) endpoint, e.g. https://clickhouse.example.com:8443."""
    user: NonEmptyStr
    """User name."""
    password: Secret | None = None
    """Password. Prefer `password_secret_ref`."""
    password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the password (alternative to `password`)."""
    ssl_root_cert: str | None = None
    """CA certificate (PEM) to verify the server."""
    ssl_client_cert_pem: str | None = None
    """Client certificate (PEM) for mutual TLS."""
    ssl_client_key_pem: Secret | None = None
    """Client private key (PEM). Prefer `ssl_client_key_pem_secret_ref`."""
    ssl_client_key_pem_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the client private key."""
    ssl_verify: bool = True
    """Verify the server certificate."""


class ClickHouseEngine(StrEnum):
    """Table engine of created tables."""

    AUTO = "Auto"
    MERGE_TREE = "MergeTree"
    NULL = "Null"


class ClickHouseSink(SluiceModel):
    """Write into ClickHouse (ReplacingMergeTree with a version column and a deleted flag for upserts)."""

    connection: ClickHouseConnection
    """Connection to ClickHouse."""
    target_database: NonEmptyStr
    """Database the tables are written to."""
    async_inserts: bool = True
    """Use asynchronous inserts."""
    engine: ClickHouseEngine = ClickHouseEngine.AUTO
    """Auto (ReplacingMergeTree), MergeTree (append only) or Null (discard; for testing)."""
    history_mode: bool | None = None
    """Keep every version of every row (append with operation and commit columns) instead of the latest state."""
    migration_strategy: MigrationStrategy | None = None
    """Which source schema changes are applied automatically."""


# --- Snowflake -------------------------------------------------------------------------------------------------


class SnowflakePasswordAuth(SluiceModel):
    """Password authentication."""

    password: Secret | None = None
    """Password. Prefer `password_secret_ref`."""
    password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the password (alternative to `password`)."""


class SnowflakeKeyPairAuth(SluiceModel):
    """Key-pair authentication."""

    private_key_pem: Secret | None = None
    """Private key (PEM). Prefer `private_key_pem_secret_ref`."""
    private_key_pem_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the private key."""
    private_key_password: Secret | None = None
    """Passphrase of an encrypted private key."""
    private_key_password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the passphrase."""


class SnowflakeAuth(OneOf):
    """Authentication: exactly one of password, key_pair."""

    one_of_label = "Snowflake authentication method"

    password: SnowflakePasswordAuth | None = None
    """User and password."""
    key_pair: SnowflakeKeyPairAuth | None = None
    """RSA key pair."""


class SnowflakeConnection(SluiceModel):
    """How to connect to Snowflake."""

    account_identifier: NonEmptyStr
    """Account identifier, e.g. myorg-myaccount."""
    user: NonEmptyStr
    """User name."""
    warehouse: NonEmptyStr
    """Virtual warehouse that runs the loads."""
    role: str | None = None
    """Role to use; the user's default role when omitted."""
    auth: SnowflakeAuth
    """How to authenticate."""


class SnowflakeSink(SluiceModel):
    """Write into Snowflake."""

    connection: SnowflakeConnection
    """Connection to Snowflake."""
    target_database: NonEmptyStr
    """Database the tables are written to."""
    target_schema: NonEmptyStr
    """Schema the tables are written to."""
    use_transactions: bool = False
    """Apply each batch in one transaction."""
    history_mode: bool | None = None
    """Keep every version of every row instead of the latest state."""
    migration_strategy: MigrationStrategy | None = None
    """Which source schema changes are applied automatically."""


# --- Materialize -----------------------------------------------------------------------------------------------


class MaterializeConnection(SluiceModel):
    """How to connect to Materialize (PostgreSQL wire protocol)."""

    host: NonEmptyStr
    """Host name of the Materialize region or instance."""
    port: Port = 6875
    """TCP port."""
    dbname: NonEmptyStr
    """Database name."""
    user: NonEmptyStr
    """User (e-mail or service account)."""
    app_password: Secret | None = None
    """App password. Prefer `app_password_secret_ref`."""
    app_password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the app password."""
    cluster: str | None = None
    """Cluster that runs the writes."""
    ssl_mode: PostgresSslMode = PostgresSslMode.REQUIRE
    """TLS mode, as for PostgreSQL."""
    ssl_cert: str | None = None
    """Client certificate (PEM)."""
    ssl_key: Secret | None = None
    """Client private key (PEM). Prefer `ssl_key_secret_ref`."""
    ssl_key_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the client private key."""
    ssl_root_cert: str | None = None
    """CA certificate (PEM) to verify the server."""


class MaterializeSink(SluiceModel):
    """Write into Materialize tables."""

    connection: MaterializeConnection
    """Connection to Materialize."""
    target_schema: NonEmptyStr
    """Schema the tables are written to."""
    migration_strategy: MigrationStrategy | None = None
    """Which source schema changes are applied automatically."""


# --- message formats (Kafka, webhook) --------------------------------------------------------------------------


class Serde(StrEnum):
    """Serialization of message keys and values."""

    JSON = "json"
    AVRO = "avro"
    PROTOBUF = "protobuf"


class DebeziumFormat(SluiceModel):
    """Debezium-compatible change events (envelope with before/after/source/op)."""

    value_serde: Serde = Serde.JSON
    """Serialization of message values."""
    key_serde: Serde = Serde.JSON
    """Serialization of message keys."""
    include_before: bool = True
    """Include the row's previous values in update and delete events."""
    tombstones_on_delete: bool = True
    """Send a tombstone (null value) after each delete, for log compaction."""
    emit_tx_metadata: bool = False
    """Emit transaction begin/end events."""
    schemas_enable: bool = True
    """JSON values and keys carry their Kafka Connect schema (JsonConverter's ``schemas.enable``); false sends the
    payload alone. A Sluice addition to the reference schema."""


class NativeFormat(SluiceModel):
    """Sluice's compact change events (the row plus operation and position)."""

    value_serde: Serde = Serde.JSON
    """Serialization of message values."""
    key_serde: Serde = Serde.JSON
    """Serialization of message keys."""


class MessageFormat(OneOf):
    """Change event format: exactly one of debezium, native."""

    one_of_label = "message format"

    debezium: DebeziumFormat | None = None
    """Debezium-compatible envelope."""
    native: NativeFormat | None = None
    """Sluice's compact format."""


# --- Kafka -----------------------------------------------------------------------------------------------------


class KafkaProtocol(StrEnum):
    """Security protocol."""

    PLAINTEXT = "Plaintext"
    SSL = "Ssl"
    SASL_PLAINTEXT = "SaslPlaintext"
    SASL_SSL = "SaslSsl"


class KafkaMechanism(StrEnum):
    """SASL mechanism."""

    PLAIN = "Plain"
    SCRAM_SHA256 = "ScramSha256"
    SCRAM_SHA512 = "ScramSha512"
    GSSAPI = "GssApi"
    OAUTHBEARER = "OauthBearer"


class KafkaAuth(SluiceModel):
    """Security settings of the Kafka connection."""

    protocol: KafkaProtocol = KafkaProtocol.PLAINTEXT
    """Plaintext, Ssl, SaslPlaintext or SaslSsl."""
    mechanism: KafkaMechanism | None = None
    """SASL mechanism (with SaslPlaintext/SaslSsl)."""
    username: str | None = None
    """SASL user name."""
    password: Secret | None = None
    """SASL password. Prefer `password_secret_ref`."""
    password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the SASL password."""
    ssl_ca_pem: str | None = None
    """CA certificate (PEM) to verify the brokers."""
    ssl_cert_pem: str | None = None
    """Client certificate (PEM) for mutual TLS."""
    ssl_key_pem: Secret | None = None
    """Client private key (PEM). Prefer `ssl_key_pem_secret_ref`."""
    ssl_key_pem_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the client private key."""


class KafkaAcks(StrEnum):
    """Acknowledgements required for a write."""

    ALL = "All"
    LEADER = "Leader"
    NONE = "None"


class KafkaTransactions(SluiceModel):
    """Kafka transactions (exactly-once delivery to consumers reading committed)."""

    enabled: bool = False
    """Write each batch in a Kafka transaction."""
    transactional_id: str | None = None
    """transactional.id; derived from the connector id when omitted."""
    timeout_ms: PositiveInt | None = None
    """transaction.timeout.ms."""


class KafkaConfig(SluiceModel):
    """Producer settings."""

    acks: KafkaAcks = KafkaAcks.ALL
    """All, Leader or None."""
    compression_type: str | None = None
    """none, gzip, snappy, lz4 or zstd."""
    linger_ms: NonNegativeInt | None = None
    """linger.ms."""
    batch_size: PositiveInt | None = None
    """batch.size in bytes."""
    enable_idempotence: bool | None = None
    """enable.idempotence."""
    transactions: KafkaTransactions | None = None
    """Transactional writes."""


class KafkaConnection(SluiceModel):
    """How to reach the Kafka cluster."""

    brokers: list[NonEmptyStr] = Field(min_length=1)
    """Bootstrap brokers as host:port."""
    auth: KafkaAuth | None = None
    """Security settings; plaintext without authentication when omitted."""
    config: KafkaConfig | None = None
    """Producer settings."""


class KafkaTopicOptions(SluiceModel):
    """Settings of topics Sluice creates."""

    partitions: PositiveInt = 1
    """Partitions per topic."""
    replication_factor: PositiveInt = 1
    """Replicas per partition."""


class KafkaSink(SluiceModel):
    """Publish change events to Kafka topics (one topic per table)."""

    connection: KafkaConnection
    """Connection to Kafka."""
    format: MessageFormat
    """Change event format."""
    topic_name_template: str = "{prefix}.{database_or_schema}.{table}"
    """Topic name per table; placeholders {prefix} (connector id), {database_or_schema}, {table}."""
    topic_options: KafkaTopicOptions | None = None
    """Settings of created topics."""


# --- Databricks ------------------------------------------------------------------------------------------------


class DatabricksPatAuth(SluiceModel):
    """Personal access token."""

    workspace_host: NonEmptyStr
    """Workspace URL, e.g. https://adb-123.4.azuredatabricks.net."""
    personal_access_token: Secret | None = None
    """Token. Prefer `personal_access_token_secret_ref`."""
    personal_access_token_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the token."""


class DatabricksM2mAuth(SluiceModel):
    """OAuth machine-to-machine (service principal)."""

    workspace_host: NonEmptyStr
    """Workspace URL."""
    client_id: NonEmptyStr
    """Service principal's application id."""
    client_secret: Secret | None = None
    """OAuth secret. Prefer `client_secret_secret_ref`."""
    client_secret_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the OAuth secret."""


class DatabricksAuth(OneOf):
    """Authentication: exactly one of pat, m2m."""

    one_of_label = "Databricks authentication method"

    pat: DatabricksPatAuth | None = None
    """Personal access token."""
    m2m: DatabricksM2mAuth | None = None
    """Service principal OAuth."""


class DatabricksSink(SluiceModel):
    """Write into Databricks (Unity Catalog) Delta tables."""

    auth: DatabricksAuth
    """How to authenticate to the workspace."""
    warehouse: NonEmptyStr
    """SQL warehouse id."""
    target_catalog: NonEmptyStr
    """Unity Catalog catalog."""
    target_schema: NonEmptyStr
    """Schema the tables are written to."""
    volume: str | None = None
    """Volume used for staging files; a Sluice-managed one when omitted."""
    history_mode: bool | None = None
    """Keep every version of every row instead of the latest state."""
    migration_strategy: MigrationStrategy | None = None
    """Which source schema changes are applied automatically."""


# --- Webhook ---------------------------------------------------------------------------------------------------


class WebhookBearerAuth(SluiceModel):
    """Authorization: Bearer <token>."""

    token: Secret | None = None
    """Token. Prefer `token_secret_ref`."""
    token_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the token."""


class WebhookBasicAuth(SluiceModel):
    """HTTP basic authentication."""

    username: NonEmptyStr
    """User name."""
    password: Secret | None = None
    """Password. Prefer `password_secret_ref`."""
    password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the password."""


class WebhookHeaderAuth(SluiceModel):
    """A custom header carrying a credential."""

    name: NonEmptyStr
    """Header name, e.g. X-Api-Key."""
    value: Secret | None = None
    """Header value. Prefer `value_secret_ref`."""
    value_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the header value."""


class WebhookAuth(OneOf):
    """Authentication: exactly one of bearer, basic, header."""

    one_of_label = "webhook authentication method"

    bearer: WebhookBearerAuth | None = None
    """Bearer token."""
    basic: WebhookBasicAuth | None = None
    """Basic authentication."""
    header: WebhookHeaderAuth | None = None
    """Custom header."""


class WebhookCompression(StrEnum):
    """Request body compression."""

    NONE = "None"
    GZIP = "Gzip"
    ZSTD = "Zstd"
    BR = "Br"


class WebhookBatch(SluiceModel):
    """How many changes one request carries."""

    max_batch_size: PositiveInt | None = None
    """Most change events per request."""
    max_payload_bytes: PositiveInt = 1048576
    """Largest request body before compression, in bytes (1 MiB)."""


class WebhookRateLimit(SluiceModel):
    """Client-side rate limit."""

    max_requests_per_second: PositiveInt | None = None
    """Most requests per second; unlimited when omitted."""
    max_bytes_per_second: PositiveInt | None = None
    """Most bytes per second; unlimited when omitted."""


class WebhookRetry(SluiceModel):
    """Retries of failed requests (5xx, 429, network errors) with exponential backoff."""

    max_retries: NonNegativeInt | None = None
    """Most retries per request; bounded by max_retry_duration_ms when omitted."""
    initial_backoff_ms: PositiveInt = 1000
    """First backoff."""
    max_backoff_ms: PositiveInt = 180000
    """Longest single backoff."""
    max_retry_duration_ms: PositiveInt = 3600000
    """Give up (and fail the connector) after retrying this long."""


class WebhookSink(SluiceModel):
    """POST change events to an HTTP endpoint; each request carries an Idempotency-Key derived from table, row
    identity and commit position, so retried deliveries can be deduplicated."""

    url: NonEmptyStr
    """Base URL of the endpoint (https://...)."""
    path_template: str | None = None
    """Path appended to url per table; placeholders {schema} and {table}."""
    auth: WebhookAuth | None = None
    """How to authenticate; none when omitted."""
    format: MessageFormat | None = None
    """Change event format; native JSON when omitted."""
    compression: WebhookCompression = WebhookCompression.NONE
    """Request body compression."""
    batch: WebhookBatch | None = None
    """Batching of events into requests."""
    rate_limit: WebhookRateLimit | None = None
    """Client-side rate limit."""
    retry: WebhookRetry | None = None
    """Retry policy."""
    request_timeout_ms: PositiveInt = 30000
    """Timeout of one request."""
    ssl_root_cert: str | None = None
    """CA certificate (PEM text, or a path the worker can read) trusted for the receiver's certificate, besides the
    system's trust store: for a receiver whose certificate a private CA signed. A Sluice addition to the reference
    schema, named as ClickHouse's `connection.ssl_root_cert`."""
    ssl_verify: bool = True
    """Verify the receiver's certificate and host name (https URLs). false accepts any certificate, which lets anyone
    on the path read and alter the events: for tests only. A Sluice addition to the reference schema, named as
    ClickHouse's `connection.ssl_verify`."""


# --- the one-of --------------------------------------------------------------------------------------------------


class Sink(OneOf):
    """Where data goes: exactly one of postgres, clickhouse, snowflake, materialize, kafka, databricks, webhook."""

    one_of_label = "sink kind"
    model_config = ConfigDict(json_schema_extra=kind_one_of_json_schema("sink"))

    postgres: PostgresSink | None = None
    """PostgreSQL."""
    clickhouse: ClickHouseSink | None = None
    """ClickHouse."""
    snowflake: SnowflakeSink | None = None
    """Snowflake."""
    materialize: MaterializeSink | None = None
    """Materialize."""
    kafka: KafkaSink | None = None
    """Apache Kafka."""
    databricks: DatabricksSink | None = None
    """Databricks."""
    webhook: WebhookSink | None = None
    """HTTP webhook."""
