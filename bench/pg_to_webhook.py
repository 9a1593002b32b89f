"""PostgreSQL → webhook: sluice's rows/s and latency into a local receiver, against the receiver's own ceiling.

No peer runs here (Debezium Server's HTTP sink needs a JVM and jars this machine does not have), so the reference
is the receiver itself: the same local HTTP/1.1 receiver, blasted with pre-encoded 1 MiB requests of the same
events over one keep-alive connection from this process — the most any single-connection sender could get
through it. Ratios against that ceiling are what to compare between runs.

Measured, one run, with the webhook sink's default batch settings (1 MiB requests, no event limit, native format,
no compression):
- snapshot: from starting ``sluice worker`` (start-up included) until the receiver holds every ``r`` event of the
  pgbench tables, rows/s;
- one 500k-row UPDATE committed on the source: from COMMIT returning until the receiver counted its 500k events,
  rows/s;
- latency: single-row commits at a low rate, COMMIT returning → the request with that row received, p50/p99
  (the connector's ``limits.cdc.flush_interval_ms`` is set to 10 ms: the general flow hands changes to a sink at
  that interval);
- the receiver's ceiling in events/s, and sluice's ratio to it.

The receiver answers 200 at once; it counts events with the ``X-Sluice-Events`` header and parses only the bodies
of the latency table. Run ``bench/pg_to_webhook --help``.
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

from sluice.devstack.postgres import PostgresInstance, postgres_available  # noqa: E402

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
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, headers: Any, body: bytes, now: float) -> None:
        table = headers.get("X-Sluice-Table", "")
        snapshot = headers.get("X-Sluice-Position", "").startswith("snapshot")
        n = int(headers.get("X-Sluice-Events") or 0)
        markers: list[int] = []
        if table == self.latency_table and not snapshot:
            for event in json.loads(body):
                row = event.get("row") or {}
                if row.get("bid") == 2:
                    markers.append(int(row["bbalance"]))
        with self.lock:
            self.events[(table, snapshot)] = self.events.get((table, snapshot), 0) + n
            self.bytes += len(body)
            self.requests += 1
            for m in markers:
                self.markers.setdefault(m, now)

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


def ceiling(seconds: float) -> tuple[float, float]:
    """Events/s and MB/s a counting receiver takes from one keep-alive sender of pre-encoded 1 MiB requests."""
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
        proc: subprocess.Popen[bytes] | None = None
        try:
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
            log = self.work / "worker.log"
            argv = [sys.executable, "-m", "sluice", "worker", "--config", str(config)]
            progress("snapshot: worker start")
            with log.open("wb") as out:
                started = time.monotonic()
                proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

            def wait(pred: Any, timeout: float, what: str) -> float:
                deadline = time.monotonic() + timeout
                while not pred():
                    if proc is not None and proc.poll() is not None:
                        tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:])
                        raise RuntimeError(f"worker exited with {proc.returncode} during {what}:\n{tail}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{what} did not finish within {timeout:.0f}s")
                    time.sleep(0.005)
                return time.monotonic()

            done = wait(lambda: receiver.count(None, True) >= self.snapshot_rows, self.args.timeout, "snapshot")
            self.results["snapshot_s"] = done - started
            self.results["snapshot_rows"] = receiver.count(None, True)
            progress(f"snapshot: {self.snapshot_rows:,} rows in {done - started:.2f}s")
            time.sleep(1.0)  # let the worker switch to streaming before the timed UPDATE

            rows = self.args.update_rows
            before = receiver.count("public.pgbench_accounts", False)
            with self.source.connect("bench") as conn:
                conn.execute("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= %s", (rows,))
                committed = time.monotonic()
            done = wait(
                lambda: receiver.count("public.pgbench_accounts", False) - before >= rows,
                self.args.timeout,
                f"UPDATE of {rows:,} rows",
            )
            self.results["update_s"] = done - committed
            progress(f"update: {rows:,} rows in {done - committed:.2f}s")

            latencies: list[float] = []
            with self.source.connect("bench") as conn:
                for i in range(self.args.latency_commits):
                    marker = 10_000_000 + i
                    conn.execute("UPDATE pgbench_branches SET bbalance = %s WHERE bid = 2", (marker,))
                    t0 = time.monotonic()
                    arrived = wait(lambda m=marker: m in receiver.markers, 30, "a latency commit")
                    latencies.append((receiver.markers.get(marker, arrived) - t0) * 1000)
                    time.sleep(self.args.latency_interval_ms / 1000)
            self.results["latencies_ms"] = latencies
            self.results["requests"] = receiver.requests
            self.results["bytes"] = receiver.bytes
        finally:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            receiver.close()
            self.teardown()
        progress("receiver ceiling: one sender, pre-encoded 1 MiB requests")
        events_s, mb_s = ceiling(self.args.ceiling_seconds)
        self.results["ceiling_events_s"] = events_s
        self.results["ceiling_mb_s"] = mb_s
        return self.results


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    snap_rate = r["snapshot_rows"] / r["snapshot_s"]
    upd_rate = args.update_rows / r["update_s"]
    ceiling_rate = r["ceiling_events_s"]
    lat = r["latencies_ms"]
    lines = [
        f"# PostgreSQL → webhook ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, scale {args.scale})",
        "",
        "| metric | sluice | receiver ceiling | ratio |",
        "|---|---:|---:|---:|",
        f"| snapshot {r['snapshot_rows']:,} rows (incl. start-up) | {r['snapshot_s']:.2f} s = "
        f"{snap_rate:,.0f} rows/s | {ceiling_rate:,.0f} events/s | {snap_rate / ceiling_rate:.2f} |",
        f"| UPDATE {args.update_rows:,} rows, COMMIT → all received | {r['update_s']:.2f} s = {upd_rate:,.0f} rows/s "
        f"| {ceiling_rate:,.0f} events/s | {upd_rate / ceiling_rate:.2f} |",
        f"| commit → received, p50 ({len(lat)} single-row commits) | {pct(lat, 50):.1f} ms | | |",
        f"| commit → received, p99 | {pct(lat, 99):.1f} ms | | |",
        f"| receiver ceiling (1 MiB requests, one keep-alive connection) | | {r['ceiling_mb_s']:.0f} MB/s | |",
        "",
        f"Requests: {r['requests']:,}, {r['bytes'] / 1e6:,.0f} MB of JSON (native format, no compression, default "
        "batch: 1 MiB). Latency with limits.cdc.flush_interval_ms = 10.",
        "Load average at the end (1/5/15 min): {:.2f} / {:.2f} / {:.2f} (other work on the machine skews the "
        "numbers; rerun when it is high).".format(*os.getloadavg()),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/pg_to_webhook", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (100k accounts each; default 10 = 1M)")
    parser.add_argument("--update-rows", type=int, default=500_000)
    parser.add_argument("--latency-commits", type=int, default=200)
    parser.add_argument("--latency-interval-ms", type=int, default=50)
    parser.add_argument("--ceiling-seconds", type=float, default=5.0)
    parser.add_argument("--fast", action="store_true", help="fsync/synchronous_commit/full_page_writes off")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    if args.update_rows > 100_000 * args.scale:
        parser.error("--update-rows exceeds the accounts of --scale")
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
