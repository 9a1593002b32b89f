"""PostgreSQL → webhook: sluice's rows/s and latency into a local receiver, beside Debezium Server's HTTP sink.

The peer is Debezium Server (the same Debezium version as the Kafka conformance reference, from Maven Central via
``hack/install-debezium-server.sh``; it needs Java 21+), with its PostgreSQL source and HTTP sink, run after sluice
on the same source server, into the same receiver. It is run when installed (``--peer auto``, the default), or
installed first with ``--peer debezium-server``. A second reference is the receiver itself: the same local HTTP/1.1
receiver blasted from this process over one keep-alive connection with pre-encoded requests — 1 MiB ones (sluice's
shape) and one-event ones (Debezium's HTTP sink POSTs each event alone) — the most a single-connection sender could
get through it.

Measured, for each peer in turn, with defaults (sluice: 1 MiB requests, no event limit, native format, no
compression; Debezium Server: one event per request, JSON with its schema, as its HTTP sink sends):
- snapshot: from starting the peer (start-up included: a Python process for sluice, a JVM for Debezium) until the
  receiver holds every ``r`` event of the pgbench tables, rows/s;
- one UPDATE of ``--update-rows`` rows committed on the source: from COMMIT returning until the receiver counted its
  events, rows/s;
- latency: single-row commits at a low rate, COMMIT returning → the request with that row received, p50/p99
  (sluice's ``limits.cdc.flush_interval_ms`` and Debezium's ``poll.interval.ms`` are both set to 10 ms);
- CPU seconds (user + system) of the peer's processes for the snapshot and for the UPDATE, and their peak RSS: what
  each costs, readable even when other work on the machine stretches the wall-clock figures;
- the receiver's ceilings in events/s, and each peer's ratio to the one of its request shape;
- the source's ceiling: the same UPDATE again, read by a bare psycopg2 pgoutput reader (a slot of its own,
  streaming off as both peers read, nothing decoded), COMMIT → every row's message received: what the server and
  the client library deliver before any decoding.

The receiver answers 200 at once; it counts sluice's events with the ``X-Sluice-Events`` header and parses only
the bodies of the latency table; a Debezium event is parsed (its table and ``op`` are only in the body). Run
``bench/pg_to_webhook --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from pg_to_pg import RssSampler, _tree, cpu_seconds  # noqa: E402

from sluice.devstack.postgres import PostgresInstance, free_port, postgres_available  # noqa: E402

T_START = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - T_START:7.1f}s] {msg}", file=sys.stderr, flush=True)


class Receiver:
    """Counts events per (table, snapshot or not); records arrival times of the latency table's markers."""

    def __init__(self, *, count_only: bool = False) -> None:
        self.lock = threading.Lock()
        self.events: dict[tuple[str, bool], int] = {}
        self.bytes = 0
        self.requests = 0
        self.markers: dict[int, float] = {}
        self.latency_table = "public.pgbench_branches"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.monotonic()
                if not count_only:
                    receiver.record(self.headers, body, now)
                else:
                    with receiver.lock:
                        receiver.bytes += len(body)
                        receiver.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # a sender that hangs up with requests unanswered (the pipelined ceiling, a stopped peer) is not an error
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, headers: Any, body: bytes, now: float) -> None:
        if "X-Sluice-Table" not in headers:
            self.record_debezium(body, now)
            return
        table = headers.get("X-Sluice-Table", "")
        snapshot = headers.get("X-Sluice-Position", "").startswith("snapshot")
        n = int(headers.get("X-Sluice-Events") or 0)
        markers: list[int] = []
        if table == self.latency_table and not snapshot:
            for event in json.loads(body):
                row = event.get("row") or {}
                if row.get("bid") == 1:
                    markers.append(int(row["bbalance"]))
        with self.lock:
            self.events[(table, snapshot)] = self.events.get((table, snapshot), 0) + n
            self.bytes += len(body)
            self.requests += 1
            for m in markers:
                self.markers.setdefault(m, now)

    def record_debezium(self, body: bytes, now: float) -> None:
        """One Debezium change event (the HTTP sink's body): table and snapshot-or-not from its payload."""
        event = json.loads(body) if body else {}
        payload = event.get("payload", event) if isinstance(event, dict) else {}
        if not isinstance(payload, dict) or "op" not in payload:
            return  # a heartbeat or anything else without a row change
        source = payload.get("source") or {}
        table = f"{source.get('schema')}.{source.get('table')}"
        snapshot = payload.get("op") == "r"
        marker: int | None = None
        after = payload.get("after") or {}
        if table == self.latency_table and not snapshot and after.get("bid") == 1:
            marker = int(after["bbalance"])
        with self.lock:
            self.events[(table, snapshot)] = self.events.get((table, snapshot), 0) + 1
            self.bytes += len(body)
            self.requests += 1
            if marker is not None:
                self.markers.setdefault(marker, now)

    def reset(self) -> None:
        with self.lock:
            self.events.clear()
            self.markers.clear()
            self.bytes = 0
            self.requests = 0

    def count(self, table: str | None, snapshot: bool) -> int:
        with self.lock:
            return sum(v for (t, s), v in self.events.items() if s == snapshot and (table is None or t == table))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def sample_body(rows: int) -> tuple[bytes, int]:
    """A ~1 MiB JSON array of native events shaped like pgbench_accounts rows (what the sink sends)."""
    from sluice.worker.encoders import NativeEncoder, TxContext, dumps
    from sluice.worker.events import Column, ColumnType, Op, RowChange, TableId, TableSchema, TypeKind
    from sluice.worker.positions import Lsn

    t = TableId("public", "pgbench_accounts")
    i4 = ColumnType(TypeKind.INT, bits=32)
    schema = TableSchema(
        t,
        (Column("aid", i4), Column("bid", i4), Column("abalance", i4), Column("filler", ColumnType(TypeKind.TEXT))),
        ("aid",),
    )
    enc = NativeEncoder()
    tx = TxContext("1", Lsn(1), datetime.now(UTC))
    items: list[bytes] = []
    size = 1
    for aid in range(1, rows + 1):
        e = dumps(enc.change(schema, RowChange(Op.UPDATE, t, (aid, 1, 0, " " * 84), (aid, 1, 1, " " * 84)), tx))
        b = e.encode()
        if size + len(b) + 1 > 1048576:
            break
        items.append(b)
        size += len(b) + 1
    return b"[" + b",".join(items) + b"]", len(items)


