"""The connector's replication slot: one per connector, named from its id, created with an exported snapshot.

The slot is created on a replication connection (psycopg2, simple query protocol, which walsender commands need).
``CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')`` returns the slot's consistent point and the name of a snapshot
that sees exactly the data before that point; the snapshot lives as long as this connection runs no other command,
so the caller keeps the :class:`CreatedSlot` open until every snapshot worker has imported it.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg2
import psycopg2.extensions
import psycopg2.extras

from sluice.worker.positions import parse_lsn

__all__ = ["CreatedSlot", "create_slot", "drop_slot", "slot_name_for", "slot_position"]


def slot_name_for(connector_id: str) -> str:
    """Slot names allow only ``[a-z0-9_]`` (max 63): the id's '-' become '_'."""
    return ("sluice_" + re.sub(r"[^a-z0-9_]", "_", connector_id.lower()))[:63]


@dataclass
class CreatedSlot:
    name: str
    consistent_point: int
    snapshot_name: str
    connection: Any  # psycopg2 replication connection holding the exported snapshot

    def release(self) -> None:
        """Ends the exported snapshot (call once every snapshot worker has imported it)."""
        with contextlib.suppress(psycopg2.Error):
            self.connection.close()


def create_slot(source_kwargs: dict[str, Any], name: str, *, temporary: bool = False) -> CreatedSlot:
    """``temporary``: the slot exists only for its exported snapshot and vanishes with the connection."""
    conn = psycopg2.connect(connection_factory=psycopg2.extras.LogicalReplicationConnection, **source_kwargs)
    cur = conn.cursor()
    kind = "TEMPORARY LOGICAL" if temporary else "LOGICAL"
    cur.execute(f"CREATE_REPLICATION_SLOT {name} {kind} pgoutput (SNAPSHOT 'export')")
    row = cur.fetchone()
    assert row is not None
    return CreatedSlot(name=name, consistent_point=parse_lsn(row[1]), snapshot_name=row[2], connection=conn)


def slot_position(conn: psycopg.Connection[Any], name: str) -> tuple[bool, int, bool]:
    """(exists, confirmed_flush_lsn, active) of a slot."""
    row = conn.execute(
        "SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots WHERE slot_name = %s", (name,)
    ).fetchone()
    if row is None:
        return False, 0, False
    return True, parse_lsn(row[0]), bool(row[1])


def drop_slot(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s AND NOT active",
        (name,),
    )
