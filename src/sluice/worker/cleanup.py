"""Dropping what a connector created at its source: the replication slot and Sluice's own publication.

Used when a connector is deleted (the operator's finalizer). A slot left behind makes the source retain WAL for
ever, so this is not optional housekeeping. A publication named by the user (``publication_name``) is the user's
and is kept. The sink's tables and ``sluice`` state rows are data, and are kept too.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from sluice.errors import TransientError
from sluice.worker.sources.postgres.connection import conninfo_kwargs
from sluice.worker.sources.postgres.publication import publication_name_for
from sluice.worker.sources.postgres.slot import slot_name_for

__all__ = ["drop_on", "drop_source_objects"]


def drop_source_objects(connector: Any, *, force: bool = False, timeout: float = 30.0) -> list[str]:
    """Drop the connector's slot and own publication; returns what was dropped (e.g. ``["slot sluice_x"]``).

    An active slot means a worker still streams from it: without ``force`` that is a :class:`TransientError`
    (stop the worker first); with ``force`` its WAL sender is terminated and the slot dropped.
    """
    source = connector.source.config
    logical = source.replication_type.logical_replication
    with psycopg.connect(**conninfo_kwargs(source.connection, application_name="sluice-cleanup"), autocommit=True) as c:
        return drop_on(
            c,
            connector_id=connector.id,
            own_publication=logical is not None and not logical.publication_name,
            force=force,
            timeout=timeout,
        )


def drop_on(
    c: psycopg.Connection[Any], *, connector_id: str, own_publication: bool, force: bool, timeout: float = 30.0
) -> list[str]:
    """The statements of :func:`drop_source_objects` on an open autocommit connection (the operator's finalizer
    connects with credentials it resolves itself, then calls this)."""
    slot = slot_name_for(connector_id)
    dropped: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        row = c.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
        if row is None:
            break
        if row[0] is None:
            c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            dropped.append(f"slot {slot}")
            break
        if not force:
            raise TransientError(
                f"replication slot {slot} is still in use by process {row[0]}",
                fix="Stop the connector's worker first, or drop with force to terminate its WAL sender.",
            )
        c.execute("SELECT pg_terminate_backend(%s)", (row[0],))
        if time.monotonic() > deadline:
            raise TransientError(f"replication slot {slot} stayed active after terminating its WAL sender")
        time.sleep(0.1)
    if own_publication:
        name = publication_name_for(connector_id)
        if c.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone():
            c.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(name)))
            dropped.append(f"publication {name}")
    return dropped
