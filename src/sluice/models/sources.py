"""The non-PostgreSQL sources and the ``source`` one-of.

PostgreSQL is the source the worker implements first; the other five are modelled fully so that the schema is the
complete reference (OpenAPI, ``kubectl explain``) and a spec's shape can be checked. Which kinds this version runs
is decided in `sluice.kinds` alone: the API, the CRD, the operator and the worker refuse the others with one
message, and the descriptions generated from these models say which are available.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from sluice.models.buffer import ObjectStore
from sluice.models.catalog import Catalog
from sluice.models.common import (
    NonEmptyStr,
    NonNegativeInt,
    OneOf,
    Port,
    Secret,
    SecretRef,
    SluiceModel,
    kind_one_of_json_schema,
)
from sluice.models.postgres import PostgresSource

__all__ = [
    "CaFile",
    "CsvFormat",
    "FileDiscovery",
    "FileErrorAction",
    "FileErrorHandling",
    "FileFormat",
    "FilePostProcessing",
    "FileSource",
    "JsonFormat",
    "MongoChangeStreams",
    "MongoConnection",
    "MongoReplicationMode",
    "MongoReplicationType",
    "MongoSchemaMode",
    "MongoSnapshot",
    "MongoSource",
    "MongoSslMode",
    "MoveFile",
    "MySqlConnection",
    "MySqlSource",
    "MySqlSslMode",
    "OracleConnection",
    "OracleDictionary",
    "OracleLogMiner",
    "OracleReplicationType",
    "OracleSource",
    "ParquetFormat",
    "PollDiscovery",
    "Source",
    "SqlServerActiveDirectoryAuth",
    "SqlServerAuth",
    "SqlServerCaptureTableReplication",
    "SqlServerConnection",
    "SqlServerReplicationType",
    "SqlServerSnapshotIsolation",
    "SqlServerSource",
    "SqlServerSslMode",
    "SqlServerUserPasswordAuth",
    "TableMapping",
    "TableMappingAuto",
    "TableMappingDynamic",
    "TableMappingSingle",
]


class Empty(SluiceModel):
    """No settings: the key alone selects the option."""


class CaFile(SluiceModel):
    """TLS with server certificate verification."""

    ca_file: str | None = None
    """CA certificate(s) in PEM used to verify the server; the system trust store when omitted."""


# --- MySQL -----------------------------------------------------------------------------------------------------


class MySqlSslMode(OneOf):
    """TLS mode: exactly one of disable, require, verify_ca, verify_identity."""

    one_of_label = "MySQL TLS mode"

    disable: Empty | None = None
    """No TLS."""
    require: Empty | None = None
    """TLS without certificate verification."""
    verify_ca: CaFile | None = None
    """TLS; the server certificate must be signed by the CA."""
    verify_identity: CaFile | None = None
    """TLS; CA check plus host name check."""


class MySqlConnection(SluiceModel):
    """How to connect to a MySQL or MariaDB server."""

    host: NonEmptyStr
    """Host name or IP address of the server."""
    port: Port = 3306
    """TCP port of the server."""
    user: NonEmptyStr
    """User with REPLICATION SLAVE, REPLICATION CLIENT and SELECT privileges."""
    password: Secret | None = None
    """Password of the user. Prefer `password_secret_ref`."""
    password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the password (alternative to `password`)."""
    database: NonEmptyStr
    """Database to replicate."""
    ssl_mode: MySqlSslMode | None = None
    """TLS mode; the driver default (TLS if available) when omitted."""
    max_pool_size: NonNegativeInt = 0
    """Maximum connections to the server; 0 = default."""


class MySqlSource(SluiceModel):
    """Replicate from MySQL through the binary log (binlog_format=ROW); GTID or file+position is detected."""

    connection: MySqlConnection
    """Connection to the source server."""
    parallel_snapshots_enabled: bool = True
    """Copy tables in parallel during the initial snapshot."""
    skip_snapshot: bool = False
    """Skip the initial copy and only stream new changes."""
    infer_tinyint1_as_boolean: bool = True
    """Treat TINYINT(1) columns as booleans."""
    catalog: Catalog | None = None
    """Which databases, tables and columns to replicate; all when omitted."""


# --- SQL Server ------------------------------------------------------------------------------------------------


class SqlServerUserPasswordAuth(SluiceModel):
    """User name and password."""

    user: NonEmptyStr
    """Login name."""
    password: Secret | None = None
    """Password. Prefer `password_secret_ref`."""
    password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the password (alternative to `password`)."""


class SqlServerActiveDirectoryAuth(SluiceModel):
    """Microsoft Entra ID (Azure Active Directory) access token."""

    token: Secret | None = None
    """Access token. Prefer `token_secret_ref`."""
    token_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the token (alternative to `token`)."""