def sample_debezium_body() -> bytes:
    """One Debezium UPDATE event of a pgbench_accounts row, with its schema, as the HTTP sink POSTs it (~2.5 kB)."""
    from sluice.worker.encoders import DebeziumEncoder, TxContext
    from sluice.worker.events import Column, ColumnType, Op, RowChange, TableId, TableSchema, TypeKind
    from sluice.worker.positions import Lsn

    t = TableId("public", "pgbench_accounts")
    i4 = ColumnType(TypeKind.INT, bits=32)
    schema = TableSchema(
        t,
        (Column("aid", i4), Column("bid", i4), Column("abalance", i4), Column("filler", ColumnType(TypeKind.TEXT))),
        ("aid",),
    )
    enc = DebeziumEncoder(connector="bench", source_kind="postgres", database="bench")
    tx = TxContext("1", Lsn(1), datetime.now(UTC))
    change = RowChange(Op.UPDATE, t, (1, 1, 0, " " * 84), (1, 1, 1, " " * 84))
    return enc.change_json(schema, change, tx, ts_us=0, total_order=1, collection_order=1).encode()


def ceiling(seconds: float) -> tuple[float, float]:
    """Events/s and MB/s a counting receiver takes from one keep-alive sender of pre-encoded 1 MiB requests of
    native events (sluice's request shape)."""
    import httpx

    body, events = sample_body(100_000)
    receiver = Receiver(count_only=True)
    sent = 0
    try:
        with httpx.Client(timeout=30) as client:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                client.post(receiver.url, content=body, headers={"Content-Type": "application/json"})
                sent += 1
            elapsed = time.monotonic() - started
    finally:
        receiver.close()
    return sent * events / elapsed, sent * len(body) / elapsed / 1e6


