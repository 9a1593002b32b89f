"""PostgreSQL -> webhook through the real worker process, into a real HTTP(S) receiver (``tests.support.webhook``).

What a receiver sees: snapshot rows then changes, in order per table, each request one table of one source
transaction with an ``Idempotency-Key``; the delivery guarantee: after 500s, 429s with ``Retry-After``, answers
slower than the timeout, connection resets and SIGKILLs of the worker at random instants, deduplicating on the
key yields every change exactly once; a permanent 4xx stops the worker with the status, body excerpt and the fix,
and once the receiver is fixed the next run resumes without loss. Compression, auth kinds and a private CA too.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack.pki import CertificateAuthority
from tests.support.pg import PgDatabase, WorkerProcess, connector_spec, write_connector_config
from tests.support.webhook import Fail, Receiver, TlsMaterial, make_tls

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RunWorker = Callable[..., WorkerProcess]


def realtime(status: dict[str, Any]) -> bool:
    return status.get("state") == "realtime"


@pytest.fixture
def hook() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def webhook_spec(source: PgDatabase, url: str, *, connector_id: str | None = None, **sink: Any) -> dict[str, Any]:
    """A PostgreSQL -> webhook connector spec; ``sink`` are fields of ``sink.webhook`` besides ``url``."""
    spec = connector_spec(
        source,
        source,
        connector_id=connector_id or f"w-{uuid.uuid4().hex[:10]}",
        limits={"cdc": {"flush_interval_ms": 50}},
        retry_window_seconds=600,
    )
    spec["sink"] = {"webhook": {"url": url, **sink}}
    return spec


class Run:
    """Starts workers of one connector with the same state directory (the checkpoint survives restarts)."""

    def __init__(self, run_worker: RunWorker, tmp_path: Path, spec: dict[str, Any], env: dict[str, str] | None = None):
        self.run_worker = run_worker
        self.config = write_connector_config(tmp_path / f"{spec['id']}.yaml", spec)
        self.env = {"SLUICE_STATE_DIR": str(tmp_path / "state"), **(env or {})}
        self.spec = spec

    def start(self) -> WorkerProcess:
        return self.run_worker(self.config, env=self.env)


#: how long a worker may take to stop on SIGTERM while its sender sleeps a back-off: generous for a loaded machine
#: (tests share two cores with other test workers), yet far below the 60 s back-off these tests configure, so a
#: stop that does not cut the back-off short still fails them
STOP_DURING_BACKOFF_S = 15.0


def wait_for_backoff(worker: WorkerProcess, timeout: float = 60) -> None:
    """Until the worker has logged that it retries a refused POST later: its sender has entered its back-off.

    The client logs ``...; retry 1 in N.NNs`` just before it waits (``client.py``), so this is evidence of the
    back-off itself rather than a guess by sleeping after the receiver's first refusal.
    """
    deadline = time.monotonic() + timeout
    while "; retry 1 in " not in worker.output_tail(10_000):
        if worker.popen.poll() is not None:
            raise AssertionError(f"worker exited before its first back-off\n{worker.output_tail()}")
        assert time.monotonic() < deadline, f"no back-off logged within {timeout}s\n{worker.output_tail()}"
        time.sleep(0.1)


def native_rows(events: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("table") == table]


def test_snapshot_then_changes_in_order_per_table(
    source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql(
        "CREATE TABLE a (id int PRIMARY KEY, v text);"
        "CREATE TABLE b (id int PRIMARY KEY, n numeric(10,2));"
        "INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 30) g;"
        "INSERT INTO b SELECT g, g * 1.25 FROM generate_series(1, 10) g;"
    )
    spec = webhook_spec(source_db, hook.url, path_template="/{schema}/{table}", batch={"max_batch_size": 7})
    worker = Run(run_worker, tmp_path, spec).start()
    status = worker.wait_for_status(realtime, timeout=90)
    assert status.get("delivery") == "at-least-once (idempotency keys)"
    hook.wait_for(lambda r: len(r.delivered()) >= 40, what="40 snapshot rows")
    snap = hook.delivered()
    assert {e["op"] for e in snap} == {"r"}
    assert sorted(e["row"]["id"] for e in native_rows(snap, "public.a")) == list(range(1, 31))
    assert {e["row"]["n"] for e in native_rows(snap, "public.b")} >= {"1.25", "12.50"}
    assert all(len(r.events) <= 7 for r in hook.processed())
    assert {r.path for r in hook.processed()} == {"/public/a", "/public/b"}
    for r in hook.processed():
        assert {e["table"] for e in r.events} == {r.path[1:].replace("/", ".")}
        assert r.headers["content-type"] == "application/json"
        assert len(r.key) == 64

    # One transaction over both tables, interleaved: each table's changes arrive in order, a request never mixes.
    with source_db.connect(autocommit=False) as conn:
        for i in range(1, 21):
            conn.execute("UPDATE a SET v = %s WHERE id = %s", (f"u{i}", i))
            conn.execute("INSERT INTO b VALUES (%s, %s)", (100 + i, i))
        conn.execute("DELETE FROM a WHERE id > 25")
        conn.commit()
    source_db.psql("TRUNCATE b")
    hook.wait_for(lambda r: any(e["op"] == "t" for e in r.delivered()), what="the truncate")
    events = hook.delivered()[40:]
    a = native_rows(events, "public.a")
    b = native_rows(events, "public.b")
    assert [(e["op"], e["key"]["id"]) for e in a] == [("u", i) for i in range(1, 21)] + [
        ("d", i) for i in range(26, 31)
    ]
    assert [e["row"]["v"] for e in a if e["op"] == "u"] == [f"u{i}" for i in range(1, 21)]
    assert [(e["op"], e["row"]["id"]) for e in b[:-1]] == [("c", 100 + i) for i in range(1, 21)]
    assert b[-1]["op"] == "t"
    tx_requests = [r for r in hook.processed() if r.events[0]["op"] in ("u", "c")]
    # interleaved changes of two tables: a new request at each switch, all with the transaction's position
    assert len(tx_requests) >= 40
    assert len({r.headers["x-sluice-position"] for r in tx_requests}) == 1
    assert worker.stop() == 0


FAST_RETRY = {"initial_backoff_ms": 50, "max_backoff_ms": 400, "max_retry_duration_ms": 120000}


def test_each_receiver_failure_is_retried_with_the_same_key(
    source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql("CREATE TABLE f (id int PRIMARY KEY, v text)")
    spec = webhook_spec(source_db, hook.url, retry=FAST_RETRY, request_timeout_ms=700)
    worker = Run(run_worker, tmp_path, spec).start()
    worker.wait_for_status(realtime, timeout=90)
    hook.fail_next(
        Fail(500, "boom"),
        Fail(503, "busy"),
        Fail(429, "slow down", retry_after="1"),
        Fail(delay=2.0),  # beyond request_timeout_ms: processed, but the worker sees a timeout
        Fail(reset=True),
    )
    for i in range(1, 6):
        source_db.execute("INSERT INTO f VALUES (%s, %s)", (i, f"v{i}"))
    hook.wait_for(lambda r: len(r.delivered()) >= 5 and len(r.requests) >= 10, timeout=60, what="5 changes, 5 failures")
    delivered = hook.delivered()
    assert [(e["op"], e["row"]["id"]) for e in delivered] == [("c", i) for i in range(1, 6)]
    requests = hook.requests
    # 5 failures and their retries: every failed request was repeated with the same key until it got a 2xx
    by_key: dict[str, list[int]] = defaultdict(list)
    for r in requests:
        by_key[r.key].append(r.status)
    assert sum(len(s) for s in by_key.values()) >= 10
    assert all(statuses[-1] == 200 for statuses in by_key.values()), by_key
    assert sorted(s for statuses in by_key.values() for s in statuses if s != 200) == [0, 429, 500, 503]
    # the 429 was retried no sooner than its Retry-After
    after_429 = next(i for i, r in enumerate(requests) if r.status == 429)
    retry = next(r for r in requests[after_429 + 1 :] if r.key == requests[after_429].key)
    assert retry.at - requests[after_429].at >= 0.95
    assert worker.stop() == 0


def test_kill9_at_random_instants_with_receiver_failures_each_change_once(
    source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    """A keyless table (no key to deduplicate rows on): only the idempotency key makes each change count once."""
    source_db.psql(
        "CREATE TABLE k (n int NOT NULL, pad text); ALTER TABLE k REPLICA IDENTITY FULL;"
        "INSERT INTO k SELECT g, repeat('x', 50) FROM generate_series(1, 200) g;"
    )
    spec = webhook_spec(source_db, hook.url, retry=FAST_RETRY, request_timeout_ms=800, batch={"max_batch_size": 13})
    run = Run(run_worker, tmp_path, spec)
    worker = run.start()
    worker.wait_for_status(realtime, timeout=90)
    hook.chaos(0.15, (Fail(500), Fail(429, retry_after="0"), Fail(reset=True), Fail(delay=1.2)))
    rng = random.Random(20261202)
    n = 200
    for _round in range(8):
        for _ in range(rng.randint(3, 8)):
            rows = rng.randint(1, 40)
            source_db.execute(
                "INSERT INTO k SELECT g, 'tx' FROM generate_series(%s::int, %s::int) g", (n + 1, n + rows)
            )
            n += rows
        source_db.execute("UPDATE k SET pad = 'u' WHERE n %% 97 = %s", (_round,))
        time.sleep(rng.uniform(0.05, 0.8))  # the crash instant: random on purpose, not a wait for a condition
        worker.kill()
        worker = run.start()
    hook.chaos(0.0)
    inserted = n
    updated = source_db.scalar("SELECT count(*) FROM k WHERE pad = 'u'")

    def complete(r: Receiver) -> bool:
        events = r.delivered()
        return (
            sum(1 for e in events if e["op"] == "c") >= inserted - 200
            and sum(1 for e in events if e["op"] == "u") >= updated
        )

    hook.wait_for(complete, timeout=180, what="every change")
    events = hook.delivered()
    snap = Counter(e["row"]["n"] for e in events if e["op"] == "r")
    assert snap == Counter(range(1, 201))
    inserts = Counter(e["row"]["n"] for e in events if e["op"] == "c")
    assert inserts == Counter(range(201, inserted + 1)), "each insert exactly once after deduplication"
    updates = Counter(e["row"]["n"] for e in events if e["op"] == "u")
    assert sum(updates.values()) == updated and max(updates.values()) == 1
    # without the key the receiver would have seen duplicates (the kills and failures did repeat requests)
    raw = sum(len(r.events) for r in hook.processed())
    assert raw > len(events)
    assert worker.stop() == 0


def test_permanent_4xx_stops_with_the_fix_and_resumes_without_loss(
    source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql("CREATE TABLE p (id int PRIMARY KEY, v text); INSERT INTO p VALUES (1, 'a')")
    spec = webhook_spec(source_db, hook.url, retry=FAST_RETRY)
    run = Run(run_worker, tmp_path, spec)
    worker = run.start()
    worker.wait_for_status(realtime, timeout=90)
    hook.wait_for(lambda r: len(r.delivered()) == 1, what="the snapshot row")
    hook.reject_all(Fail(422, "field 'v' must be uppercase"))
    source_db.execute("INSERT INTO p VALUES (2, 'b')")
    source_db.execute("UPDATE p SET v = 'c' WHERE id = 1")
    assert worker.wait(timeout=60) != 0
    status = worker.last_status()
    assert status is not None and status.get("status") == "failed"
    error = status["last_error"]
    assert "422" in error["message"] and "must be uppercase" in error["message"]
    assert "resumes" in error["fix"] and error["fix"]
    # fixed receiver: the next run sends what was refused, and nothing is skipped
    hook.reject_all(None)
    worker = run.start()
    hook.wait_for(lambda r: len(r.delivered()) >= 3, what="the refused changes")
    assert [(e["op"], e["key"]["id"]) for e in hook.delivered()] == [("r", 1), ("c", 2), ("u", 1)]
    assert worker.stop() == 0


@pytest.mark.parametrize("compression", ["Gzip", "Zstd", "Br"])
def test_compression(
    compression: str, source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql(
        "CREATE TABLE z (id int PRIMARY KEY, v text);"
        "INSERT INTO z SELECT g, repeat('z', 500) FROM generate_series(1, 50) g"
    )
    spec = webhook_spec(source_db, hook.url, compression=compression)
    worker = Run(run_worker, tmp_path, spec).start()
    hook.wait_for(lambda r: len(r.delivered()) >= 50, what="50 rows")
    encoding = {"Gzip": "gzip", "Zstd": "zstd", "Br": "br"}[compression]
    assert {r.headers.get("content-encoding") for r in hook.processed()} == {encoding}
    assert sum(len(r.raw) for r in hook.processed()) * 5 < sum(len(r.body) for r in hook.processed())
    assert worker.stop() == 0


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        ({"bearer": {"token": "t0ken-123"}}, "authorization", "Bearer t0ken-123"),
        ({"basic": {"username": "u", "password": "p@ss"}}, "authorization", "Basic dTpwQHNz"),
        ({"header": {"name": "X-Api-Key", "value": "k-456"}}, "x-api-key", "k-456"),
    ],
)
def test_auth_kinds(
    auth: dict[str, Any],
    header: str,
    value: str,
    source_db: PgDatabase,
    hook: Receiver,
    run_worker: RunWorker,
    tmp_path: Path,
) -> None:
    source_db.psql("CREATE TABLE au (id int PRIMARY KEY); INSERT INTO au VALUES (1)")
    hook.require_auth(header, value)
    worker = Run(run_worker, tmp_path, webhook_spec(source_db, hook.url, auth=auth)).start()
    hook.wait_for(lambda r: len(r.delivered()) >= 1, what="the row")
    assert all(r.status == 200 for r in hook.requests)
    assert worker.stop() == 0
    # the credential is in no log line or status
    secret = value.split()[-1]
    assert secret not in worker.output_tail(10_000)


def test_wrong_credential_stops_with_the_auth_fix(
    source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql("CREATE TABLE au (id int PRIMARY KEY); INSERT INTO au VALUES (1)")
    hook.require_auth("authorization", "Bearer right")
    spec = webhook_spec(source_db, hook.url, auth={"bearer": {"token": "wrong-secret"}})
    worker = Run(run_worker, tmp_path, spec).start()
    assert worker.wait(timeout=90) != 0
    error = (worker.last_status() or {})["last_error"]
    assert "401" in error["message"] and "sink.webhook.auth" in error["fix"]
    assert "wrong-secret" not in worker.output_tail(10_000)


def test_tls_with_a_private_ca(source_db: PgDatabase, run_worker: RunWorker, tmp_path: Path) -> None:
    """The receiver's certificate is signed by a CA of its own: refused without ``ssl_root_cert`` (a clear status,
    nothing sent, not retried), delivered with it (PEM inline, or a file path), and with ``ssl_verify: false``."""
    tls: TlsMaterial = make_tls(tmp_path / "pki")
    other = CertificateAuthority(tmp_path / "other-ca", common_name="unrelated-ca")
    source_db.psql("CREATE TABLE s (id int PRIMARY KEY); INSERT INTO s VALUES (1), (2)")
    with contextlib_receiver(tls) as hook:
        assert hook.url.startswith("https://")
        for ca in (None, other.cert_pem.decode()):  # the system's trust store alone; an unrelated CA
            spec = webhook_spec(source_db, hook.url, **({"ssl_root_cert": ca} if ca else {}))
            worker = Run(run_worker, tmp_path, spec).start()
            assert worker.wait(timeout=90) != 0
            status = worker.last_status() or {}
            assert status.get("status") == "failed"
            error = status["last_error"]
            assert f"TLS verification of {hook.url} failed" in error["message"], error
            assert "certificate" in error["message"]
            assert "sink.webhook.ssl_root_cert" in error["fix"] and "without advancing" in error["fix"]
            assert hook.requests == [], "a refused certificate: no request reached the receiver"
        # with the CA, inline PEM: delivered
        spec = webhook_spec(source_db, hook.url, ssl_root_cert=tls.ca.cert_pem.decode())
        worker = Run(run_worker, tmp_path, spec).start()
        hook.wait_for(lambda r: len(r.delivered()) >= 2, what="2 rows over TLS")
        assert worker.stop() == 0
        # the CA as a file path, as PostgreSQL's ssl_root_cert takes it
        spec = webhook_spec(source_db, hook.url, ssl_root_cert=str(tls.ca_file))
        worker = Run(run_worker, tmp_path, spec).start()
        hook.wait_for(lambda r: len(r.delivered()) >= 4, what="2 more rows over TLS")
        assert worker.stop() == 0
        # verification off: delivered without any CA
        spec = webhook_spec(source_db, hook.url, ssl_verify=False)
        worker = Run(run_worker, tmp_path, spec).start()
        hook.wait_for(lambda r: len(r.delivered()) >= 6, what="2 rows without verification")
        assert worker.stop() == 0
        assert "ssl_verify is false" in worker.output_tail(10_000)


def test_a_ca_that_cannot_be_loaded_refuses_the_spec(
    source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql("CREATE TABLE s (id int PRIMARY KEY)")
    for ca, said in (
        ("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", "the PEM text"),
        (str(tmp_path / "missing.pem"), "missing.pem"),
    ):
        worker = Run(run_worker, tmp_path, webhook_spec(source_db, hook.url, ssl_root_cert=ca)).start()
        assert worker.wait(timeout=60) != 0
        output = worker.output_tail(10_000)
        assert "sink.webhook.ssl_root_cert: cannot load a CA certificate from" in output and said in output
    assert hook.requests == []


def test_validate_sink_checks_the_receivers_certificate(tmp_path: Path) -> None:
    """/api/v1/validate/sink runs the sink's checks: the service behind it, against the real TLS receiver."""
    from sluice.api.services.validation import Caller, ValidationService
    from sluice.k8s import Kube

    tls = make_tls(tmp_path / "pki")
    service = ValidationService(Kube())  # no *_secret_ref in these bodies: Kubernetes is never asked
    caller = Caller(user=None, namespace="default")

    def validate(url: str, **fields: Any) -> dict[str, Any]:
        connector = service.sink_connector(caller, {"webhook": {"url": url, **fields}})
        result: dict[str, Any] = service.validate_sink(connector).model_dump()
        return result

    with contextlib_receiver(tls) as receiver:
        refused = validate(receiver.url)
        assert refused["valid"] is False
        [check] = refused["checks"]
        assert check["name"] == "webhook TLS" and check["status"] == "failed"
        assert check["field"] == "sink.webhook.ssl_root_cert" and "ssl_root_cert" in check["fix"]
        assert "TLS verification" in check["message"]

        trusted = validate(receiver.url, ssl_root_cert=tls.ca.cert_pem.decode())
        assert trusted["valid"] is True, trusted
        assert {c["name"]: c["status"] for c in trusted["checks"]} == {
            "webhook reachable": "passed",
            "webhook TLS": "passed",
        }
        assert "ssl_root_cert" in next(c for c in trusted["checks"] if c["name"] == "webhook TLS")["message"]

        unverified = validate(receiver.url, ssl_verify=False)
        assert unverified["valid"] is True
        assert "not verified" in next(c for c in unverified["checks"] if c["name"] == "webhook TLS")["message"]

        bad = validate(receiver.url, ssl_root_cert="-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n")
        assert bad["valid"] is False
        assert bad["checks"][0]["field"] == "sink.webhook.ssl_root_cert"