class SqlServerAuth(OneOf):
    """Authentication: exactly one of standard, windows, activedirectory."""

    one_of_label = "SQL Server authentication method"

    standard: SqlServerUserPasswordAuth | None = None
    """SQL Server authentication."""
    windows: SqlServerUserPasswordAuth | None = None
    """Windows (NTLM) authentication."""
    activedirectory: SqlServerActiveDirectoryAuth | None = None
    """Entra ID token authentication."""


class SqlServerSslMode(OneOf):
    """TLS mode: exactly one of disable, enable."""

    one_of_label = "SQL Server TLS mode"

    disable: Empty | None = None
    """No TLS."""
    enable: CaFile | None = None
    """TLS with certificate verification."""


class SqlServerConnection(SluiceModel):
    """How to connect to Microsoft SQL Server."""

    host: NonEmptyStr
    """Host name or IP address of the server."""
    port: Port = 1433
    """TCP port of the server."""
    database: NonEmptyStr
    """Database to replicate."""
    auth: SqlServerAuth
    """How to authenticate."""
    ssl_mode: SqlServerSslMode | None = None
    """TLS mode; TLS with verification when omitted."""
    max_pool_size: NonNegativeInt = 0
    """Maximum connections to the server; 0 = default."""


class SqlServerCaptureTableReplication(SluiceModel):
    """Snapshot, then read changes from SQL Server change-data-capture tables."""

    cdc_poll_interval_secs: NonNegativeInt | None = None
    """Seconds between polls of the change tables; default chosen by the worker."""
    cdc_max_scans: NonNegativeInt | None = None
    """Maximum scan cycles per poll."""
    cdc_max_trans: NonNegativeInt | None = None
    """Maximum transactions read per scan."""
    skip_snapshot: bool = False
    """Skip the initial copy and only stream new changes."""
    skip_tables_without_ct: bool = False
    """Skip tables that have no change table instead of failing."""
    transactional_cdc_enabled: bool = False
    """Apply changes grouped by source transaction."""


class SqlServerReplicationType(OneOf):
    """How to replicate: exactly one of capture_table_replication, snapshot."""

    one_of_label = "replication type"

    capture_table_replication: SqlServerCaptureTableReplication | None = None
    """Snapshot plus change data capture."""
    snapshot: Empty | None = None
    """One consistent copy of the tables."""


class SqlServerSnapshotIsolation(StrEnum):
    """Whether snapshots use SNAPSHOT isolation."""

    AUTO = "Auto"
    DISABLED = "Disabled"
    REQUIRED = "Required"


class SqlServerSource(SluiceModel):
    """Replicate from Microsoft SQL Server (change data capture must be enabled on the database)."""

    connection: SqlServerConnection
    """Connection to the source server."""
    replication_type: SqlServerReplicationType
    """How to replicate."""
    snapshot_isolation: SqlServerSnapshotIsolation = SqlServerSnapshotIsolation.REQUIRED
    """Auto (use SNAPSHOT isolation when enabled), Disabled, or Required (fail if it is not enabled)."""
    parallel_snapshots_enabled: bool = True
    """Copy tables in parallel during the snapshot."""
    catalog: Catalog | None = None
    """Which schemas, tables and columns to replicate; all when omitted."""


# --- MongoDB ---------------------------------------------------------------------------------------------------


class MongoSslMode(StrEnum):
    """TLS mode of a MongoDB connection."""

    DISABLE = "Disable"
    REQUIRE = "Require"
    VERIFY_FULL = "VerifyFull"


class MongoConnection(SluiceModel):
    """How to connect to MongoDB (a replica set or sharded cluster; change streams need one)."""

    address: NonEmptyStr
    """Host:port list or mongodb:// / mongodb+srv:// URI without credentials."""
    database: NonEmptyStr
    """Database to replicate."""
    user: str | None = None
    """User name."""
    password: Secret | None = None
    """Password. Prefer `password_secret_ref`."""
    password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the password (alternative to `password`)."""
    authentication_source: str | None = None
    """Database holding the user's credentials (authSource), e.g. admin."""
    max_pool_size: NonNegativeInt = 0
    """Maximum connections; 0 = default."""
    ssl_mode: MongoSslMode | None = None
    """TLS mode; the driver default when omitted."""


