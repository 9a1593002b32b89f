"""Pure logic of the webhook sink: request cutting, idempotency keys, backoff, Retry-After, rate limit, plan in the
checkpoint, and the requests one source transaction becomes (the HTTP itself is tested against a real receiver in
tests/integration/test_sink_webhook.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from sluice.models import Connector
from sluice.worker.checkpoints import Checkpoint
from sluice.worker.checkpoints.store import FileCheckpointStore
from sluice.worker.events import Begin, Column, ColumnType, Commit, Op, RowChange, TableId, TableSchema, Truncate
from sluice.worker.events import TypeKind as K
from sluice.worker.positions import Lsn
from sluice.worker.sinks.webhook.batching import Batcher, Request, idempotency_key
from sluice.worker.sinks.webhook.client import Backoff, RateLimiter, RetryPolicy, retry_after_seconds, safe_url
from sluice.worker.sinks.webhook.sink import WebhookSink
from sluice.worker.sources.base import SnapshotChunk


def collect(max_events: int | None = None, max_bytes: int = 1000) -> tuple[Batcher, list[Request]]:
    out: list[Request] = []
    return Batcher("c1", max_events=max_events, max_bytes=max_bytes, emit=out.append), out


def test_requests_cut_at_table_switch_count_and_size() -> None:
    b, out = collect(max_events=3, max_bytes=30)
    b.start("pg:0/10")
    for place, table in enumerate(["a", "a", "b", "b", "b", "b", "a"], start=1):
        b.add(table, f"/{table}", b'"xx"', place)
    b.flush()
    assert [(r.table, r.first, r.last) for r in out] == [("a", 1, 2), ("b", 3, 5), ("b", 6, 6), ("a", 7, 7)]
    assert out[1].body == b'["xx","xx","xx"]'
    assert all(r.scope == "pg:0/10" for r in out)
    # size: "[" + 5 + "," + 5 + "]" = 13 fits 13 bytes, a third does not
    b, out = collect(max_bytes=13)
    b.start("s")
    for place in range(1, 4):
        b.add("a", "/a", b'"abc"', place)
    b.flush()
    assert [(r.first, r.last, len(r.body)) for r in out] == [(1, 2, 13), (3, 3, 7)]


def test_an_event_larger_than_the_limit_goes_alone() -> None:
    b, out = collect(max_bytes=10)
    b.start("s")
    b.add("a", "/a", b'"1"', 1)
    b.add("a", "/a", b'"' + b"x" * 50 + b'"', 2)
    b.add("a", "/a", b'"3"', 3)
    b.flush()
    assert [(r.first, r.last) for r in out] == [(1, 1), (2, 2), (3, 3)]
    assert json.loads(out[1].body) == ["x" * 50]


def test_idempotency_key_is_stable_and_distinct() -> None:
    k = idempotency_key("c1", "pg:0/10", "public.a", 1, 5)
    assert k == idempotency_key("c1", "pg:0/10", "public.a", 1, 5)
    assert len(k) == 64
    others = {
        idempotency_key("c2", "pg:0/10", "public.a", 1, 5),
        idempotency_key("c1", "pg:0/11", "public.a", 1, 5),
        idempotency_key("c1", "pg:0/10", "public.b", 1, 5),
        idempotency_key("c1", "pg:0/10", "public.a", 1, 4),
        idempotency_key("c1", "pg:0/10", "public.a", 2, 5),
    }
    assert k not in others and len(others) == 5
    # the same content cut the same way gives the same keys (a restart re-sends with equal keys)
    runs = []
    for _ in range(2):
        b, out = collect(max_events=2)
        b.start("pg:0/10")
        for place in range(1, 6):
            b.add("public.a", "/", b"1", place)
        b.flush()
        runs.append([r.key for r in out])
    assert runs[0] == runs[1] and len(set(runs[0])) == 3


def test_discard_drops_the_open_request() -> None:
    b, out = collect()
    b.start("s")
    b.add("a", "/a", b"1", 1)
    b.discard()
    b.flush()
    assert out == []


def test_backoff_grows_with_jitter_and_caps() -> None:
    policy = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=5.0)
    low = Backoff(policy, rng=lambda a, b: a)
    high = Backoff(policy, rng=lambda a, b: b)
    assert [high.delay(n) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert [low.delay(n) for n in range(4)] == [0.5, 1.0, 2.0, 2.5]
    real = Backoff(policy)
    assert all(2.0 <= real.delay(2) <= 4.0 for _ in range(100))
    assert high.delay(3, retry_after=7.0) == 7.0


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    when = datetime(2030, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(when, usegmt=True), now=when.timestamp() - 10) == pytest.approx(10)


def test_rate_limiter_waits_for_tokens() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(2, None, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.acquire(10)
    # a burst of 2 goes at once, then one request every half second
    assert slept == pytest.approx([0.5, 0.5])
    bytes_limiter = RateLimiter(None, 100, clock=lambda: now[0], sleep=sleep)
    slept.clear()
    bytes_limiter.acquire(100)
    bytes_limiter.acquire(50)
    assert slept == pytest.approx([0.5])
    assert RateLimiter(None, None).acquire(10**9) == 0.0


def test_safe_url_drops_credentials_and_query() -> None:
    assert safe_url("https://user:pw@hooks.example.com:8443/cdc?token=abc#x") == "https://hooks.example.com:8443/cdc"


# ---------------------------------------------------------------------------------------------------- the sink


def connector(**webhook: Any) -> Connector:
    return Connector.model_validate(
        {
            "id": "orders-hook",
            "source": {
                "postgres": {
                    "connection": {
                        "host": "db",
                        "port": 5432,
                        "database": "app",
                        "user": "u",
                        "password": "p",
                    },
                    "replication_type": {"logical_replication": {}},
                }
            },
            "sink": {"webhook": {"url": "https://hooks.example.com/base/", **webhook}},
        }
    )


T = TableId("public", "orders")
U = TableId("public", "items")
INT = ColumnType(K.INT, bits=32)
SCHEMAS = [
    TableSchema(T, (Column("id", INT, False), Column("v", ColumnType(K.TEXT))), ("id",)),
    TableSchema(U, (Column("id", INT, False),), ()),
]


@pytest.fixture
def sink(tmp_path: Path) -> Any:
    s = WebhookSink(connector(batch={"max_batch_size": 2}), store=FileCheckpointStore(tmp_path / "cp.json"))
    sent: list[Request] = []
    setattr(s, "send", sent.append)  # noqa: B010 - the HTTP is tested against a real receiver elsewhere
    s.prepare(SCHEMAS)
    setattr(s, "sent", sent)  # noqa: B010
    yield s
    s.close()


def tx(position: int, *changes: Any) -> list[Any]:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        Begin(xid=str(position), position=Lsn(position), commit_time=when),
        *changes,
        Commit(xid=str(position), position=Lsn(position + 1), commit_time=when),
    ]


def test_path_template_and_auth_headers() -> None:
    s = WebhookSink(connector(path_template="/{schema}/{table}", auth={"bearer": {"token": "s3cr3t"}}))
    assert s.url_for("public.my table") == "https://hooks.example.com/base/public/my%20table"
    assert s.url_for("") == "https://hooks.example.com/base/"
    assert s.auth_headers == {"Authorization": "Bearer s3cr3t"}
    basic = WebhookSink(connector(auth={"basic": {"username": "u", "password": "p"}}))
    assert basic.auth_headers == {"Authorization": "Basic dTpw"}
    header = WebhookSink(connector(auth={"header": {"name": "X-Key", "value": "v"}}))
    assert header.auth_headers == {"X-Key": "v"}
    assert "s3cr3t" not in repr(s.model)


def test_a_transaction_becomes_ordered_requests_with_stable_keys(sink: Any, tmp_path: Path) -> None:
    changes = tx(
        16,
        RowChange(Op.INSERT, T, None, (1, "a")),
        RowChange(Op.INSERT, T, None, (2, "b")),
        RowChange(Op.INSERT, T, None, (3, "c")),
        RowChange(Op.INSERT, U, None, (9,)),
        Truncate((T,)),
    )
    sink.apply(changes[:3])  # the flow may hand a transaction over in parts
    sink.apply(changes[3:])
    sink.commit(Checkpoint("streaming", "pg:0/11"))
    sent: list[Request] = sink.sent
    assert [(r.table, r.first, r.last) for r in sent] == [
        ("public.orders", 1, 2),
        ("public.orders", 3, 3),
        ("public.items", 4, 4),
        ("public.orders", 5, 5),
    ]
    events = [e for r in sent for e in json.loads(r.body)]
    assert [e["op"] for e in events] == ["c", "c", "c", "c", "t"]
    assert all(e["position"] == "pg:0/10" for e in events)
    assert FileCheckpointStore(tmp_path / "cp.json").load() == Checkpoint("streaming", "pg:0/11")
    # the same transaction in other apply() parts: the same requests and keys
    again = WebhookSink(connector(batch={"max_batch_size": 2}), store=FileCheckpointStore(tmp_path / "x.json"))
    resent: list[Request] = []
    setattr(again, "send", resent.append)  # noqa: B010
    again.prepare(SCHEMAS)
    for change in changes:
        again.apply([change])
    again.commit(Checkpoint("streaming", "pg:0/11"))
    again.close()
    assert [r.key for r in resent] == [r.key for r in sent]
    assert [r.body for r in resent] == [r.body for r in sent]


def test_abort_drops_an_unfinished_transaction(sink: Any) -> None:
    sink.apply(tx(16, RowChange(Op.INSERT, T, None, (1, "a")))[:2])
    sink.abort()
    sink.commit(Checkpoint("streaming", "pg:0/11"))
    assert sink.sent == []


def test_snapshot_plan_and_done_chunks_live_in_the_checkpoint(sink: Any, tmp_path: Path) -> None:
    chunks = [SnapshotChunk("public.orders", 0, {"lo": 0, "hi": 10}), SnapshotChunk("public.orders", 1, {"lo": 10})]
    sink.start_snapshot(Checkpoint("snapshot", None, "pg:0/5"), chunks, SCHEMAS)
    writer = sink.snapshot_writer(upsert=False)
    writer.write(chunks[0], [(1, "a"), (2, "b"), (3, "c")])
    writer.done(chunks[0], 3)
    assert [(r.first, r.last) for r in sink.sent] == [(1, 2), (3, 3)]
    assert {e["op"] for r in sink.sent for e in json.loads(r.body)} == {"r"}
    # a new run of the sink reads the plan back, chunk 0 done
    other = WebhookSink(connector(batch={"max_batch_size": 2}), store=FileCheckpointStore(tmp_path / "cp.json"))
    assert other.load_checkpoint() is not None
    assert other.load_plan() == [
        SnapshotChunk("public.orders", 0, {"lo": 0, "hi": 10}, True),
        SnapshotChunk("public.orders", 1, {"lo": 10}, False),
    ]
    # and the same chunk gets the same keys (a resumed snapshot is deduplicated too)
    resent: list[Request] = []
    setattr(other, "send", resent.append)  # noqa: B010
    other.prepare(SCHEMAS)
    w2 = other.snapshot_writer(upsert=True)
    w2.write(chunks[0], [(1, "a"), (2, "b"), (3, "c")])
    w2.done(chunks[0], 3)
    assert [r.key for r in resent] == [r.key for r in sink.sent]
    # the plan survives the switch to streaming (tables added later are told apart from planned ones)
    other.save_checkpoint(Checkpoint("streaming", "pg:0/5", "pg:0/5"))
    other.commit(Checkpoint("streaming", "pg:0/9"))
    third = WebhookSink(connector(), store=FileCheckpointStore(tmp_path / "cp.json"))
    cp = third.load_checkpoint()
    assert cp is not None and cp.position == "pg:0/9" and cp.phase == "streaming"
    assert [c.index for c in third.load_plan()] == [0, 1]
    other.close()
    third.close()


def test_bad_url_is_a_config_error() -> None:
    from sluice.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sink\.webhook\.url"):
        WebhookSink(connector(url="ftp://x"))


def test_sender_keeps_order_surfaces_failures_and_closes_while_stuck() -> None:
    import threading
    import time

    from sluice.worker.sinks.webhook.sink import _Sender

    def req(n: int) -> Request:
        return Request("/", "t", "s", n, n, b"[]", str(n))

    got: list[int] = []
    sender = _Sender(lambda r: got.append(r.first))
    for n in range(10):
        sender.put(req(n))
    sender.drain()
    assert got == list(range(10))
    sender.close()

    def fail(r: Request) -> None:
        raise RuntimeError(f"refused {r.first}")

    failing = _Sender(fail)
    failing.put(req(1))
    with pytest.raises(RuntimeError, match="refused 1"):
        failing.drain()
    failing.reset()  # abandoned: the next batch starts clean
    failing.close()

    release = threading.Event()

    def hang(r: Request) -> None:
        release.wait(30)

    stuck = _Sender(hang)
    for n in range(5):  # one in flight, four queued (the queue is full)
        stuck.put(req(n))
    started = time.monotonic()
    stuck.close()
    assert time.monotonic() - started < 8
    release.set()


def test_a_receivers_answer_never_carries_our_credential() -> None:
    from sluice.worker.sinks.webhook.client import RateLimiter, RetryPolicy, WebhookClient

    client = WebhookClient(
        verify=True,
        timeout_s=1,
        retry=RetryPolicy(),
        limiter=RateLimiter(None, None),
        headers={"Authorization": "Bearer s3cr3t-token-value", "X-Api-Key": "k3y-v4lue"},
    )
    echoed = "bad request; you sent Authorization: Bearer s3cr3t-token-value, token s3cr3t-token-value, k3y-v4lue"
    out = client._redacted(echoed)
    assert "s3cr3t" not in out and "k3y-v4lue" not in out
    assert out.startswith("bad request; you sent Authorization: ***")


def test_transactions_without_a_begin_position_get_distinct_keys_stable_across_restarts(
    sink: Any, tmp_path: Path
) -> None:
    """A MySQL transaction's position is known only at its commit: it is named by the commit before it."""

    def positionless(xid_commit: int, row: int) -> list[Any]:
        return [
            Begin(xid=None, position=None),
            RowChange(Op.INSERT, T, None, (row, "x")),
            Commit(xid=None, position=Lsn(xid_commit)),
        ]

    sink.load_checkpoint()  # nothing stored yet
    sink.apply(positionless(100, 1) + positionless(200, 2))
    sink.commit(Checkpoint("streaming", Lsn(200).encode()))
    first, second = sink.sent
    assert first.key != second.key
    # A restart from the checkpoint after the first transaction sends the second one with the same key.
    again = WebhookSink(connector(batch={"max_batch_size": 2}), store=FileCheckpointStore(tmp_path / "y.json"))
    again.store.save(Checkpoint("streaming", Lsn(100).encode()))
    resent: list[Request] = []
    setattr(again, "send", resent.append)  # noqa: B010
    again.prepare(SCHEMAS)
    again.load_checkpoint()
    again.apply(positionless(200, 2))
    again.commit(Checkpoint("streaming", Lsn(200).encode()))
    again.close()
    assert [r.key for r in resent] == [second.key]


