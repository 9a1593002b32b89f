"""PostgreSQL → Kafka, side by side: Sluice vs Debezium's PostgreSQL connector on Kafka Connect, in one run.

Same PostgreSQL server, same Kafka broker, same data (each peer gets a fresh database filled the same way), peers
one after the other. Debezium runs as Strimzi users run it: Kafka Connect (standalone worker, from the jars
``hack/install-debezium.sh`` resolved on Maven Central) with ``JsonConverter`` (schemas on); Sluice runs
``sluice worker`` with the same format and Kafka transactions on (exactly once; Debezium on a standalone worker is
at least once).

Measured per peer, by a consumer reading the topic as the events arrive (read_committed):

- snapshot: seconds from the peer's start until all rows of the table are on the topic, and rows/s;
- CDC: one ``--rows``-row UPDATE, then one ``--rows``-row INSERT, each committed at once: seconds from COMMIT
  until all its events are on the topic, and rows/s;
- latency: single-row commits at ~20/s, time from COMMIT returning until the consumer has the event (p50/p99);
- peak RSS of the peer's process tree (VmHWM).

Run ``bench/pg_to_kafka --help``. Results go to stdout and ``bench/results/pg_to_kafka-<timestamp>.md``.
Targets (issue 9): snapshot and CDC throughput at least twice Debezium's, latency p99 at most 50 ms,
RSS at most half of Debezium's JVM.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from pg_to_pg import RssSampler, _tree, pct  # noqa: E402

from sluice.devstack.kafka import KafkaInstance, kafka_available  # noqa: E402
from sluice.devstack.postgres import PostgresInstance, postgres_available  # noqa: E402

DEBEZIUM_VERSION = "3.6.1.Final"
PEERS = ("sluice", "debezium")
T_START = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - T_START:7.1f}s] {msg}", file=sys.stderr, flush=True)


def debezium_home() -> Path:
    cache = Path(os.environ.get("SLUICE_CACHE") or Path.home() / ".cache" / "sluice")
    return cache / "debezium" / DEBEZIUM_VERSION


def start_connect_standalone(
    work: Path, prefix: str, bootstrap: str, connector: dict[str, str], jvm_opts: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """Kafka Connect's standalone worker (the jars of ``hack/install-debezium.sh``) running one ``connector``, with
    ``JsonConverter`` (schemas on) and file offsets in ``work``; its output goes to ``work/<prefix>.log``.
    ``jvm_opts`` go before the main class (none: the JVM's own defaults)."""
    worker = {
        "bootstrap.servers": bootstrap,
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
        "offset.storage.file.filename": str(work / f"{prefix}.offsets"),
        "offset.flush.interval.ms": "1000",
        "listeners": "http://127.0.0.1:0",
        "plugin.discovery": "only_scan",
    }
    wp, cp = work / f"{prefix}-worker.properties", work / f"{prefix}-connector.properties"
    wp.write_text("".join(f"{k}={v}\n" for k, v in worker.items()))
    cp.write_text("".join(f"{k}={v}\n" for k, v in connector.items()))
    return subprocess.Popen(
        [
            "java",
            *jvm_opts,
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            str(debezium_home() / "libs" / "*"),
            "org.apache.kafka.connect.cli.ConnectStandalone",
            str(wp),
            str(cp),
        ],
        stdout=(work / f"{prefix}.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@dataclass
class Result:
    name: str
    available: bool = True
    reason: str = ""
    snapshot_s: float | None = None
    update_s: float | None = None
    insert_s: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None


class TopicCounter:
    """Counts the committed records of a table topic as they arrive; remembers when each ``lat`` id arrived."""

    def __init__(self, bootstrap: str, topic: str, lat_topic: str) -> None:
        from confluent_kafka import Consumer

        self.topic, self.lat_topic = topic, lat_topic
        self.count = 0
        self.arrivals: dict[int, float] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "topic.metadata.refresh.interval.ms": 500,
                "fetch.wait.max.ms": 5,  # the broker answers within 5 ms even with nothing new: latency, not batching
                "allow.auto.create.topics": False,
                "log_level": 0,
            }
        )
        self._consumer.subscribe([topic, lat_topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(10000, 0.005):  # returns after this timeout even with fewer
                value = msg.value()
                if msg.error() is not None or value is None:
                    continue
                if msg.topic() == self.topic:
                    self.count += 1
                else:
                    with contextlib.suppress(Exception):
                        payload = json.loads(value)["payload"]
                        if payload.get("after"):
                            self.arrivals[int(payload["after"]["id"])] = time.monotonic()

    def wait_for(self, count: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while self.count < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.count} of {count} records on {self.topic} after {timeout:.0f}s")
            time.sleep(0.01)
        return time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


class Bench:
    def __init__(self, args: argparse.Namespace, pg: PostgresInstance, kafka: KafkaInstance, work: Path) -> None:
        self.args, self.pg, self.kafka, self.work = args, pg, kafka, work

    def fresh_db(self, name: str) -> dict[str, Any]:
        rows = self.args.rows
        self.pg.psql(f"DROP DATABASE IF EXISTS {name}", dbname="postgres")
        self.pg.psql(f"CREATE DATABASE {name}", dbname="postgres")
        self.pg.psql(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, filler char(84));"
            f"INSERT INTO accounts SELECT g, 0, '' FROM generate_series(1, {rows}) g;"
            "CREATE TABLE lat (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());"
            "ANALYZE;",
            dbname=name,
        )
        return dict(self.pg.connection_spec(name))

    # ---- peers -------------------------------------------------------------------------------------------------

    def start_sluice(self, prefix: str, conn: dict[str, Any]) -> subprocess.Popen[bytes]:
        spec = {
            "id": prefix,
            "source": {"postgres": {"connection": conn, "replication_type": {"logical_replication": {}}}},
            "sink": {
                "kafka": {
                    "connection": {
                        "brokers": [self.kafka.bootstrap],
                        "config": {"transactions": {"enabled": True}},
                    },
                    "format": {"debezium": {}},
                }
            },
            "limits": {"cdc": {"flush_interval_ms": 10}},
        }
        config = self.work / f"{prefix}.yaml"
        config.write_text(yaml.safe_dump(spec))
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"), SLUICE_STATE_DIR=str(self.work / "state"))
        return subprocess.Popen(
            [sys.executable, "-m", "sluice", "worker", "--config", str(config), "--status-file", os.devnull],
            stdout=(self.work / f"{prefix}.log").open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def start_debezium(self, prefix: str, conn: dict[str, Any]) -> subprocess.Popen[bytes]:
        connector = {
            "name": prefix,
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "tasks.max": "1",
            "database.hostname": str(conn["host"]),
            "database.port": str(conn["port"]),
            "database.user": str(conn["user"]),
            "database.password": str(conn["password"]),
            "database.dbname": str(conn["database"]),
            "topic.prefix": prefix,
            "plugin.name": "pgoutput",
            "slot.name": f"dbz_{prefix.replace('-', '_')}",
            "publication.name": f"dbz_{prefix.replace('-', '_')}",
            "publication.autocreate.mode": "filtered",
            "table.include.list": "public.accounts,public.lat",
            "topic.creation.default.replication.factor": "1",
            "topic.creation.default.partitions": "1",
        }
        return start_connect_standalone(self.work, prefix, self.kafka.bootstrap, connector)

    # ---- one peer ----------------------------------------------------------------------------------------------

    def run(self, name: str) -> Result:
        result = Result(name)
        if name == "debezium" and not (debezium_home() / ".installed").exists():
            result.available, result.reason = False, "run hack/install-debezium.sh"
            return result
        rows = self.args.rows
        prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        dbname = prefix.replace("-", "_")
        progress(f"{name}: loading {rows} rows into {dbname}")
        conn = self.fresh_db(dbname)
        counter = TopicCounter(self.kafka.bootstrap, f"{prefix}.public.accounts", f"{prefix}.public.lat")
        start = time.monotonic()
        proc = self.start_sluice(prefix, conn) if name == "sluice" else self.start_debezium(prefix, conn)
        try:
            with RssSampler(lambda: _tree(proc.pid), "hwm") as rss:
                done = counter.wait_for(rows, self.args.timeout)
                result.snapshot_s = done - start
                progress(f"{name}: snapshot {result.snapshot_s:.2f}s")
                self.wait_streaming(dbname, name)
                t0 = time.monotonic()
                self.pg.psql("UPDATE accounts SET balance = balance + 1;", dbname=dbname)
                result.update_s = counter.wait_for(2 * rows, self.args.timeout) - t0
                progress(f"{name}: update {result.update_s:.2f}s")
                t0 = time.monotonic()
                self.pg.psql(
                    f"INSERT INTO accounts SELECT g, 0, '' FROM generate_series({rows + 1}, {2 * rows}) g;",
                    dbname=dbname,
                )
                result.insert_s = counter.wait_for(3 * rows, self.args.timeout) - t0
                progress(f"{name}: insert {result.insert_s:.2f}s")
                result.latencies_ms = self.latency(dbname, counter)
                rss.sample()
            result.peak_rss_mb = rss.peak_kb / 1024
        except Exception as exc:
            result.available, result.reason = False, f"{type(exc).__name__}: {exc}"
            progress(f"{name}: failed: {result.reason}\n{self.tail(prefix)}")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            counter.close()
            self.drop_slots(dbname)
        return result

    def tail(self, prefix: str) -> str:
        path = self.work / f"{prefix}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:]) if path.exists() else ""

    def wait_streaming(self, dbname: str, name: str) -> None:
        """The peer's slot is active: changes committed from now on are streamed."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = self.pg.psql(
                f"SELECT count(*) FROM pg_replication_slots s JOIN pg_database d ON d.datname = '{dbname}' "
                "WHERE s.database = d.datname AND s.active",
                dbname="postgres",
            )
            if out.strip().splitlines() and out.strip().splitlines()[-1].strip() not in ("", "0"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{name}: no active slot after 120s")

    def latency(self, dbname: str, counter: TopicCounter) -> list[float]:
        import psycopg

        committed: dict[int, float] = {}
        with psycopg.connect(self.pg.dsn(dbname), autocommit=True) as conn:
            for i in range(1, self.args.latency_samples + 1):
                conn.execute("INSERT INTO lat (id) VALUES (%s)", (i,))
                committed[i] = time.monotonic()
                time.sleep(0.05)
        deadline = time.monotonic() + 60
        while len(counter.arrivals) < len(committed) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [(counter.arrivals[i] - t) * 1000 for i, t in committed.items() if i in counter.arrivals]

    def drop_slots(self, dbname: str) -> None:
        with contextlib.suppress(Exception):
            self.pg.psql(
                f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{dbname}' "
                "AND NOT active",
                dbname="postgres",
            )


def render(results: list[Result], args: argparse.Namespace, title: str = "") -> str:
    by = {r.name: r for r in results}

    def rate(r: Result | None, seconds: float | None, rows: int) -> float | None:
        return rows / seconds if r is not None and r.available and seconds else None

    lines = [
        title or f"# PostgreSQL → Kafka: Sluice vs Debezium {DEBEZIUM_VERSION} on Kafka Connect",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {args.rows:,} rows, {os.cpu_count()} CPUs",
        "",
        "| metric | sluice | debezium | sluice/debezium |",
        "|---|---|---|---|",
    ]

    def row(label: str, fn: Any, better_low: bool = False) -> None:
        s, d = fn(by.get("sluice")), fn(by.get("debezium"))
        ratio = "—" if s is None or d is None or not d or not s else f"{(d / s if better_low else s / d):.2f}x"

        def fmt(v: float | None) -> str:
            return "—" if v is None else f"{v:,.1f}"

        lines.append(f"| {label} | {fmt(s)} | {fmt(d)} | {ratio} |")

    row("snapshot rows/s", lambda r: rate(r, r.snapshot_s if r else None, args.rows))
    row("CDC UPDATE rows/s", lambda r: rate(r, r.update_s if r else None, args.rows))
    row("CDC INSERT rows/s", lambda r: rate(r, r.insert_s if r else None, args.rows))
    row("latency p50 ms", lambda r: pct(r.latencies_ms, 50) if r and r.available and r.latencies_ms else None, True)
    row("latency p99 ms", lambda r: pct(r.latencies_ms, 99) if r and r.available and r.latencies_ms else None, True)
    row("peak RSS MB", lambda r: r.peak_rss_mb if r and r.available else None, True)
    for r in results:
        if not r.available:
            lines.append(f"\n{r.name}: not measured ({r.reason})")
    lines.append("\nRatios: higher is better for Sluice (for latency and RSS, Debezium's value / Sluice's).")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=500_000, help="rows in the table; also the UPDATE and INSERT sizes")
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of: sluice, debezium")
    p.add_argument("--latency-samples", type=int, default=200)
    p.add_argument("--fast", action="store_true", help="PostgreSQL with fsync and synchronous_commit off")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds one phase may take")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for ok, why in (postgres_available(), kafka_available()):
        if not ok:
            print(f"error: {why}", file=sys.stderr)
            return 2
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="sluice-bench-kafka-"))
    # Not fast by default: with synchronous_commit off, WAL reaches the walsender only when the WAL writer flushes
    # (every wal_writer_delay, 200 ms), which would dominate both peers' latency.
    pg = PostgresInstance(name="bench-pg", fast=args.fast)
    kafka = KafkaInstance(name="bench-kafka", heap="512m")
    try:
        pg.start()
        kafka.start()
        bench = Bench(args, pg, kafka, work)
        results = [bench.run(name) for name in args.peers.split(",")]
    finally:
        kafka.destroy()
        pg.destroy()
    text = render(results, args)
    print(text)
    out = REPO / "bench" / "results" / f"pg_to_kafka-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