class MongoSchemaMode(SluiceModel):
    """Infer a typed table schema from the documents."""

    infer_typed_strings: bool = False
    """Infer numbers, dates and booleans from string values."""


class MongoReplicationMode(OneOf):
    """How documents become rows: exactly one of schema_mode, schemaless_mode."""

    one_of_label = "replication mode"

    schema_mode: MongoSchemaMode | None = None
    """Typed columns inferred from the documents."""
    schemaless_mode: Empty | None = None
    """One JSON column holding each document."""


class MongoChangeStreams(SluiceModel):
    """Snapshot, then follow change streams."""

    replication_mode: MongoReplicationMode
    """How documents become rows."""
    skip_snapshot: bool = False
    """Skip the initial copy and only stream new changes."""


class MongoSnapshot(SluiceModel):
    """One copy of the collections."""

    replication_mode: MongoReplicationMode
    """How documents become rows."""


class MongoReplicationType(OneOf):
    """How to replicate: exactly one of change_streams, snapshot."""

    one_of_label = "replication type"

    change_streams: MongoChangeStreams | None = None
    """Snapshot plus change streams."""
    snapshot: MongoSnapshot | None = None
    """One copy of the collections."""


class MongoSource(SluiceModel):
    """Replicate from MongoDB collections."""

    connection: MongoConnection
    """Connection to the source cluster."""
    replication_type: MongoReplicationType
    """How to replicate."""
    flatten_body: bool = False
    """Flatten nested documents into columns."""
    flatten_max_depth: NonNegativeInt = 0
    """Deepest nesting level flattened; 0 = no limit."""
    catalog: Catalog | None = None
    """Which collections and fields to replicate; all when omitted."""


# --- Oracle ----------------------------------------------------------------------------------------------------