# ---------------------------------------------------------------------------------------------------- TLS, stop


def test_the_receivers_ca_is_loaded_at_construction_and_a_bad_one_names_the_field(tmp_path: Path) -> None:
    import ssl

    from sluice.errors import ConfigError
    from sluice.worker.sinks.webhook.client import verify_context

    assert verify_context(None, verify=False) is False
    assert isinstance(verify_context(None), ssl.SSLContext)
    assert WebhookSink(connector(ssl_verify=False)).verify is False
    for bad, said in (
        ("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", "the PEM text"),
        (str(tmp_path / "absent.pem"), "absent.pem"),
    ):
        with pytest.raises(ConfigError) as info:
            WebhookSink(connector(ssl_root_cert=bad))
        assert said in info.value.message and "ssl_root_cert" in info.value.message
        assert info.value.details[0].loc == ["sink", "webhook", "ssl_root_cert"]


def test_stop_cuts_a_retry_backoff_short() -> None:
    """A receiver that cannot be reached and a minute's back-off: stop() ends the wait at once, as a transient error
    (the request is sent again by the next run), and close() after it is quick too."""
    import socket
    import threading
    import time

    from sluice.errors import TransientError

    with socket.socket() as s:  # a loopback port nobody listens on: every attempt is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = WebhookSink(
        connector(
            url=f"http://127.0.0.1:{port}/",
            retry={"initial_backoff_ms": 60000, "max_backoff_ms": 60000},
            request_timeout_ms=2000,
        )
    )
    timer = threading.Timer(0.5, sink.stop)
    timer.start()
    started = time.monotonic()
    with pytest.raises(TransientError, match="stopped while retrying"):
        sink.send(Request(sink.url, "public.t", "pg:0/1", 1, 1, b"[]", "k"))
    assert time.monotonic() - started < 5
    sink.close()
    timer.join()