def test_sigterm_during_a_retry_backoff_stops_at_once_without_advancing(
    source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    """A receiver answering 500 forever and a long back-off: SIGTERM ends the worker within seconds (not after the
    back-off, nor the pod's grace period), cleanly, and the checkpoint stays where it was; the next run delivers."""
    source_db.psql("CREATE TABLE r (id int PRIMARY KEY); INSERT INTO r VALUES (1)")
    retry = {"initial_backoff_ms": 60000, "max_backoff_ms": 120000, "max_retry_duration_ms": 3600000}
    spec = webhook_spec(source_db, hook.url, retry=retry)
    run = Run(run_worker, tmp_path, spec)
    worker = run.start()
    worker.wait_for_status(realtime, timeout=90)
    hook.wait_for(lambda r: len(r.delivered()) == 1, what="the snapshot row")
    checkpoint = tmp_path / "state" / f"{spec['id']}.json"
    before = checkpoint.read_text()
    hook.reject_all(Fail(500, "down for good"))
    source_db.execute("INSERT INTO r VALUES (2)")
    hook.wait_for(lambda r: any(x.status == 500 for x in r.requests), what="the first 500")
    wait_for_backoff(worker)  # the sender is now in its 30-60 s back-off
    started = time.monotonic()
    assert worker.stop(timeout=20) == 0
    took = time.monotonic() - started
    assert took < STOP_DURING_BACKOFF_S, f"the worker took {took:.1f}s to stop"
    assert checkpoint.read_text() == before, "the position did not advance past the refused change"
    assert len([x for x in hook.requests if x.status == 500]) == 1, "no retry after the stop"
    status = worker.last_status() or {}
    assert status.get("state") == "shutdown" and status.get("status") == "complete", status
    # the receiver recovers: the next run sends the change again, under the same key
    hook.reject_all(None)
    worker = run.start()
    hook.wait_for(lambda r: len(r.delivered()) >= 2, what="the change after the restart")
    assert [(e["op"], e["row"]["id"]) for e in hook.delivered()] == [("r", 1), ("c", 2)]
    refused = next(x for x in hook.requests if x.status == 500)
    assert refused.key in {x.key for x in hook.processed()}
    assert worker.stop() == 0


def test_sigterm_during_a_snapshot_chunks_backoff_stops_at_once(
    source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql("CREATE TABLE sr (id int PRIMARY KEY); INSERT INTO sr SELECT generate_series(1, 50)")
    hook.reject_all(Fail(503, "warming up"))
    retry = {"initial_backoff_ms": 60000, "max_backoff_ms": 120000}
    spec = webhook_spec(source_db, hook.url, retry=retry)
    run = Run(run_worker, tmp_path, spec)
    worker = run.start()
    hook.wait_for(lambda r: len(r.requests) >= 1, what="the first snapshot request")
    wait_for_backoff(worker)  # the chunk's sender is now in its 30-60 s back-off
    started = time.monotonic()
    assert worker.stop(timeout=20) == 0
    took = time.monotonic() - started
    assert took < STOP_DURING_BACKOFF_S, f"the worker took {took:.1f}s to stop"
    hook.reject_all(None)
    worker = run.start()
    hook.wait_for(lambda r: len(r.delivered()) >= 50, what="the snapshot after the restart")
    assert sorted(e["row"]["id"] for e in hook.delivered()) == list(range(1, 51))
    assert worker.stop() == 0


def test_debezium_format_with_transaction_metadata(
    source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    source_db.psql("CREATE TABLE d (id int PRIMARY KEY, amount numeric(8,2), at timestamptz)")
    spec = webhook_spec(
        source_db, hook.url, format={"debezium": {"emit_tx_metadata": True}}, path_template="/t/{table}"
    )
    worker = Run(run_worker, tmp_path, spec).start()
    worker.wait_for_status(realtime, timeout=90)
    source_db.psql(
        "BEGIN; INSERT INTO d VALUES (1, 2.50, '2024-01-02 03:04:05+00'); UPDATE d SET amount = 3 WHERE id = 1; COMMIT"
    )
    hook.wait_for(lambda r: any(e["payload"].get("status") == "END" for e in r.delivered()), what="the END event")
    bodies = hook.delivered()
    payloads = [b["payload"] for b in bodies]
    assert [p.get("status") or p["op"] for p in payloads] == ["BEGIN", "c", "u", "END"]
    assert bodies[0]["schema"]["name"] == "io.debezium.connector.common.TransactionMetadataValue"
    insert = bodies[1]
    assert insert["schema"]["name"] == f"{spec['id']}.public.d.Envelope"
    payload = payloads[1]
    assert payload["after"] == {"id": 1, "amount": "APo=", "at": "2024-01-02T03:04:05.000000Z"}
    assert payload["source"]["connector"] == "postgresql" and payload["source"]["table"] == "d"
    assert payload["transaction"]["id"] == payloads[0]["id"] and payload["transaction"]["total_order"] == 1
    assert payloads[2]["transaction"]["total_order"] == 2
    assert payloads[3]["event_count"] == 2
    assert payloads[3]["data_collections"] == [{"data_collection": "public.d", "event_count": 2}]
    assert [r.path for r in hook.processed()] == ["/", "/t/d", "/"]
    assert [r.headers["x-sluice-table"] for r in hook.processed()] == ["transaction", "public.d", "transaction"]
    assert worker.stop() == 0


def contextlib_receiver(tls: TlsMaterial) -> Any:
    from tests.support.webhook import receiver

    return receiver(tls)


def test_kill9_during_the_snapshot_resumes_chunks_with_the_same_keys(
    source_db: PgDatabase, hook: Receiver, run_worker: RunWorker, tmp_path: Path
) -> None:
    """A keyed table's interrupted snapshot resumes chunk by chunk; a chunk sent again keeps its keys."""
    source_db.psql(
        "CREATE TABLE big (id int PRIMARY KEY, pad text);"
        "INSERT INTO big SELECT g, repeat('p', 40) FROM generate_series(1, 20000) g; ANALYZE big;"
    )
    spec = webhook_spec(source_db, hook.url, batch={"max_batch_size": 100}, rate_limit={"max_requests_per_second": 60})
    spec["limits"]["snapshot"] = {"max_buffer_rows": 2000}
    run = Run(run_worker, tmp_path, spec)
    rng = random.Random(7)
    worker = run.start()
    for _ in range(2):
        hook.wait_for(lambda r: len(r.processed()) > 0, what="the snapshot's first request")
        time.sleep(rng.uniform(0.5, 1.5))  # the crash instant: random on purpose
        worker.kill()
        worker = run.start()
    hook.wait_for(lambda r: len(r.delivered()) >= 20000, timeout=180, what="every snapshot row")
    worker.wait_for_status(realtime, timeout=60)
    events = hook.delivered()
    assert Counter(e["row"]["id"] for e in events) == Counter(range(1, 20001)), "each row once after dedup"
    assert sum(len(r.events) for r in hook.processed()) > 20000, "the kills did make requests repeat"
    assert worker.stop() == 0
