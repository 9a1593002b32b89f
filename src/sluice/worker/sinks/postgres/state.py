"""The connector's position and snapshot progress, kept in the sink itself.

Keeping them in the sink is what makes apply exactly-once: a batch of changes and the position it reached commit
in one transaction, so after any crash the sink says precisely which source transactions it already holds.

``sluice.checkpoints``: one row per connector: the phase and the positions as opaque text (``Position.encode``,
e.g. ``pg:0/16B3748``), so any source's positions fit — the snapshot's consistent point and the last source commit
the sink holds. ``sluice.connector_state`` (LSN columns) is what earlier versions wrote; a connector that only has
such a row gets it copied over on its first load.
``sluice.snapshot_chunks``: the snapshot plan (one row per chunk of each table) and which chunks are done.
``sluice.table_floors``: for a keyless table copied after the first snapshot, the position of its copy's snapshot:
the stream's changes to it from transactions that committed before that position are already in the copy.
The PG->PG fast path reads and writes the same checkpoint through LSN integers (``load``/``save``/``set_applied``);
the general flow's snapshot plan stores each chunk's source-defined ``bounds`` (jsonb) in ``snapshot_chunks``
beside the fast path's page range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from sluice.worker.checkpoints import Checkpoint
from sluice.worker.positions import Lsn, format_lsn, parse_lsn
from sluice.worker.sources.base import SnapshotChunk

__all__ = ["Chunk", "ConnectorState", "StateStore"]

_DDL = [
    "CREATE SCHEMA IF NOT EXISTS sluice",
    """CREATE TABLE IF NOT EXISTS sluice.connector_state (
        connector_id text PRIMARY KEY,
        phase text NOT NULL,
        slot_name text,
        start_lsn pg_lsn,
        applied_lsn pg_lsn,
        updated_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS sluice.snapshot_chunks (
        connector_id text NOT NULL,
        table_name text NOT NULL,
        chunk_no int NOT NULL,
        source_table text NOT NULL,
        lo_page bigint NOT NULL,
        hi_page bigint,
        done boolean NOT NULL DEFAULT false,
        rows bigint,
        PRIMARY KEY (connector_id, table_name, chunk_no))""",
    """CREATE TABLE IF NOT EXISTS sluice.table_floors (
        connector_id text NOT NULL,
        table_name text NOT NULL,
        floor_lsn pg_lsn NOT NULL,
        PRIMARY KEY (connector_id, table_name))""",
    """CREATE TABLE IF NOT EXISTS sluice.checkpoints (
        connector_id text PRIMARY KEY,
        phase text NOT NULL,
        position text,
        snapshot_position text,
        updated_at timestamptz NOT NULL DEFAULT now())""",
    "ALTER TABLE sluice.snapshot_chunks ADD COLUMN IF NOT EXISTS bounds jsonb",
]


@dataclass
class ConnectorState:
    phase: str  # 'snapshot' (copying), 'streaming', 'complete' (snapshot-only run finished)
    #: set when the run streams (it has a slot and a snapshot position); None for snapshot-only runs
    slot_name: str | None
    start_lsn: int
    applied_lsn: int


@dataclass(frozen=True)
class Chunk:
    """A CTID page range ``[lo_page, hi_page)`` of one source relation (``hi_page`` None = to the end)."""

    table_name: str  # sink label schema.name
    chunk_no: int
    source_table: str  # schema.name of the relation to read (a leaf when a root is replicated)
    lo_page: int
    hi_page: int | None
    done: bool = False


class StateStore:
    def __init__(self, connector_id: str) -> None:
        self.connector_id = connector_id

    def ensure(self, conn: psycopg.Connection[Any]) -> None:
        for stmt in _DDL:
            conn.execute(stmt)

    # The PG->PG fast path speaks LSN integers; they are stored as the same source-neutral checkpoint the general
    # flow uses (``sluice.checkpoints``, positions as ``pg:<LSN>`` text), so either path resumes the other's work.

    def load(self, conn: psycopg.Connection[Any]) -> ConnectorState | None:
        checkpoint = self.load_checkpoint(conn)
        if checkpoint is None:
            return None
        return ConnectorState(
            phase=checkpoint.phase,
            slot_name="stream" if checkpoint.snapshot_position else None,
            start_lsn=Lsn.decode(checkpoint.snapshot_position).value if checkpoint.snapshot_position else 0,
            applied_lsn=Lsn.decode(checkpoint.position).value if checkpoint.position else 0,
        )

    def save(self, conn: psycopg.Connection[Any], state: ConnectorState) -> None:
        streams = state.slot_name is not None
        self.save_checkpoint(
            conn,
            Checkpoint(
                phase=state.phase,
                position=Lsn(state.applied_lsn).encode() if streams else None,
                snapshot_position=Lsn(state.start_lsn).encode() if streams else None,
            ),
        )

    def set_applied(self, conn: psycopg.Connection[Any], lsn: int) -> None:
        """The position write that commits with each applied batch."""
        conn.execute(
            "UPDATE sluice.checkpoints SET position = %s, updated_at = now() WHERE connector_id = %s",
            (Lsn(lsn).encode(), self.connector_id),
        )

    def clear(self, conn: psycopg.Connection[Any]) -> None:
        """Forget everything of this connector: both checkpoint forms, the plan and the floors."""
        conn.execute("DELETE FROM sluice.checkpoints WHERE connector_id = %s", (self.connector_id,))
        conn.execute("DELETE FROM sluice.table_floors WHERE connector_id = %s", (self.connector_id,))
        conn.execute("DELETE FROM sluice.snapshot_chunks WHERE connector_id = %s", (self.connector_id,))
        conn.execute("DELETE FROM sluice.connector_state WHERE connector_id = %s", (self.connector_id,))

    def save_plan(self, conn: psycopg.Connection[Any], chunks: list[Chunk], *, replace: bool = True) -> None:
        if replace:
            conn.execute("DELETE FROM sluice.snapshot_chunks WHERE connector_id = %s", (self.connector_id,))
        with conn.cursor().copy(
            "COPY sluice.snapshot_chunks (connector_id, table_name, chunk_no, source_table, lo_page, hi_page) "
            "FROM STDIN"
        ) as copy:
            for c in chunks:
                copy.write_row((self.connector_id, c.table_name, c.chunk_no, c.source_table, c.lo_page, c.hi_page))

    def forget_tables(self, conn: psycopg.Connection[Any], tables: list[str]) -> None:
        """Drop the plan rows and floors of ``tables`` (sink labels) before they are copied again."""
        for stmt in ("DELETE FROM sluice.snapshot_chunks", "DELETE FROM sluice.table_floors"):
            conn.execute(stmt + " WHERE connector_id = %s AND table_name = ANY(%s)", (self.connector_id, tables))

    def save_floor(self, conn: psycopg.Connection[Any], table: str, lsn: int) -> None:
        conn.execute(
            "INSERT INTO sluice.table_floors (connector_id, table_name, floor_lsn) VALUES (%s, %s, %s::pg_lsn) "
            "ON CONFLICT (connector_id, table_name) DO UPDATE SET floor_lsn = EXCLUDED.floor_lsn",
            (self.connector_id, table, format_lsn(lsn)),
        )

    def load_floors(self, conn: psycopg.Connection[Any]) -> dict[str, int]:
        rows = conn.execute(
            "SELECT table_name, floor_lsn::text FROM sluice.table_floors WHERE connector_id = %s",
            (self.connector_id,),
        ).fetchall()
        return {r[0]: parse_lsn(r[1]) for r in rows}

    def load_plan(self, conn: psycopg.Connection[Any]) -> list[Chunk]:
        rows = conn.execute(
            "SELECT table_name, chunk_no, source_table, lo_page, hi_page, done FROM sluice.snapshot_chunks "
            "WHERE connector_id = %s ORDER BY table_name, chunk_no",
            (self.connector_id,),
        ).fetchall()
        return [Chunk(*r) for r in rows]

    def mark_done(self, conn: psycopg.Connection[Any], chunk: Chunk, rows: int) -> None:
        conn.execute(
            "UPDATE sluice.snapshot_chunks SET done = true, rows = %s WHERE connector_id = %s AND table_name = %s "
            "AND chunk_no = %s",
            (rows, self.connector_id, chunk.table_name, chunk.chunk_no),
        )

    # ---------------------------------------------------------------- source-neutral checkpoints and plans

    def load_checkpoint(self, conn: psycopg.Connection[Any]) -> Checkpoint | None:
        """This connector's checkpoint; a ``connector_state`` row of an earlier version is copied over first."""
        row = conn.execute(
            "SELECT phase, position, snapshot_position FROM sluice.checkpoints WHERE connector_id = %s",
            (self.connector_id,),
        ).fetchone()
        if row is None:
            row = conn.execute(
                "INSERT INTO sluice.checkpoints (connector_id, phase, position, snapshot_position) "
                "SELECT connector_id, phase, 'pg:' || applied_lsn::text, 'pg:' || start_lsn::text "
                "FROM sluice.connector_state WHERE connector_id = %s "
                "ON CONFLICT (connector_id) DO NOTHING RETURNING phase, position, snapshot_position",
                (self.connector_id,),
            ).fetchone()
        if row is None:
            return None
        return Checkpoint(phase=row[0], position=row[1], snapshot_position=row[2])

    def save_checkpoint(self, conn: psycopg.Connection[Any], checkpoint: Checkpoint) -> None:
        """Write the checkpoint in the caller's transaction (``done_chunks`` live in ``snapshot_chunks`` here)."""
        conn.execute(
            "INSERT INTO sluice.checkpoints (connector_id, phase, position, snapshot_position) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (connector_id) DO UPDATE SET phase = EXCLUDED.phase, "
            "position = EXCLUDED.position, snapshot_position = EXCLUDED.snapshot_position, updated_at = now()",
            (self.connector_id, checkpoint.phase, checkpoint.position, checkpoint.snapshot_position),
        )

    def save_chunks(self, conn: psycopg.Connection[Any], chunks: list[SnapshotChunk]) -> None:
        """Replace the plan with ``chunks`` (keyed by the chunk's table label and index; ``bounds`` as jsonb).

        ``lo_page``/``hi_page`` are filled from bounds of that name when the source uses page ranges (0/NULL
        otherwise), so the columns the fast path reads stay valid.
        """
        conn.execute("DELETE FROM sluice.snapshot_chunks WHERE connector_id = %s", (self.connector_id,))
        with conn.cursor().copy(
            "COPY sluice.snapshot_chunks (connector_id, table_name, chunk_no, source_table, lo_page, hi_page, "
            "done, bounds) FROM STDIN"
        ) as copy:
            for c in chunks:
                lo = c.bounds.get("lo_page")
                hi = c.bounds.get("hi_page")
                copy.write_row(
                    (
                        self.connector_id,
                        c.table,
                        c.index,
                        c.table,
                        lo if isinstance(lo, int) else 0,
                        hi if isinstance(hi, int) else None,
                        c.done,
                        Jsonb(c.bounds),
                    )
                )

    def load_chunks(self, conn: psycopg.Connection[Any]) -> list[SnapshotChunk]:
        rows = conn.execute(
            "SELECT table_name, chunk_no, bounds, done FROM sluice.snapshot_chunks WHERE connector_id = %s "
            "ORDER BY table_name, chunk_no",
            (self.connector_id,),
        ).fetchall()
        return [SnapshotChunk(table=r[0], index=r[1], bounds=dict(r[2] or {}), done=bool(r[3])) for r in rows]

    def mark_chunk_done(self, conn: psycopg.Connection[Any], chunk: SnapshotChunk, rows: int) -> None:
        conn.execute(
            "UPDATE sluice.snapshot_chunks SET done = true, rows = %s WHERE connector_id = %s AND table_name = %s "
            "AND chunk_no = %s",
            (rows, self.connector_id, chunk.table, chunk.index),
        )
