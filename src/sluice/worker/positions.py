"""Positions in a source's change log: opaque to the engine, ordered and serializable, defined by each source.

The engine and the sinks never look inside a position. They compare two positions of the same source (``<``),
store one as text next to the data it covers (:meth:`Position.encode`), and give the text back to the source to
resume from (:meth:`sluice.worker.sources.base.Source.parse_position`). Status shows ``str(position)``.

PostgreSQL's is the LSN (:class:`Lsn`); a MySQL source defines a GTID set or a binlog file+offset the same way.
Like Debezium's offsets, the encoded form says which kind of position it is, so a stored checkpoint of the wrong
source kind is refused rather than misread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

__all__ = ["Lsn", "Position", "format_lsn", "parse_lsn"]


class Position(ABC):
    """A place in a source's log; a sink that has applied everything up to it may resume after it."""

    #: the prefix of the encoded form, e.g. ``pg`` -> ``pg:0/16B3748``
    scheme: str = ""

    @abstractmethod
    def encode(self) -> str:
        """Text that :meth:`Source.parse_position` turns back into an equal position."""

    @abstractmethod
    def __lt__(self, other: Any) -> bool: ...

    def __le__(self, other: Any) -> bool:
        return bool(self == other or self < other)


def parse_lsn(text: str | None) -> int:
    """``'16/B374D848'`` -> int; None/empty -> 0."""
    if not text:
        return 0
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class Lsn(Position):
    """A PostgreSQL WAL position (a 64-bit byte offset), shown as PostgreSQL shows it: ``16/B374D848``."""

    value: int
    scheme = "pg"

    def encode(self) -> str:
        return f"{self.scheme}:{format_lsn(self.value)}"

    def __lt__(self, other: Any) -> bool:
        if not isinstance(other, Lsn):
            return NotImplemented
        return self.value < other.value

    def __str__(self) -> str:
        return format_lsn(self.value)

    @classmethod
    def decode(cls, text: str) -> Lsn:
        """``pg:16/B374D848`` (or a bare ``16/B374D848``) -> Lsn."""
        body = text.removeprefix(f"{cls.scheme}:")
        if "/" not in body:
            raise ValueError(f"not a PostgreSQL position: {text!r}")
        return cls(parse_lsn(body))
