"""HTTP delivery of one request: keep-alive connections, rate limit, retries with jittered backoff, error classes.

A request is retried on 5xx, 408, 429 (after ``Retry-After`` when the receiver sends one), timeouts and broken
connections, with exponential backoff (``initial_backoff_ms`` doubling up to ``max_backoff_ms``, each wait drawn
at random between half and all of it) until ``max_retries`` or ``max_retry_duration_ms``. Any other 4xx is
permanent: :class:`WebhookRejectedError`, a :class:`~sluice.errors.ConfigError` naming the status, an excerpt of the
body and the fix. The caller does not advance the position, so nothing is skipped when the connector restarts.

No header value is ever logged or put into an error: only the method, the URL without user info or query, the
status and the body excerpt.
"""

from __future__ import annotations

import email.utils
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from sluice.errors import ConfigError, ErrorDetail, ReplicationError, TransientError

__all__ = [
    "CA_FIELD",
    "Backoff",
    "RateLimiter",
    "RetryPolicy",
    "WebhookClient",
    "WebhookRejectedError",
    "retry_after_seconds",
    "tls_error",
    "tls_failure",
    "verify_context",
]

log = logging.getLogger(__name__)

#: statuses retried besides 5xx
RETRY_STATUSES = frozenset({408, 425, 429})
_EXCERPT = 300


class WebhookRejectedError(ConfigError):
    """The receiver refused a request for good (a 4xx other than 408/425/429): the connector stops, unadvanced."""

    reason = "WebhookRejectedError"


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment (they may hold credentials), for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int | None = None
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 180.0
    max_retry_duration_s: float = 3600.0


class Backoff:
    """Exponential backoff with jitter: attempt n waits uniformly within [d/2, d], d = min(max, initial * 2**n)."""

    def __init__(self, policy: RetryPolicy, rng: Callable[[float, float], float] = random.uniform) -> None:
        self.policy = policy
        self.rng = rng

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait before retry number ``attempt`` (0-based); ``Retry-After`` wins when the receiver sent one."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.policy.max_backoff_s, self.policy.initial_backoff_s * (2 ** min(attempt, 62)))
        return self.rng(ceiling / 2, ceiling)


class RateLimiter:
    """Token buckets for requests and bytes per second (one second of burst); thread-safe."""

    def __init__(
        self,
        requests_per_second: int | None,
        bytes_per_second: int | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rps = requests_per_second
        self.bps = bytes_per_second
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        self._req_tokens = float(requests_per_second or 0)
        self._byte_tokens = float(bytes_per_second or 0)
        self._last = now

    def acquire(self, nbytes: int) -> float:
        """Wait until one request of ``nbytes`` may go; returns the seconds waited."""
        if not self.rps and not self.bps:
            return 0.0
        with self._lock:
            now = self.clock()
            elapsed = now - self._last
            self._last = now
            wait = 0.0
            if self.rps:
                self._req_tokens = min(float(self.rps), self._req_tokens + elapsed * self.rps) - 1
                if self._req_tokens < 0:
                    wait = max(wait, -self._req_tokens / self.rps)
            if self.bps:
                self._byte_tokens = min(float(self.bps), self._byte_tokens + elapsed * self.bps) - nbytes
                if self._byte_tokens < 0:
                    wait = max(wait, -self._byte_tokens / self.bps)
            if wait > 0:
                self.sleep(wait)
            return wait


def _fix_for(status: int) -> str:
    common = (
        " The connector stopped without advancing its position: once fixed, it resumes with this request and "
        "nothing is skipped."
    )
    if status in (401, 403):
        return (
            "Check sink.webhook.auth (the credential, or the Secret key its *_secret_ref names) and that the "
            "receiver grants it access." + common
        )
    if status in (404, 405):
        return "Check sink.webhook.url and sink.webhook.path_template: the receiver must accept POST there." + common
    if status == 413:
        return "Lower sink.webhook.batch.max_payload_bytes, or raise the receiver's body size limit." + common
    if status == 415:
        return (
            "Make the receiver accept JSON bodies with this Content-Encoding, or change sink.webhook.compression."
            + common
        )
    return "Fix the receiver so it answers 2xx to these requests, or fix sink.webhook to match it." + common


def tls_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc`` (httpx wraps it in its own errors), or None."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return cur
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, ssl.SSLCertVerificationError):
                return arg
        cur = cur.__cause__ or cur.__context__
    return None


