"""Dropping what a connector created at its source (its replication slot, Sluice's own publication).

A thin entry point over :meth:`Source.cleanup <sluice.worker.sources.base.Source.cleanup>`, the one
implementation, which the operator's finalizer uses too. A slot left behind makes the source retain WAL for ever,
so this is not optional housekeeping. A publication named by the user (``publication_name``) is the user's and is
kept; the sink's tables and ``sluice`` state rows are data, and are kept too.
"""

from __future__ import annotations

from sluice.models import Connector
from sluice.worker import registry

__all__ = ["drop_source_objects"]


def drop_source_objects(connector: Connector, *, force: bool = False) -> list[str]:
    """Drop the connector's slot and own publication; returns what was dropped (e.g. ``["slot sluice_x"]``).

    An active slot means a worker still streams from it: without ``force`` that is a
    :class:`~sluice.errors.TransientError` (stop the worker first); with ``force`` its WAL sender is terminated.
    """
    source = registry.source_for(connector)
    try:
        return source.cleanup(force=force)
    finally:
        source.close()
