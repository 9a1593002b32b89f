"""Batch sizes and flush cadence (``limits``): the knobs that trade latency against throughput and memory."""

from __future__ import annotations

from sluice.models.common import PositiveInt, SluiceModel

__all__ = ["CdcLimits", "Limits", "SnapshotLimits"]


class CdcLimits(SluiceModel):
    """Limits of the change-streaming phase."""

    flush_interval_ms: PositiveInt | None = None
    """Longest time a committed change waits in the worker before it is applied to the sink; default chosen by
    the worker."""
    max_buffer_rows: PositiveInt | None = None
    """Most changed rows buffered before a flush is forced (bounds memory); default chosen by the worker."""


class SnapshotLimits(SluiceModel):
    """Limits of the snapshot (initial copy) phase."""

    max_buffer_rows: PositiveInt | None = None
    """Most rows buffered per table chunk before they are written to the sink (bounds memory)."""


class Limits(SluiceModel):
    """Flush cadence and batch sizes."""

    cdc: CdcLimits | None = None
    """Limits while streaming changes."""
    snapshot: SnapshotLimits | None = None
    """Limits while copying the snapshot."""