class WebhookClient:
    """POSTs bodies with keep-alive (one connection pool per thread), rate limit and retries."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool,
        timeout_s: float,
        retry: RetryPolicy,
        limiter: RateLimiter,
        headers: Mapping[str, str],
        stop: threading.Event | None = None,
    ) -> None:
        self.verify = verify
        self.timeout_s = timeout_s
        self.retry = retry
        self.backoff = Backoff(retry)
        self.limiter = limiter
        self.headers = dict(headers)
        #: set to cut a backoff short (close)
        self.stop = stop or threading.Event()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def _redacted(self, text: str) -> str:
        """A receiver's answer goes into the status and the log; a gateway that echoes the request's headers would
        put the credential there, so every header value we send is masked in it first."""
        for value in self.headers.values():
            secret = str(value)
            if len(secret) >= 4 and secret in text:
                text = text.replace(secret, "***")
            # "Bearer <token>" / "Basic <b64>": the token alone may be echoed too
            _, _, token = secret.partition(" ")
            if len(token) >= 4 and token in text:
                text = text.replace(token, "***")
        return text

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                verify=self.verify,
                timeout=httpx.Timeout(self.timeout_s),
                headers=self.headers,
                follow_redirects=False,
                trust_env=False,
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _drop_client(self) -> None:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is not None:
            self._local.client = None
            client.close()

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> httpx.Response:
        """POST until a 2xx; raises :class:`WebhookRejectedError` (permanent) or ReplicationError (retries spent)."""
        started = time.monotonic()
        attempt = 0
        where = safe_url(url)
        while True:
            self.limiter.acquire(len(body))
            retry_after: float | None = None
            try:
                response = self._client().post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                tls = tls_failure(exc)
                if tls is not None:
                    raise tls_error(where, tls) from exc
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self._drop_client()  # a broken connection is not reused
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return response
                excerpt = self._redacted(response.text[:_EXCERPT].strip()) if response.content else ""
                problem = f"HTTP {status} {response.reason_phrase}" + (f": {excerpt}" if excerpt else "")
                if status < 500 and status not in RETRY_STATUSES:
                    raise WebhookRejectedError(f"sink.webhook: POST {where} answered {problem}", fix=_fix_for(status))
                if status in (429, 503):
                    retry_after = retry_after_seconds(response.headers.get("retry-after"))
            elapsed = time.monotonic() - started
            delay = self.backoff.delay(attempt, retry_after)
            policy = self.retry
            spent = policy.max_retries is not None and attempt >= policy.max_retries
            if spent or elapsed + delay > policy.max_retry_duration_s:
                raise ReplicationError(
                    f"sink.webhook: POST {where} failed {attempt + 1} times over {elapsed:.0f}s, last: {problem}",
                    fix="Make the receiver reachable and answer 2xx (or raise sink.webhook.retry.max_retries / "
                    "max_retry_duration_ms); the connector resumes from the last acknowledged change, nothing is "
                    "skipped.",
                )
            log.warning("webhook POST %s: %s; retry %d in %.2fs", where, problem, attempt + 1, delay)
            attempt += 1
            if self.stop.wait(delay):
                raise TransientError(
                    f"sink.webhook: stopped while retrying POST {where} ({problem})",
                    fix="None needed: the connector resumes from the last acknowledged change.",
                )

    def close(self) -> None:
        self.stop.set()
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            c.close()


#: where the receiver's CA is set, for messages and error details
CA_FIELD: tuple[str, ...] = ("sink", "webhook", "ssl_root_cert")


def tls_error(where: str, failure: ssl.SSLError) -> ConfigError:
    """The receiver's certificate was refused: permanent until the spec or the receiver changes (no retry)."""
    reason = getattr(failure, "verify_message", None) or failure.reason or str(failure)
    return ConfigError(
        f"sink.webhook.url: TLS verification of {where} failed: {reason}",
        fix="Set sink.webhook.ssl_root_cert to the CA certificate (PEM) that signed the receiver's certificate, "
        "or serve a certificate for the host name in sink.webhook.url. The connector stopped without advancing "
        "its position.",
        details=[ErrorDetail(list(CA_FIELD), f"the certificate of {where} is not trusted: {reason}")],
    )


def verify_context(ca: str | None, *, verify: bool = True) -> ssl.SSLContext | bool:
    """How the receiver's certificate is verified: the system's trust store plus ``ca`` (PEM text, or the path of a
    PEM file), host names checked; False (no verification) when ``verify`` is off.

    PEM text is loaded from memory, so the REST API's validate endpoint (read-only root filesystem) needs no file.
    """
    if not verify:
        return False
    context = ssl.create_default_context()
    if ca:
        try:
            if "-----BEGIN" in ca:
                context.load_verify_locations(cadata=ca)
            else:
                context.load_verify_locations(cafile=ca)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            what = "the PEM text" if "-----BEGIN" in ca else f"the file {ca}"
            problem = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            raise ConfigError(
                f"sink.webhook.ssl_root_cert: cannot load a CA certificate from {what}: {problem}",
                fix="Give the PEM text of the CA certificate that signed the receiver's certificate "
                "(-----BEGIN CERTIFICATE----- ...), or the path of a PEM file the worker can read.",
                details=[ErrorDetail(list(CA_FIELD), f"no CA certificate could be loaded: {problem}")],
            ) from exc
    return context
