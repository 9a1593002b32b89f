"""The connector schema: one set of pydantic models for the REST body, the CR spec and its status.

Import from here (``from sluice.models import Connector``); the submodules are small and named for what they hold.
"""

from sluice.models.buffer import Buffer, ObjectStore, ObjectStoreOption
from sluice.models.catalog import Catalog, CatalogAction, CatalogColumn, CatalogSchema, CatalogTable
from sluice.models.common import REDACTED, DnsLabel, OneOf, Secret, SecretRef, SluiceModel, validate_dns_label
from sluice.models.connector import Connector, ConnectorBody, ConnectorSpec
from sluice.models.limits import CdcLimits, Limits, SnapshotLimits
from sluice.models.migration import MigrationKind, MigrationStrategy
from sluice.models.postgres import (
    LogicalReplication,
    PostgresConnection,
    PostgresReplicationType,
    PostgresSink,
    PostgresSource,
    PostgresSslMode,
    SnapshotReplication,
)
from sluice.models.schedule import CronSchedule, RateSchedule, RateUnit, Schedule
from sluice.models.sinks import (
    ClickHouseSink,
    DatabricksSink,
    KafkaSink,
    MaterializeSink,
    Sink,
    SnowflakeSink,
    WebhookSink,
)
from sluice.models.sources import FileSource, MongoSource, MySqlSource, OracleSource, Source, SqlServerSource
from sluice.models.tunnel import SshTunnel, Tunnel

__all__ = [
    "REDACTED",
    "Buffer",
    "Catalog",
    "CatalogAction",
    "CatalogColumn",
    "CatalogSchema",
    "CatalogTable",
    "CdcLimits",
    "ClickHouseSink",
    "Connector",
    "ConnectorBody",
    "ConnectorSpec",
    "CronSchedule",
    "DatabricksSink",
    "DnsLabel",
    "FileSource",
    "KafkaSink",
    "Limits",
    "LogicalReplication",
    "MaterializeSink",
    "MigrationKind",
    "MigrationStrategy",
    "MongoSource",
    "MySqlSource",
    "ObjectStore",
    "ObjectStoreOption",
    "OneOf",
    "OracleSource",
    "PostgresConnection",
    "PostgresReplicationType",
    "PostgresSink",
    "PostgresSource",
    "PostgresSslMode",
    "RateSchedule",
    "RateUnit",
    "Schedule",
    "Secret",
    "SecretRef",
    "Sink",
    "SluiceModel",
    "SnapshotLimits",
    "SnapshotReplication",
    "SnowflakeSink",
    "Source",
    "SqlServerSource",
    "SshTunnel",
    "Tunnel",
    "WebhookSink",
    "validate_dns_label",
]
