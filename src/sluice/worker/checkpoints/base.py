"""The checkpoint record, and the interface of a store for sinks that cannot keep it themselves."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Checkpoint", "CheckpointStore"]


@dataclass
class Checkpoint:
    """A connector's progress. Positions are the source's encoded text (``Position.encode``).

    ``phase``: ``snapshot`` (copying; ``done_chunks`` says which parts are in the sink), ``streaming``, or
    ``complete`` (a snapshot-only run finished). ``snapshot_position`` is the consistent point the snapshot was read
    at, where the stream starts; ``position`` is the last source commit the sink holds.
    """

    phase: str
    position: str | None = None
    snapshot_position: str | None = None
    #: ``"<table label>#<chunk index>"`` of chunks already copied (sinks that keep no plan table of their own)
    done_chunks: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        data: dict[str, Any] = json.loads(text)
        return cls(
            phase=str(data["phase"]),
            position=data.get("position"),
            snapshot_position=data.get("snapshot_position"),
            done_chunks=list(data.get("done_chunks") or []),
        )


class CheckpointStore(ABC):
    """Durable storage of one connector's :class:`Checkpoint` outside the sink."""

    @abstractmethod
    def load(self) -> Checkpoint | None: ...

    @abstractmethod
    def save(self, checkpoint: Checkpoint) -> None:
        """Durable when it returns."""

    @abstractmethod
    def clear(self) -> None:
        """Forget the progress (ReIntialize)."""
