"""A real HTTP(S) receiver for webhook sink tests: records every request and fails on command.

:class:`Receiver` runs a ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive) in a thread of the test process, plain or
with TLS from its own CA (:func:`make_tls`). Every request is recorded (:class:`Received`: path, headers, the body
decompressed by its ``Content-Encoding`` and parsed). What it answers is programmable:

- ``fail_next(*actions)``: the next requests get these answers, one each (:class:`Fail`): a status with a body and
  ``Retry-After``, a slow answer (``delay`` beyond the client's timeout, then 200 — the request *was* processed),
  or a connection reset (RST without an answer, after reading the body: the request was *not* processed);
- ``reject_all`` / ``chaos``: a permanent status for every request, or random failures at a rate;
- ``require_auth(header, value)``: anything else gets 401.

A request that got a 2xx (or the slow answer) is "processed": :meth:`Receiver.delivered` deduplicates processed
requests on their ``Idempotency-Key`` as a receiver would, and returns the events in the order first received.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sluice.devstack.pki import CertificateAuthority

__all__ = ["Fail", "Received", "Receiver", "TlsMaterial", "make_tls", "receiver"]


@dataclass(frozen=True)
class Fail:
    """One programmed answer: ``status`` (+ ``body``, ``retry_after``), ``delay`` seconds first, or ``reset``."""

    status: int = 500
    body: str = "receiver failure (test)"
    retry_after: str | None = None
    delay: float = 0.0
    reset: bool = False


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes
    body: bytes
    status: int
    at: float
    processed: bool

    @property
    def events(self) -> list[Any]:
        data = json.loads(self.body)
        return data if isinstance(data, list) else [data]

    @property
    def key(self) -> str:
        return self.headers.get("idempotency-key", "")


@dataclass(frozen=True)
class TlsMaterial:
    ca: CertificateAuthority
    server_cert: Path
    server_key: Path

    @property
    def ca_file(self) -> Path:
        return self.ca.cert_path


def make_tls(directory: Path) -> TlsMaterial:
    """A throw-away CA and a serving certificate for 127.0.0.1/localhost."""
    ca = CertificateAuthority(directory / "ca", common_name="sluice-test-webhook-ca")
    pair = ca.serving("webhook", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    return TlsMaterial(ca, pair.cert_path, pair.key_path)


def _decode(encoding: str, raw: bytes) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding == "gzip":
        return gzip.decompress(raw)
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    if encoding == "br":
        import brotli  # type: ignore[import-untyped]

        return bytes(brotli.decompress(raw))
    raise ValueError(f"unknown Content-Encoding {encoding!r}")


@dataclass
class _Rules:
    queue: list[Fail] = field(default_factory=list)
    reject_all: Fail | None = None
    chaos_rate: float = 0.0
    chaos_kinds: tuple[Fail, ...] = ()
    auth: tuple[str, str] | None = None


class Receiver:
    """See the module docstring. ``url`` is ``http(s)://127.0.0.1:<port>``."""

    def __init__(self, tls: TlsMaterial | None = None, *, seed: int = 7) -> None:
        self.requests: list[Received] = []
        self.rules = _Rules()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._rng = random.Random(seed)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                receiver._handle(self, raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    # -- programming ------------------------------------------------------------------------------------------

    def fail_next(self, *actions: Fail) -> None:
        with self._lock:
            self.rules.queue.extend(actions)

    def reject_all(self, fail: Fail | None) -> None:
        with self._lock:
            self.rules.reject_all = fail

    def chaos(self, rate: float, kinds: tuple[Fail, ...] = ()) -> None:
        with self._lock:
            self.rules.chaos_rate = rate
            self.rules.chaos_kinds = kinds

    def require_auth(self, header: str, value: str) -> None:
        with self._lock:
            self.rules.auth = (header.lower(), value)

    # -- answering --------------------------------------------------------------------------------------------

    def _choose(self, headers: dict[str, str]) -> Fail | None:
        with self._lock:
            rules = self.rules
            if rules.auth is not None and headers.get(rules.auth[0]) != rules.auth[1]:
                return Fail(401, "missing or wrong credential")
            if rules.reject_all is not None:
                return rules.reject_all
            if rules.queue:
                return rules.queue.pop(0)
            if rules.chaos_rate and self._rng.random() < rules.chaos_rate and rules.chaos_kinds:
                return self._rng.choice(rules.chaos_kinds)
            return None

    def _handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        fail = self._choose(headers)
        try:
            body = _decode(headers.get("content-encoding", ""), raw)
        except Exception as exc:  # a bad encoding is the test's failure to see
            body = b""
            fail = Fail(415, f"cannot decode body: {exc}")
        if fail is None:
            status, processed = 200, True
        elif fail.reset:
            status, processed = 0, False
        elif fail.delay:
            status, processed = 200, True  # processed at once; the answer comes too late for the client
        else:
            status, processed = fail.status, fail.status < 300
        self._record(Received(handler.path, headers, raw, body, status, time.monotonic(), processed))
        if fail is not None and fail.delay:
            time.sleep(fail.delay)
        if fail is not None and fail.reset:
            with contextlib.suppress(OSError):
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            handler.close_connection = True
            return
        payload = b'{"ok":true}' if status < 300 else (fail.body if fail else "").encode()
        with contextlib.suppress(OSError):
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json" if status < 300 else "text/plain")
            handler.send_header("Content-Length", str(len(payload)))
            if fail is not None and fail.retry_after is not None:
                handler.send_header("Retry-After", fail.retry_after)
            handler.end_headers()
            handler.wfile.write(payload)

    def _record(self, received: Received) -> None:
        with self._changed:
            self.requests.append(received)
            self._changed.notify_all()

    # -- reading ----------------------------------------------------------------------------------------------

    def processed(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.processed]

    def delivered(self) -> list[Any]:
        """Events of processed requests, each request once (deduplicated on Idempotency-Key), in arrival order."""
        seen: set[str] = set()
        out: list[Any] = []
        for r in self.processed():
            if r.key in seen:
                continue
            seen.add(r.key)
            out.extend(r.events)
        return out

    def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 60, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._lock.release()
                try:
                    if predicate(self):
                        return
                finally:
                    self._lock.acquire()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"receiver: timed out waiting for {what or predicate} ({len(self.requests)} requests)"
                    )
                self._changed.wait(min(left, 0.2))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def receiver(tls: TlsMaterial | None = None) -> Iterator[Receiver]:
    r = Receiver(tls)
    try:
        yield r
    finally:
        r.close()