class OracleConnection(SluiceModel):
    """How to connect to Oracle Database."""

    connect_string: NonEmptyStr
    """Easy Connect string or TNS descriptor, e.g. db.example.com:1521/ORCLCDB."""
    user: NonEmptyStr
    """User with LogMiner privileges."""
    password: Secret | None = None
    """Password. Prefer `password_secret_ref`."""
    password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the password (alternative to `password`)."""
    pdb: str | None = None
    """Pluggable database to replicate, when connecting to a container database."""
    max_pool_size: NonNegativeInt = 0
    """Maximum connections; 0 = default."""


class OracleDictionary(StrEnum):
    """Where LogMiner reads the data dictionary from."""

    ONLINE_CATALOG = "OnlineCatalog"
    REDO_LOGS = "RedoLogs"


class OracleLogMiner(SluiceModel):
    """Read changes with LogMiner."""

    committed_data_only: bool = False
    """Let LogMiner return committed transactions only (simpler, more memory in the database)."""
    dict_: OracleDictionary | None = Field(default=None, alias="dict")
    """Dictionary source: OnlineCatalog (no DDL tracking) or RedoLogs."""
    max_buffer_memory_size_per_tx: NonNegativeInt | None = None
    """Bytes buffered per open transaction before spilling to disk."""
    poll_interval_secs: NonNegativeInt | None = None
    """Seconds between LogMiner polls."""


class OracleReplicationType(OneOf):
    """How to replicate: exactly one of log_miner."""

    one_of_label = "replication type"

    log_miner: OracleLogMiner | None = None
    """Snapshot plus LogMiner change capture."""


class OracleSource(SluiceModel):
    """Replicate from Oracle Database (archive log mode and supplemental logging required)."""

    connection: OracleConnection
    """Connection to the source database."""
    replication_type: OracleReplicationType
    """How to replicate."""
    parallel_snapshots_enabled: bool = True
    """Copy tables in parallel during the snapshot."""
    catalog: Catalog | None = None
    """Which schemas, tables and columns to replicate; all when omitted."""


# --- Files -----------------------------------------------------------------------------------------------------


class PollDiscovery(SluiceModel):
    """Look for new files periodically."""

    interval_seconds: NonNegativeInt = 60
    """Seconds between listings; 0 = list once and finish."""


class FileDiscovery(SluiceModel):
    """How new files are found."""

    poll: PollDiscovery | None = None
    """Poll the object store."""


class FileErrorAction(StrEnum):
    """What to do with a file that cannot be read."""

    SKIP = "Skip"
    FAIL = "Fail"


class FileErrorHandling(SluiceModel):
    """Handling of unreadable files."""

    on_file_error: FileErrorAction = FileErrorAction.SKIP
    """Skip (record and continue) or Fail (stop the connector)."""


class CsvFormat(SluiceModel):
    """Delimited text."""

    delimiter: str | None = Field(default=None, min_length=1, max_length=1)
    """Field delimiter; default ','."""
    quote: str | None = Field(default=None, min_length=1, max_length=1)
    """Quote character; default '"'."""
    escape: str | None = Field(default=None, min_length=1, max_length=1)
    """Escape character; default: quotes are doubled."""
    has_header: bool | None = None
    """First row holds column names; default true."""
    null_values: list[str] = Field(default_factory=list)
    """Strings read as NULL, e.g. "", "NULL"."""
    skip_rows: NonNegativeInt | None = None
    """Rows skipped at the start of each file."""


class JsonFormat(SluiceModel):
    """JSON documents."""

    multi_line: bool = True
    """Documents may span lines (false = one document per line, NDJSON)."""
    strip_outer_array: bool | None = None
    """Treat a top-level array as a list of documents."""
    flatten: bool | None = None
    """Flatten nested objects into columns."""


class ParquetFormat(SluiceModel):
    """Apache Parquet files."""

    binary_as_text: bool | None = None
    """Read BINARY columns without a logical type as UTF-8 text."""


class FileFormat(OneOf):
    """File format: exactly one of csv, json, parquet."""

    one_of_label = "file format"

    csv: CsvFormat | None = None
    """Delimited text."""
    json_: JsonFormat | None = Field(default=None, alias="json")
    """JSON documents."""
    parquet: ParquetFormat | None = None
    """Parquet files."""


class MoveFile(SluiceModel):
    """Move processed files."""

    destination: NonEmptyStr
    """URL or prefix processed files are moved to."""


class FilePostProcessing(OneOf):
    """What happens to a file once loaded: exactly one of delete, move."""

    one_of_label = "post-processing action"

    delete: Empty | None = None
    """Delete the file."""
    move: MoveFile | None = None
    """Move the file."""


class TableMappingSingle(SluiceModel):
    """All files go to one table."""

    destination: NonEmptyStr
    """Target table name."""


class TableMappingAuto(SluiceModel):
    """One table per file name (or folder), with optional prefix and suffix."""

    prefix: str | None = None
    """Prepended to each derived table name."""
    suffix: str | None = None
    """Appended to each derived table name."""


class TableMappingDynamic(SluiceModel):
    """Table names built from a regular expression over the file path."""

    pattern: NonEmptyStr
    """Regular expression with named groups matched against the file path."""
    template: NonEmptyStr
    """Table name template using the groups, e.g. "{region}_orders"."""


class TableMapping(OneOf):
    """Which table a file is loaded into: exactly one of single, auto, dynamic."""

    one_of_label = "table mapping"

    single: TableMappingSingle | None = None
    """Everything into one table."""
    auto: TableMappingAuto | None = None
    """Table derived from the file name."""
    dynamic: TableMappingDynamic | None = None
    """Table derived from a pattern."""


class FileSource(SluiceModel):
    """Load files (CSV, JSON, Parquet) from an object store."""

    object_store: ObjectStore
    """Where the files are."""
    glob_patterns: list[str] = Field(default_factory=list)
    """Glob patterns of the files to load, relative to the store URL (e.g. "orders/*.csv"); all files when empty."""
    exclude_patterns: list[str] = Field(default_factory=list)
    """Glob patterns of files to ignore."""
    discovery: FileDiscovery | None = None
    """How new files are found; one listing when omitted."""
    error_handling: FileErrorHandling | None = None
    """What to do with unreadable files."""
    format_details: FileFormat
    """File format and its parsing options."""
    post_processing: FilePostProcessing | None = None
    """What happens to a loaded file; it is left in place when omitted."""
    table_mapping: TableMapping
    """Which table each file is loaded into."""


# --- the one-of --------------------------------------------------------------------------------------------------


class Source(OneOf):
    """Where data comes from: exactly one of postgres, sqlserver, mysql, mongo, oracle, file_source."""

    one_of_label = "source kind"
    model_config = ConfigDict(json_schema_extra=kind_one_of_json_schema("source"))

    postgres: PostgresSource | None = None
    """PostgreSQL (logical replication or snapshot)."""
    sqlserver: SqlServerSource | None = None
    """Microsoft SQL Server (change data capture or snapshot)."""
    mysql: MySqlSource | None = None
    """MySQL or MariaDB (binlog)."""
    mongo: MongoSource | None = None
    """MongoDB (change streams or snapshot)."""
    oracle: OracleSource | None = None
    """Oracle Database (LogMiner)."""
    file_source: FileSource | None = None
    """Files in an object store."""
