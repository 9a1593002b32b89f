"""PostgreSQL as a source and as a sink.

The connection model is shared by both directions (and mirrors libpq's parameters), so the worker builds one
connection string for either side.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from sluice.models.catalog import Catalog
from sluice.models.common import NonEmptyStr, NonNegativeInt, OneOf, Port, Secret, SecretRef, SluiceModel
from sluice.models.migration import MigrationStrategy
from sluice.models.tunnel import Tunnel

__all__ = [
    "LogicalReplication",
    "PostgresConnection",
    "PostgresReplicationType",
    "PostgresSink",
    "PostgresSource",
    "PostgresSslMode",
    "SnapshotReplication",
]


class PostgresSslMode(StrEnum):
    """TLS mode, with libpq's sslmode semantics (prefer, require, disable, verify-ca, verify-full)."""

    PREFER = "Prefer"
    REQUIRE = "Require"
    DISABLE = "Disable"
    VERIFY_CA = "VerifyCa"
    VERIFY_FULL = "VerifyFull"


class PostgresConnection(SluiceModel):
    """How to connect to a PostgreSQL server."""

    host: NonEmptyStr
    """Host name or IP address of the PostgreSQL server."""
    port: Port = 5432
    """TCP port of the PostgreSQL server."""
    user: NonEmptyStr
    """Database user. A source user needs the REPLICATION attribute (or rds_replication) and SELECT on the
    replicated tables."""
    password: Secret | None = None
    """Password of the user. Prefer `password_secret_ref`: the REST API moves an inline password into a Secret."""
    password_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the password (alternative to `password`)."""
    database: NonEmptyStr
    """Database name."""
    ssl_mode: PostgresSslMode = PostgresSslMode.PREFER
    """TLS mode: Prefer (TLS if the server offers it), Require (TLS, no certificate check), Disable (no TLS),
    VerifyCa (TLS, server certificate signed by `ssl_root_cert`), VerifyFull (VerifyCa plus host name check)."""
    ssl_cert: str | None = None
    """Client certificate (PEM) for certificate authentication."""
    ssl_key: Secret | None = None
    """Private key (PEM) of the client certificate. Prefer `ssl_key_secret_ref`."""
    ssl_key_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the client private key (alternative to `ssl_key`)."""
    ssl_root_cert: str | None = None
    """CA certificate(s) (PEM) used to verify the server with VerifyCa/VerifyFull."""
    max_pool_size: NonNegativeInt = 0
    """Maximum number of connections the worker opens to this server; 0 = default (one per parallel snapshot
    worker plus one)."""
    operation_lock_timeout_seconds: NonNegativeInt = 0
    """Sets lock_timeout for Sluice's statements so they fail fast instead of queueing behind other locks;
    0 = off."""
    tunnel: Tunnel | None = None
    """Optional tunnel (SSH bastion) to reach the server."""


class LogicalReplication(SluiceModel):
    """Snapshot, then stream every committed change from the write-ahead log (pgoutput)."""

    publication_name: str | None = None
    """Existing publication to replicate. When omitted Sluice creates (and on delete drops) its own publication
    for the tables selected by `catalog`."""
    retry_window_seconds: NonNegativeInt = 300
    """How long transient failures (connection reset, restart, failover) are retried with backoff before the
    connector fails."""
    skip_snapshots: bool = False
    """Skip the initial copy and only stream changes made after the replication slot was created."""


class SnapshotReplication(SluiceModel):
    """Copy a consistent snapshot of the selected tables and stop (no change streaming)."""


class PostgresReplicationType(OneOf):
    """How to replicate: exactly one of logical_replication, snapshot."""

    one_of_label = "replication type"

    logical_replication: LogicalReplication | None = None
    """Initial snapshot followed by continuous change data capture through a replication slot."""
    snapshot: SnapshotReplication | None = None
    """One consistent copy of the tables; combine with `schedule` for periodic copies."""


class PostgresSource(SluiceModel):
    """Replicate from a PostgreSQL database (wal_level=logical for logical replication)."""

    connection: PostgresConnection
    """Connection to the source database."""
    replication_type: PostgresReplicationType
    """How to replicate: logical replication (snapshot + CDC) or snapshot only."""
    parallel_snapshots_enabled: bool = True
    """Copy tables (and ranges of large tables) in parallel under one consistent snapshot."""
    partitions_as_root: bool = False
    """Replicate a partitioned table as its root table (publication with publish_via_partition_root) instead of
    one table per partition."""
    catalog: Catalog | None = None
    """Which schemas, tables and columns to replicate; all tables when omitted."""


class PostgresSink(SluiceModel):
    """Write into a PostgreSQL database (set-based apply, exactly once)."""

    connection: PostgresConnection
    """Connection to the target database."""
    target_schema: str | None = Field(default=None, min_length=1)
    """Schema the tables are written to (created if missing); default: the source table's schema."""
    migration_strategy: MigrationStrategy | None = None
    """Which source schema changes are applied to the target automatically."""