def ceiling_single(seconds: float) -> float:
    """Requests/s the counting receiver answers when each carries one Debezium event (that sink's shape).

    A Python client waiting for each answer would measure itself, not the receiver, so the pre-encoded requests are
    pipelined over one keep-alive socket (the receiver answers them in order) while a thread drains the answers;
    the count is the receiver's own.
    """
    import socket

    body = sample_debezium_body()
    receiver = Receiver(count_only=True)
    host, port = "127.0.0.1", int(receiver.server.server_address[1])
    request = (
        f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    burst = request * 64
    stop = threading.Event()
    try:
        with socket.create_connection((host, port)) as sock:

            def drain() -> None:
                sock.settimeout(0.5)
                while not stop.is_set():
                    try:
                        if not sock.recv(1 << 16):
                            return
                    except TimeoutError:
                        continue
                    except OSError:
                        return

            reader = threading.Thread(target=drain, daemon=True)
            reader.start()
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                sock.sendall(burst)
            elapsed = time.monotonic() - started
            with receiver.lock:
                answered = receiver.requests
            stop.set()
            reader.join(timeout=2)
    finally:
        receiver.close()
    return answered / elapsed


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.accounts = 100_000 * args.scale
        self.snapshot_rows = self.accounts + 10 * args.scale + args.scale
        self.work = Path(tempfile.mkdtemp(prefix="sluice-bench-webhook-"))
        self.work.chmod(0o755)
        settings: dict[str, str | int] = {"max_wal_size": "4GB", "checkpoint_timeout": "30min"}
        self.source = PostgresInstance(name="bench-webhook-source", fast=args.fast, settings=settings)
        self.results: dict[str, Any] = {}

    def setup(self) -> None:
        self.source.base_dir = self.work / "source"
        self.source.start()
        self.source.create_database("bench")
        assert self.source.bin_dir is not None
        progress(f"pgbench -i -s {self.args.scale} ({self.accounts:,} accounts)")
        subprocess.run(
            [str(self.source.bin_dir / "pgbench"), "-i", "-s", str(self.args.scale), "-q", "bench"],
            env=self.source.client_env(),
            check=True,
            capture_output=True,
        )
        self.source.execute("DROP TABLE pgbench_history", dbname="bench")
        self.source.execute("VACUUM ANALYZE", dbname="bench")

    def teardown(self) -> None:
        self.source.destroy()
        shutil.rmtree(self.work, ignore_errors=True)

    def run(self) -> dict[str, Any]:
        self.setup()
        receiver = Receiver()
        try:
            self.results["sluice"] = self.measure(receiver, "sluice", self.start_sluice)
            if self.args.dbz_dir is not None:
                try:
                    self.results["debezium"] = self.measure(receiver, "debezium-server", self.start_debezium)
                except Exception as exc:  # the peer failing says why in its column; sluice's numbers still print
                    progress(f"debezium-server: {exc}")
                    self.results["debezium"] = {"error": str(exc).splitlines()[0][:200]}
            progress("source ceiling: a bare psycopg2 pgoutput reader that only counts the UPDATE's messages")
            try:
                self.results["source_ceiling_s"] = self.source_ceiling()
            except Exception as exc:  # the peers' figures still print
                progress(f"source ceiling: {exc}")
        finally:
            receiver.close()
            self.teardown()
        progress("receiver ceilings: one sender, pre-encoded 1 MiB requests, then one-event requests")
        self.results["ceiling_events_s"], self.results["ceiling_mb_s"] = ceiling(self.args.ceiling_seconds)
        if "debezium" in self.results:
            self.results["ceiling_single_events_s"] = ceiling_single(self.args.ceiling_seconds)
        return self.results

    def source_ceiling(self) -> float:
        """Seconds from COMMIT of the same UPDATE until a bare pgoutput reader (a slot and publication of its own,
        streaming off as both peers use it, nothing decoded) has received every row's message: what the source
        server itself takes to decode and send the transaction, which bounds any consumer."""
        from sluice.worker.sources.postgres.stream import ReplicationStream

        rows = self.args.update_rows
        self.source.execute("CREATE PUBLICATION ceiling FOR TABLE pgbench_accounts", dbname="bench")
        self.source.execute("SELECT pg_create_logical_replication_slot('ceiling', 'pgoutput')", dbname="bench")
        stream = ReplicationStream(
            self.source.conninfo("bench"), slot="ceiling", publication="ceiling", start_lsn=0, streaming=False
        )
        try:
            with self.source.connect("bench") as conn:
                conn.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= %s", (rows,))
                committed = time.monotonic()
            seen = 0
            deadline = committed + self.args.timeout
            while seen < rows:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {seen:,} of {rows:,} messages within {self.args.timeout:.0f}s")
                msg = stream.read()
                if msg is None:
                    stream.wait(1.0)
                elif msg.payload[:1] == b"U":
                    seen += 1
            return time.monotonic() - committed
        finally:
            stream.close()  # the slot goes with the server, torn down next

    def start_sluice(self, receiver: Receiver, log: Path) -> subprocess.Popen[bytes]:
        spec = {
            "id": "bench-pg-to-webhook",
            "source": {
                "postgres": {
                    "connection": self.source.connection_spec("bench"),
                    "replication_type": {"logical_replication": {}},
                }
            },
            "sink": {"webhook": {"url": receiver.url, "path_template": "/{schema}/{table}"}},
            "limits": {"cdc": {"flush_interval_ms": 10}},
        }
        config = self.work / "connector.yaml"
        config.write_text(yaml.safe_dump(spec, sort_keys=False))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
        env["SLUICE_STATE_DIR"] = str(self.work / "state")
        argv = [sys.executable, "-m", "sluice", "worker", "--config", str(config)]
        with log.open("wb") as out:
            return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def start_debezium(self, receiver: Receiver, log: Path) -> subprocess.Popen[bytes]:
        """Debezium Server with its PostgreSQL source (pgoutput, a slot and publication of its own) and HTTP sink,
        defaults otherwise; ``poll.interval.ms`` = 10 like sluice's flush interval. It reads
        ``config/application.properties`` of its working directory; its own HTTP port is bound to loopback."""
        dist: Path = self.args.dbz_dir / "server"
        java = (self.args.dbz_dir / "java").read_text().strip()
        conn = self.source.connection_spec("bench")
        home = self.work / "debezium"
        (home / "config").mkdir(parents=True, exist_ok=True)
        (home / "data").mkdir(exist_ok=True)
        tables = ",".join(f"public.pgbench_{t}" for t in ("accounts", "branches", "tellers"))
        props = {
            "debezium.sink.type": "http",
            "debezium.sink.http.url": receiver.url + "/",
            "debezium.source.connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "debezium.source.offset.storage.file.filename": str(home / "data" / "offsets.dat"),
            "debezium.source.offset.flush.interval.ms": "0",
            "debezium.source.database.hostname": str(conn["host"]),
            "debezium.source.database.port": str(conn["port"]),
            "debezium.source.database.user": str(conn["user"]),
            "debezium.source.database.password": str(conn.get("password") or ""),
            "debezium.source.database.dbname": "bench",
            "debezium.source.topic.prefix": "bench",
            "debezium.source.plugin.name": "pgoutput",
            "debezium.source.slot.name": "debezium_bench",
            "debezium.source.publication.name": "debezium_bench",
            "debezium.source.publication.autocreate.mode": "filtered",
            "debezium.source.table.include.list": tables,
            "debezium.source.poll.interval.ms": "10",
            "debezium.format.value": "json",
            "debezium.format.key": "json",
            "quarkus.http.host": "127.0.0.1",
            "quarkus.http.port": str(free_port()),
            "quarkus.log.console.json": "false",
        }
        (home / "config" / "application.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        runner = next(dist.glob("debezium-server-*-runner.jar"))
        classpath = os.pathsep.join([str(runner), str(dist / "config" / "lib"), str(dist / "lib" / "*")])
        # Java 24+ needs java.lang opened for Quarkus's thread-local reset (its own message says so)
        argv = [java, "--add-opens=java.base/java.lang=ALL-UNNAMED", "-cp", classpath, "io.debezium.server.Main"]
        with log.open("wb") as out:
            return subprocess.Popen(
                argv, cwd=home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ)
            )

    def measure(self, receiver: Receiver, name: str, start: Any) -> dict[str, Any]:
        """One peer: snapshot, the timed UPDATE, latency commits; then SIGTERM."""
        receiver.reset()
        results: dict[str, Any] = {}
        log = self.work / f"{name}.log"
        progress(f"{name}: snapshot: start")
        started = time.monotonic()
        proc: subprocess.Popen[bytes] = start(receiver, log)

        def wait(pred: Any, timeout: float, what: str) -> float:
            deadline = time.monotonic() + timeout
            while not pred():
                if proc.poll() is not None:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
                    raise RuntimeError(f"{name} exited with {proc.returncode} during {what}:\n{tail}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not finish within {timeout:.0f}s")
                time.sleep(0.005)
            return time.monotonic()

        rss = RssSampler(lambda: _tree(proc.pid), "hwm").__enter__()
        try:
            done = wait(lambda: receiver.count(None, True) >= self.snapshot_rows, self.args.timeout, "snapshot")
            results["snapshot_s"] = done - started
            results["snapshot_cpu_s"] = cpu_seconds(_tree(proc.pid))
            results["snapshot_rows"] = receiver.count(None, True)
            progress(f"{name}: snapshot: {self.snapshot_rows:,} rows in {done - started:.2f}s")
            time.sleep(1.0)  # let the peer switch to streaming before the timed UPDATE

            rows = self.args.update_rows
            before = receiver.count("public.pgbench_accounts", False)
            with self.source.connect("bench") as conn:
                cpu = cpu_seconds(_tree(proc.pid))
                conn.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= %s", (rows,))
                committed = time.monotonic()
            done = wait(
                lambda: receiver.count("public.pgbench_accounts", False) - before >= rows,
                self.args.timeout,
                f"UPDATE of {rows:,} rows",
            )
            results["update_s"] = done - committed
            results["update_cpu_s"] = cpu_seconds(_tree(proc.pid)) - cpu
            progress(f"{name}: update: {rows:,} rows in {done - committed:.2f}s")

            latencies: list[float] = []
            with self.source.connect("bench") as conn:
                for i in range(self.args.latency_commits):
                    marker = 10_000_000 + i
                    conn.execute("UPDATE pgbench_branches SET bbalance = %s WHERE bid = 1", (marker,))
                    t0 = time.monotonic()
                    arrived = wait(lambda m=marker: m in receiver.markers, 30, "a latency commit")
                    latencies.append((receiver.markers.get(marker, arrived) - t0) * 1000)
                    time.sleep(self.args.latency_interval_ms / 1000)
            results["latencies_ms"] = latencies
            results["requests"] = receiver.requests
            results["bytes"] = receiver.bytes
        finally:
            rss.sample()
            rss.__exit__(None, None, None)
            results["peak_rss_mb"] = rss.peak_kb / 1024
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        return results


def _rate(r: dict[str, Any], rows: int, key: str) -> float:
    return rows / r[key] if key in r else float("nan")


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    sl = r["sluice"]
    dbz: dict[str, Any] | None = r.get("debezium")
    peer = dbz is not None and "error" not in dbz
    why = args.dbz_note if dbz is None else (f"failed: {dbz['error']}" if not peer else "")
    ceiling_rate = r["ceiling_events_s"]
    single_rate = r.get("ceiling_single_events_s", float("nan"))
    rows = args.update_rows

    def cells(name: str, sluice_cell: str, dbz_cell: str, ratio: str) -> str:
        return f"| {name} | {sluice_cell} | {dbz_cell if peer else 'n/a'} | {ratio if peer else ''} |"

    def run_cell(res: dict[str, Any], n: int, key: str) -> str:
        return f"{res[key]:.2f} s = {_rate(res, n, key):,.0f} rows/s" if key in res else "n/a"

    def cpu_cell(res: dict[str, Any]) -> str:
        if "update_cpu_s" not in res:
            return "n/a"
        return f"{res['snapshot_cpu_s']:.1f} s, {res['update_cpu_s']:.1f} s"

    d = dbz if peer and dbz is not None else {}
    snap_rows = sl["snapshot_rows"]
    lat, dlat = sl["latencies_ms"], d.get("latencies_ms", [])
    lines = [
        f"# PostgreSQL → webhook ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, scale {args.scale})",
        "",
        "| metric | sluice | Debezium Server 3.6.1 (HTTP sink) | sluice ÷ Debezium |",
        "|---|---:|---:|---:|",
        cells(
            f"snapshot {snap_rows:,} rows (incl. start-up)",
            run_cell(sl, snap_rows, "snapshot_s"),
            run_cell(d, snap_rows, "snapshot_s") if peer else "",
            f"{_rate(sl, snap_rows, 'snapshot_s') / _rate(d, snap_rows, 'snapshot_s'):.2f}x" if peer else "",
        ),
        cells(
            f"UPDATE {rows:,} rows, COMMIT → all received",
            run_cell(sl, rows, "update_s"),
            run_cell(d, rows, "update_s") if peer else "",
            f"{_rate(sl, rows, 'update_s') / _rate(d, rows, 'update_s'):.2f}x" if peer else "",
        ),
        cells(
            "CPU seconds of the peer's processes: snapshot (incl. start-up), UPDATE",
            cpu_cell(sl),
            cpu_cell(d) if peer else "",
            "",
        ),
        cells(
            "peak RSS of the peer's processes",
            f"{sl['peak_rss_mb']:,.0f} MB",
            f"{d['peak_rss_mb']:,.0f} MB" if "peak_rss_mb" in d else "n/a",
            "",
        ),
        cells(
            f"commit → received, p50 ({len(lat)} single-row commits)",
            f"{pct(lat, 50):.1f} ms",
            f"{pct(dlat, 50):.1f} ms",
            "",
        ),
        cells("commit → received, p99", f"{pct(lat, 99):.1f} ms", f"{pct(dlat, 99):.1f} ms", ""),
        cells(
            "requests, MB of JSON received",
            f"{sl['requests']:,}, {sl['bytes'] / 1e6:,.0f} MB",
            f"{d.get('requests', 0):,}, {d.get('bytes', 0) / 1e6:,.0f} MB",
            "",
        ),
        cells(
            "receiver ceiling, one keep-alive sender of the peer's request shape",
            f"{ceiling_rate:,.0f} events/s (1 MiB, {r['ceiling_mb_s']:.0f} MB/s)",
            f"{single_rate:,.0f} events/s (1 event)",
            "",
        ),
        cells(
            "UPDATE rate ÷ that ceiling",
            f"{_rate(sl, rows, 'update_s') / ceiling_rate:.2f}",
            f"{_rate(d, rows, 'update_s') / single_rate:.2f}" if peer else "",
            "",
        ),
        cells(
            "source ceiling: a bare psycopg2 pgoutput reader gets the UPDATE's messages",
            run_cell(r, rows, "source_ceiling_s"),
            "",
            "",
        ),
        cells(
            "UPDATE rate ÷ the source ceiling",
            f"{_rate(sl, rows, 'update_s') / _rate(r, rows, 'source_ceiling_s'):.2f}",
            f"{_rate(d, rows, 'update_s') / _rate(r, rows, 'source_ceiling_s'):.2f}" if peer else "",
            "",
        ),
        "",
        "sluice: native format, no compression, default batch (1 MiB), limits.cdc.flush_interval_ms = 10. Debezium "
        "Server: JSON with schema, one event per request (its HTTP sink), poll.interval.ms = 10, otherwise defaults.",
    ]
    if args.fast:
        lines.append(
            "--fast: synchronous_commit is off, so a commit reaches logical decoding only when the WAL writer flushes "
            "it (wal_writer_delay, 200 ms): the latencies above measure that, for both peers alike."
        )
    if why:
        lines.append(f"Debezium Server: {why}")
    lines.append(
        "Load average at the end (1/5/15 min): {:.2f} / {:.2f} / {:.2f} (other work on the machine skews the "
        "numbers; rerun when it is high).".format(*os.getloadavg())
    )
    return "\n".join(lines)


def _debezium_dir(peer: str) -> tuple[Path | None, str]:
    """The installed Debezium Server (installing it for ``debezium-server``), or None and why not."""
    if peer == "none":
        return None, "not run (--peer none)"
    script = REPO / "hack" / "install-debezium-server.sh"
    where = Path(
        subprocess.run(["bash", str(script), "--print-dir"], check=True, capture_output=True, text=True).stdout.strip()
    )
    if not (where / ".installed").exists():
        if peer == "auto":
            return None, "not installed (bash hack/install-debezium-server.sh, or --peer debezium-server)"
        progress("installing Debezium Server (hack/install-debezium-server.sh)")
        done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"could not be installed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
    return where, ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/pg_to_webhook", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (100k accounts each; default 10 = 1M)")
    parser.add_argument("--update-rows", type=int, default=500_000)
    parser.add_argument("--latency-commits", type=int, default=200)
    parser.add_argument("--latency-interval-ms", type=int, default=50)
    parser.add_argument("--ceiling-seconds", type=float, default=5.0)
    parser.add_argument("--fast", action="store_true", help="fsync/synchronous_commit/full_page_writes off")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--peer",
        choices=("auto", "debezium-server", "none"),
        default="auto",
        help="auto: run Debezium Server beside sluice when installed; debezium-server: install it first if needed",
    )
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    if args.update_rows > 100_000 * args.scale:
        parser.error("--update-rows exceeds the accounts of --scale")
    args.dbz_dir, args.dbz_note = _debezium_dir(args.peer)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ok, why = postgres_available()
    if not ok:
        print(f"error: {why}", file=sys.stderr)
        return 2
    results = Bench(args).run()
    report = render(results, args)
    print(report)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"webhook-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.md"
    path.write_text(report + "\n")
    progress(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
