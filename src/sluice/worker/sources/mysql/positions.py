"""Binlog positions: where a MySQL or MariaDB stream resumes, detected from the server.

Every position carries the binlog file and the offset just after a committed transaction (``binlog.000003:1234``),
which orders positions of one server totally. It also carries the server's GTID state when there is one:

- MySQL with ``gtid_mode=ON``: the executed GTID set (``3E11FA47-71CA-11E1-9E33-C80AA9429562:1-57``), and the
  stream resumes from it (``COM_BINLOG_DUMP_GTID``), so a replica promoted after a failover serves it too;
- MariaDB: the GTID binlog state (``0-1-57``, one ``domain-server-seq`` per domain), which MariaDB's dump protocol
  resumes from (GTIDs are always on in MariaDB);
- MySQL with GTIDs off: the file and offset alone.

Encoded with the scheme prefix ``mysql``: ``mysql:binlog.000003:1234``, ``mysql:binlog.000003:1234;gtid=<set>`` or
``mysql:binlog.000003:1234;mariadb_gtid=0-1-57``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sluice.worker.positions import Position

__all__ = ["MySqlPosition", "add_gtid", "mariadb_state_add"]

_FILE_POS = re.compile(r"^(?P<file>[^:;]+):(?P<pos>\d+)$")


def _file_index(name: str) -> tuple[str, int]:
    """``binlog.000012`` -> (``binlog``, 12): files of one server are ordered by their numeric suffix."""
    stem, _, suffix = name.rpartition(".")
    return (stem, int(suffix)) if suffix.isdigit() else (name, 0)


@dataclass(frozen=True)
class MySqlPosition(Position):
    """A place in a MySQL/MariaDB binlog (see the module docstring)."""

    file: str
    pos: int
    #: MySQL's executed GTID set, when gtid_mode is on
    gtid_set: str | None = None
    #: MariaDB's GTID binlog state (``domain-server-seq`` per domain)
    mariadb_gtid: str | None = None
    scheme = "mysql"

    def encode(self) -> str:
        text = f"{self.scheme}:{self.file}:{self.pos}"
        if self.gtid_set is not None:
            text += f";gtid={self.gtid_set}"
        if self.mariadb_gtid is not None:
            text += f";mariadb_gtid={self.mariadb_gtid}"
        return text

    @classmethod
    def decode(cls, text: str) -> MySqlPosition:
        if not text.startswith(f"{cls.scheme}:"):
            raise ValueError(f"not a MySQL position: {text!r}")
        head, *extras = text[len(cls.scheme) + 1 :].split(";")
        m = _FILE_POS.match(head)
        if m is None:
            raise ValueError(f"not a MySQL position: {text!r}")
        gtid_set = mariadb_gtid = None
        for extra in extras:
            key, _, value = extra.partition("=")
            if key == "gtid":
                gtid_set = value
            elif key == "mariadb_gtid":
                mariadb_gtid = value
            else:
                raise ValueError(f"not a MySQL position: {text!r} (unknown part {key!r})")
        return cls(m["file"], int(m["pos"]), gtid_set, mariadb_gtid)

    def _key(self) -> tuple[tuple[str, int], int]:
        return (_file_index(self.file), self.pos)

    def __lt__(self, other: Any) -> bool:
        if not isinstance(other, MySqlPosition):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        if self.gtid_set is not None:
            return f"{self.file}:{self.pos} (GTID {self.gtid_set or 'none'})"
        if self.mariadb_gtid is not None:
            return f"{self.file}:{self.pos} (GTID {self.mariadb_gtid or 'none'})"
        return f"{self.file}:{self.pos}"


def _parse_intervals(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(":"):
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def add_gtid(gtid_set: str, gtid: str) -> str:
    """``gtid_set`` with one more transaction ``uuid:n`` (intervals merged), in MySQL's own notation."""
    sets: dict[str, list[tuple[int, int]]] = {}
    for member in (m.strip() for m in gtid_set.replace("\n", "").split(",")):
        if member:
            sid, _, rest = member.partition(":")
            sets[sid.lower()] = _parse_intervals(rest)
    sid, _, n = gtid.rpartition(":")
    seq = int(n)
    intervals = sorted([*sets.get(sid.lower(), []), (seq, seq)])
    merged: list[tuple[int, int]] = []
    for lo, hi in intervals:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    sets[sid.lower()] = merged
    return ",".join(
        f"{s}:" + ":".join(f"{lo}-{hi}" if hi != lo else f"{lo}" for lo, hi in iv) for s, iv in sorted(sets.items())
    )


def mariadb_state_add(state: str, gtid: str) -> str:
    """MariaDB's binlog state (the last GTID per domain) after ``gtid`` (``domain-server-seq``)."""
    domains: dict[str, str] = {}
    for member in (m.strip() for m in state.split(",")):
        if member:
            domains[member.split("-", 1)[0]] = member
    domains[gtid.split("-", 1)[0]] = gtid
    return ",".join(domains[d] for d in sorted(domains, key=int))
