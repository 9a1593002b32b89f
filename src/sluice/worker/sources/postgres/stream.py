"""The replication stream: ``START_REPLICATION ... LOGICAL`` with pgoutput over a psycopg2 replication connection.

psycopg2 is used only here, because it speaks the streaming replication sub-protocol (CopyBoth, keepalive replies,
standby status updates); everything else uses psycopg 3. Feedback reports as flushed only what the caller says the
sink made durable.
"""

from __future__ import annotations

import contextlib
import select
from typing import Any

import psycopg2
import psycopg2.extras

from sluice.worker.positions import format_lsn

__all__ = ["ReplicationStream"]


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ReplicationStream:
    def __init__(
        self,
        source_kwargs: dict[str, Any],
        *,
        slot: str,
        publication: str,
        start_lsn: int,
        streaming: bool,
        work_mem_kb: int | None = None,
    ) -> None:
        kwargs = dict(source_kwargs)
        if work_mem_kb is not None:
            option = f"-c logical_decoding_work_mem={work_mem_kb}kB"
            kwargs["options"] = f"{kwargs['options']} {option}" if kwargs.get("options") else option
        self.conn = psycopg2.connect(connection_factory=psycopg2.extras.LogicalReplicationConnection, **kwargs)
        self.cur = self.conn.cursor()
        options = {"proto_version": "2", "publication_names": _quote_ident(publication)}
        if streaming:
            options["streaming"] = "on"
        self.cur.start_replication(slot_name=slot, decode=False, start_lsn=format_lsn(start_lsn), options=options)
        self.flushed = start_lsn

    def read(self) -> Any:
        """The next ``ReplicationMessage`` (``.payload``, ``.data_start``) or None when none is waiting."""
        return self.cur.read_message()

    def wait(self, timeout: float) -> None:
        select.select([self.cur], [], [], max(timeout, 0.0))

    @property
    def wal_end(self) -> int:
        """Server position from the last message or keepalive (all changes before it have been sent)."""
        return int(self.cur.wal_end or 0)

    def confirm(self, lsn: int, *, reply: bool = False) -> None:
        """Report ``lsn`` as written, flushed and applied (it must be durable in the sink)."""
        if lsn > self.flushed:
            self.flushed = lsn
        # force: psycopg2 would otherwise hold the update back for up to status_interval (10 s).
        self.cur.send_feedback(
            write_lsn=self.flushed, flush_lsn=self.flushed, apply_lsn=self.flushed, reply=reply, force=True
        )

    def close(self) -> None:
        with contextlib.suppress(psycopg2.Error):
            self.conn.close()
