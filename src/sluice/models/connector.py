"""The connector itself, in the three shapes it takes.

- `Connector`: the validated connector everything internal works with; ``id`` is a DNS-1123 label because it is
  the Kubernetes object name (and names the replication slot).
- `ConnectorBody`: the REST request body. The reference API requires ``id`` but ignores it on
  ``POST /api/v1/connectors`` (the server generates one) and its note says to send a placeholder such as ``""``,
  so any string passes here; the API then builds a `Connector` with the real id.
- `ConnectorSpec`: the ``spec`` of the Connector custom resource, where ``metadata.name`` is the id and ``spec.id``
  may be omitted. The CRD schema is generated from this class.
"""

from __future__ import annotations

from pydantic import Field

from sluice.kinds import availability_note
from sluice.models.buffer import Buffer
from sluice.models.common import DnsLabel, SluiceModel
from sluice.models.limits import Limits
from sluice.models.quantity import ByteQuantity
from sluice.models.schedule import Schedule
from sluice.models.sinks import Sink
from sluice.models.sources import Source

__all__ = ["Connector", "ConnectorBody", "ConnectorSpec"]


class Connector(SluiceModel):
    """A connector: replicate from one source into one sink."""

    id: DnsLabel
    """Connector id: the Kubernetes object name, so a DNS-1123 label (lowercase letters, digits and '-', at most
    63 characters, starting and ending with a letter or digit)."""
    source: Source = Field(
        description="Source configuration: exactly one of postgres, sqlserver, mysql, mongo, oracle, file_source. "
        + availability_note("source")
    )
    sink: Sink = Field(
        description="Sink configuration: exactly one of postgres, clickhouse, snowflake, materialize, kafka, "
        "databricks, webhook. " + availability_note("sink")
    )
    buffer: Buffer | None = None
    """Staging area between source and sink."""
    limits: Limits | None = None
    """Flush cadence and batch sizes."""
    disabled: bool = False
    """Whether this connector is disabled: the worker is stopped but the replication slot is kept (so the source
    retains WAL until the connector is enabled again or deleted)."""
    schedule: Schedule | None = None
    """Periodic runs (for snapshot replication)."""
    name: str | None = Field(default=None, min_length=1)
    """Display name."""
    wal_budget: ByteQuantity | None = None
    """Most WAL the connector's replication slot may keep on the source while the connector is stopped (disabled,
    between scheduled runs) or lagging, as a Kubernetes quantity such as "10Gi". Past it the connector gets the
    condition SlotAtRisk=True and the alert SluiceSlotAtRisk fires, before the source's disk fills. Unset: the
    operator's default (``sluice operator --wal-budget``). PostgreSQL sources only (other sources keep no slot). A
    Sluice addition to the reference schema."""


class ConnectorBody(Connector):
    """Request body of POST/PUT-style connector endpoints."""

    id: str
    """Unique identifier for this connector. Server-generated when using POST /connectors; when using
    POST /connectors/{id} the URL path id takes precedence over this field. Required by the schema but its value
    is ignored: send any placeholder, e.g. an empty string."""


class ConnectorSpec(Connector):
    """Specification of a Connector resource: the REST connector body, where `id` may be omitted."""

    id: DnsLabel | None = None  # type: ignore[assignment]
    """Connector id; when given it must equal metadata.name, which is the id."""
