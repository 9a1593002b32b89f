"""Cutting encoded events into requests, and the idempotency key of each request.

A request carries contiguous events of ONE table from ONE source transaction (or one snapshot chunk), in their
order: at most ``max_batch_size`` events and ``max_payload_bytes`` of JSON array before compression. An event
larger than the limit goes alone, never dropped. A new table, the end of the transaction or the end of the chunk
cuts the request.

Requests never span transactions, so how a request is cut depends only on the transaction's content (and the batch
settings), never on timing: after a restart the same transaction is cut into the same requests, and each gets the
same key. The key is the SHA-256 (hex, 64 characters) of ``connector | scope | table | first | last``:

- ``scope``: the source position of the transaction (its ``Begin`` position, ``pg:0/16B3748``), or
  ``snapshot:<snapshot position>:<table>#<chunk>`` for snapshot rows;
- ``first``/``last``: the 1-based places of the request's first and last event in the transaction (in the chunk).

So a receiver that stores the keys it has processed sees every change once, however often a request is repeated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Batcher", "Request", "idempotency_key"]


def idempotency_key(connector: str, scope: str, table: str, first: int, last: int) -> str:
    text = f"{connector}|{scope}|{table}|{first}|{last}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Request:
    """One POST: ``body`` is the JSON array (uncompressed)."""

    url: str
    table: str
    scope: str
    first: int
    last: int
    body: bytes
    key: str

    @property
    def count(self) -> int:
        return self.last - self.first + 1


class Batcher:
    """Collects encoded events of one scope (a transaction, a snapshot chunk) into :class:`Request` objects."""

    def __init__(
        self,
        connector: str,
        *,
        max_events: int | None,
        max_bytes: int,
        emit: Callable[[Request], None],
    ) -> None:
        self.connector = connector
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.emit = emit
        self.scope = ""
        self._table = ""
        self._url = ""
        self._items: list[bytes] = []
        self._size = 1  # "[" + items joined by "," + "]"
        self._first = 0

    def start(self, scope: str) -> None:
        """A new transaction or chunk: what was collected before is flushed first."""
        self.flush()
        self.scope = scope

    def add(self, table: str, url: str, event: bytes, place: int) -> None:
        """Append the event at 1-based ``place`` of the scope, of ``table`` sent to ``url``."""
        items = self._items
        if items and (
            table != self._table
            or url != self._url
            or (self.max_events is not None and len(items) >= self.max_events)
            or self._size + len(event) + 1 > self.max_bytes
        ):
            self.flush()
            items = self._items
        if not items:
            self._table, self._url, self._first, self._size = table, url, place, 1
        items.append(event)
        self._size += len(event) + 1

    def flush(self) -> None:
        items = self._items
        if not items:
            return
        first = self._first
        last = first + len(items) - 1
        body = b"[" + b",".join(items) + b"]"
        self._items = []
        self._size = 1
        key = idempotency_key(self.connector, self.scope, self._table, first, last)
        self.emit(Request(self._url, self._table, self.scope, first, last, body, key))

    def discard(self) -> None:
        self._items = []
        self._size = 1

    @property
    def pending(self) -> int:
        return len(self._items)
