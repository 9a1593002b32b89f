"""MySQL / MariaDB as a source, in one run: Sluice vs pgloader into PostgreSQL, Sluice vs Debezium into Kafka.

Same machine, same servers, one after the other (never two peers at once): a MariaDB 10.11 or MySQL 8.0 source
(``--flavor``), a PostgreSQL sink and a Kafka broker, throw-away instances. A table ``items`` of ``--rows`` rows
(bigint key, int, varchar, decimal, datetime, text) and an empty ``lat`` table are loaded into database ``bench``,
then copied into one database per Kafka peer (same data, each peer reads only its own database).

PostgreSQL part (database ``bench``):

- ``pgloader`` (Debian package, its defaults: 4 workers, tables created by pgloader), timed from start to exit,
  row count checked;
- ``sluice worker`` (default snapshot parallelism, ``limits.cdc.flush_interval_ms`` = ``--flush-ms``), timed from
  start until its status says ``realtime`` (snapshot committed, start-up included); then one UPDATE of every row
  and one INSERT of ``--rows`` rows, each one transaction, timed from COMMIT until the sink holds all of it (a
  sentinel row committed right after is polled cheaply, then the whole change is counted); then single-row commits
  one every ``--latency-interval-ms``, COMMIT → row visible in the sink (p50/p99); the worker's peak RSS (VmHWM of
  its process tree). pgloader has no CDC.

Kafka part (``bench/pg_to_kafka.py``'s consumer and Kafka Connect launcher), per peer from its own start:

- ``sluice worker`` into Kafka, Debezium format, Kafka transactions on (exactly once);
- Debezium's MySQL connector (``hack/install-debezium.sh``) on Kafka Connect standalone, ``JsonConverter`` with
  schemas, ``snapshot.mode=initial``, schema history in a Kafka topic, a server id of its own,
  ``poll.interval.ms`` = ``--flush-ms`` (its default of 500 ms would dominate its latency), and the JVM options
  Kafka's ``bin/connect-standalone.sh`` gives it (``-Xms256M -Xmx2G``, G1 with a 20 ms pause target);

measured by a read_committed consumer: snapshot rows/s until every row is on the topic, one UPDATE of every row
and one INSERT of ``--rows`` rows (COMMIT → all events on the topic), single-row commits (COMMIT → event consumed,
p50/p99), peak RSS of the process tree.

pgloader 3.6.7 cannot read MySQL 8.0.15 (its driver fails on collation 76), and Debezium's MySQL connector is for
MySQL (MariaDB has a connector of its own, not installed here): a peer that cannot run says why in its column and
the others still print. Targets (issue 11): Sluice's commit → visible p99 ≤ 50 ms, worker peak RSS ≤ 128 MB.

    bench/mysql_to_pg [--flavor mariadb|mysql] [--rows 300000] [--no-pgloader] [--no-pg] [--no-kafka]
                      [--peers sluice,debezium] [--no-cdc] [--bytecode]

Results go to stdout and ``bench/results/mysql_to_pg-<timestamp>.md``; progress lines to stderr. Nothing here
asserts a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from pg_to_kafka import (  # noqa: E402
    DEBEZIUM_VERSION,
    Result,
    TopicCounter,
    debezium_home,
    progress,
    render,
    start_connect_standalone,
)
from pg_to_pg import RssSampler, _tree, pct  # noqa: E402

from sluice.devstack.kafka import KafkaInstance, kafka_available  # noqa: E402
from sluice.devstack.mysql import MySqlInstance  # noqa: E402
from sluice.devstack.postgres import PostgresInstance  # noqa: E402

KAFKA_PEERS = ("sluice", "debezium")
#: what Kafka's bin/connect-standalone.sh and kafka-run-class.sh give the JVM unless told otherwise
CONNECT_SCRIPT_JVM_OPTS = (
    "-Xms256M",
    "-Xmx2G",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
#: lines of Kafka Connect's log that mean the connector will not deliver (it keeps the process running)
CONNECT_FAILED = re.compile(r"unrecoverable exception|Task threw an uncaught|Failed to (start|create) (task|connector)")


class PeerFailedError(RuntimeError):
    pass


# ---- data -------------------------------------------------------------------------------------------------------


def load(src: MySqlInstance, rows: int) -> None:
    src.execute("CREATE DATABASE bench")
    src.execute(
        "CREATE TABLE bench.items (id bigint PRIMARY KEY, qty int NOT NULL, name varchar(64), price decimal(12,2), "
        "created datetime(6), note text)"
    )
    src.execute("CREATE TABLE bench.lat (id bigint PRIMARY KEY, v int)")  # single-row commits (latency, sentinels)
    conn = src.connect("bench")
    with conn.cursor() as cur:
        seed = min(rows, 1000)
        cur.executemany(
            "INSERT INTO items VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (i, i % 97, f"name-{i}", i * 1.25, "2024-01-02 03:04:05.123456", "n" * (i % 50))
                for i in range(1, seed + 1)
            ],
        )
        have = seed
        while have < rows:
            step = min(have, rows - have)
            cur.execute(
                "INSERT INTO items SELECT id + %s, qty, CONCAT('name-', id + %s), price, created, note FROM items "
                "WHERE id <= %s",
                (have, have, step),
            )
            have += step
    conn.close()


def clone(src: MySqlInstance, db: str) -> None:
    """A database holding the same ``items`` rows and an empty ``lat``, for one Kafka peer."""
    src.execute(f"CREATE DATABASE {db}")
    src.execute(f"CREATE TABLE {db}.items LIKE bench.items")
    src.execute(f"INSERT INTO {db}.items SELECT * FROM bench.items")
    src.execute(f"CREATE TABLE {db}.lat LIKE bench.lat")


def binlog_readers(src: MySqlInstance) -> set[int]:
    """Connection ids of the server's binlog dump threads (a lingering one of a stopped peer included: the server
    notices a gone reader only when it next writes to it)."""
    rows = src.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'")
    return {int(r[0]) for r in rows}


def wait_new_binlog_reader(
    src: MySqlInstance, before: set[int], alive: Callable[[], None], timeout: float = 120
) -> None:
    """Until a binlog reader that was not there at the peer's start is connected: the peer streams."""
    deadline = time.monotonic() + timeout
    while not binlog_readers(src) - before:
        alive()
        if time.monotonic() > deadline:
            raise PeerFailedError(f"no binlog reader connected within {timeout:.0f}s")
        time.sleep(0.05)


# ---- pgloader ---------------------------------------------------------------------------------------------------


def run_pgloader(src: MySqlInstance, sink: PostgresInstance, db: str, rows: int) -> float:
    user = sink.superuser
    if not src.is_mariadb:
        # pgloader's MySQL driver speaks mysql_native_password only.
        src.execute("CREATE USER IF NOT EXISTS 'pgl'@'%' IDENTIFIED WITH mysql_native_password BY 'pgl-pw'")
        src.execute("GRANT ALL ON *.* TO 'pgl'@'%'")
        who = "pgl:pgl-pw"
    else:
        who = f"{src.admin_user}:{src.admin_password}"
    argv = [
        "pgloader",
        "--no-ssl-cert-verification",
        f"mysql://{who}@{src.host}:{src.port}/bench",
        f"postgresql://{user.name}:{user.password}@{sink.host}:{sink.port}/{db}",
    ]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise PeerFailedError(f"pgloader failed ({done.returncode}): {' / '.join(tail)[-400:]}")
    with sink.connect(db) as pg:
        row = pg.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'items'"
        ).fetchone()
        copied = pg.execute(f'SELECT count(*) FROM "{row[0]}".items').fetchone()[0] if row else 0
    if copied != rows:
        raise PeerFailedError(f"pgloader exited 0 but copied {copied} of {rows} rows\n{done.stdout[-1500:]}")
    return took


def bytecode_env(work: Path) -> dict[str, str]:
    """Environment for a worker that starts with its bytecode compiled, as an installed package does (pip compiles
    on install): a private ``PYTHONPYCACHEPREFIX`` warmed by one untimed import of the worker's modules. Without it,
    where ``PYTHONDONTWRITEBYTECODE`` is set, every start compiles every module of Sluice from source."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
    modules = (
        "sluice.worker.cli, sluice.worker.engine, sluice.worker.fastpath.mysql_pg, sluice.worker.registry, "
        "sluice.worker.sinks.kafka"
    )
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=env, check=True)
    return env


# ---- the run ----------------------------------------------------------------------------------------------------


@dataclass
class PgResult:
    """Sluice → PostgreSQL (and pgloader's snapshot beside it)."""

    snapshot_s: float | None = None
    update_s: float | None = None
    insert_s: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    reason: str = ""
    pgloader_s: float | None = None
    pgloader_reason: str = ""


class Bench:
    def __init__(self, args: argparse.Namespace, src: MySqlInstance, work: Path) -> None:
        self.args, self.src, self.work = args, src, work
        self.env = bytecode_env(work) if args.bytecode else dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), self.env.get("PYTHONPATH", "")) if p)
        self.env["SLUICE_STATE_DIR"] = str(work / "state")
        self.profilers: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}

    def start_sluice(self, name: str, spec: dict[str, Any]) -> tuple[subprocess.Popen[bytes], Path]:
        config, status = self.work / f"{name}.yaml", self.work / f"{name}.status.jsonl"
        config.write_text(yaml.safe_dump(spec, sort_keys=False))
        argv = [sys.executable, "-m", "sluice", "worker", "--config", str(config), "--status-file", str(status)]
        with (self.work / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if self.args.profile:
            # Sampled without pausing the worker (--nonblocking); ends, and writes its file, when the worker exits.
            out = self.work / f"{name}.pyspy.txt"
            argv = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(proc.pid), "--subprocesses"]
            argv += ["--nonblocking", "--rate", "100", "--format", "raw", "--output", str(out)]
            self.profilers[proc.pid] = (
                name,
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT),
            )
        return proc, status

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.work / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def alive_check(self, name: str, proc: subprocess.Popen[bytes], connect: bool = False) -> Callable[[], None]:
        log = self.work / f"{name}.log"

        def alive() -> None:
            if proc.poll() is not None:
                raise PeerFailedError(f"{name} exited ({proc.returncode}):\n{self.tail(name)}")
            text = log.read_text(errors="replace") if connect else ""
            if found := CONNECT_FAILED.search(text):
                why = re.search(r"DebeziumException: (.*)", text)
                first = why.group(1) if why else text[found.start() :].splitlines()[0]
                raise PeerFailedError(f"{name}: the connector failed: {first}\n{self.tail(name, 25)}")

        return alive

    def stop(self, proc: subprocess.Popen[bytes], name: str) -> None:
        t0 = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait(10)
        progress(f"{name}: stopped (SIGTERM → exit {proc.returncode}) in {time.monotonic() - t0:.1f}s")
        if proc.pid in self.profilers:
            label, spy = self.profilers.pop(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(60)
            self.profile_summary(label)

    def profile_summary(self, name: str, top: int = 15) -> None:
        """The worker's hottest functions by own time (leaf frames of py-spy's samples), on stderr; the collapsed
        stacks go to bench/results/ (flamegraph.pl or speedscope read them)."""
        raw = self.work / f"{name}.pyspy.txt"
        if not raw.exists():
            progress(f"{name}: no profile written")
            return
        own: dict[str, int] = {}
        total = 0
        for line in raw.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            leaf = stack.rsplit(";", 1)[-1]
            if leaf.startswith("process "):  # --subprocesses puts the process first: no Python frame below it
                leaf = "(no Python frame: native code)"
            leaf = re.sub(r":\d+\)$", ")", leaf)  # by function, not by line
            own[leaf] = own.get(leaf, 0) + int(count)
            total += int(count)
        keep = REPO / "bench" / "results" / f"mysql_to_pg-{name}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.pyspy.txt"
        keep.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw, keep)
        lines = [f"{name}: py-spy, {total} samples (collapsed stacks: {keep}); own time:"]
        for leaf, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"  {100 * n / max(total, 1):5.1f}%  {leaf}")
        progress("\n".join(lines))

    def wait(self, pred: Callable[[], bool], what: str, alive: Callable[[], None], poll: float = 0.01) -> float:
        deadline = time.monotonic() + self.args.timeout
        while not pred():
            alive()
            if time.monotonic() > deadline:
                raise PeerFailedError(f"{what} took over {self.args.timeout:.0f}s")
            time.sleep(poll)
        return time.monotonic()

    def bulk_sql(self, db: str, kind: str) -> str:
        if kind == "update":
            return f"UPDATE {db}.items SET qty = -1"  # every row changes (qty >= 0): one row event each
        rows = self.args.rows
        return (
            f"INSERT INTO {db}.items SELECT id + {rows}, qty, CONCAT('name-', id + {rows}), price, created, note "
            f"FROM {db}.items WHERE id <= {rows}"
        )

    # -- Sluice → PostgreSQL

    def run_pg(self, sink: PostgresInstance) -> PgResult:
        out = PgResult()
        rows = self.args.rows
        for db in ("pgloader", "sluice"):
            with sink.connect("postgres") as pg:
                pg.execute(f"CREATE DATABASE {db}")
        if self.args.no_pgloader:
            out.pgloader_reason = "skipped (--no-pgloader)"
        elif shutil.which("pgloader") is None:
            out.pgloader_reason = "pgloader missing (hack/install-system-deps.sh)"
        else:
            progress("pgloader snapshot")
            try:
                out.pgloader_s = run_pgloader(self.src, sink, "pgloader", rows)
                progress(f"pgloader: {rows:,} rows in {out.pgloader_s:.2f}s")
            except PeerFailedError as exc:
                out.pgloader_reason = str(exc).splitlines()[0]
                progress(f"pgloader: {exc}")
        if self.args.no_sluice_pg:
            out.reason = "skipped (--no-pg)"
            return out
        spec = {
            "id": "bench-mysql-to-pg",
            "source": {"mysql": {"connection": self.src.connection_spec("bench")}},
            "sink": {"postgres": {"connection": sink.connection_spec("sluice"), "target_schema": "bench"}},
            "limits": {"cdc": {"flush_interval_ms": self.args.flush_ms}},
        }
        progress("sluice → PostgreSQL")
        readers = binlog_readers(self.src)
        started = time.monotonic()
        proc, status = self.start_sluice("sluice-pg", spec)
        alive = self.alive_check("sluice-pg", proc)
        try:
            with RssSampler(lambda: _tree(proc.pid), "hwm") as rss:

                def realtime() -> bool:
                    try:
                        lines = status.read_text().splitlines()
                    except FileNotFoundError:
                        return False
                    return any(json.loads(ln).get("state") == "realtime" for ln in lines if ln.startswith("{"))

                out.snapshot_s = self.wait(realtime, "snapshot", alive) - started
                progress(f"sluice → pg: snapshot of {rows:,} rows in {out.snapshot_s:.2f}s")
                if not self.args.no_cdc:
                    wait_new_binlog_reader(self.src, readers, alive)
                    with sink.connect("sluice") as pg:
                        out.update_s = self.pg_bulk(pg, "update", -1, rows, alive)
                        progress(f"sluice → pg: UPDATE of {rows:,} rows applied in {out.update_s:.2f}s")
                        out.insert_s = self.pg_bulk(pg, "insert", -2, 2 * rows, alive)
                        progress(f"sluice → pg: INSERT of {rows:,} rows applied in {out.insert_s:.2f}s")
                        out.latencies_ms = self.pg_latency(pg, alive)
                        progress(
                            f"sluice → pg: latency p50 {pct(out.latencies_ms, 50):.1f} ms, "
                            f"p99 {pct(out.latencies_ms, 99):.1f} ms"
                        )
                rss.sample()
            out.peak_rss_mb = rss.peak_kb / 1024
        except PeerFailedError as exc:
            out.reason = str(exc).splitlines()[0]
            progress(f"sluice → pg failed: {exc}")
        finally:
            self.stop(proc, "sluice → pg")
        return out

    def pg_bulk(self, pg: Any, kind: str, sentinel: int, total: int, alive: Callable[[], None]) -> float:
        """One bulk change of every ``items`` row, then a sentinel ``lat`` row; seconds from the bulk COMMIT until
        the sink shows the sentinel and the whole change (``total`` matching rows)."""
        conn = self.src.connect("bench")
        with conn.cursor() as cur:
            cur.execute(self.bulk_sql("bench", kind))
            committed = time.monotonic()
            cur.execute("INSERT INTO lat (id) VALUES (%s)", (sentinel,))
        conn.close()
        seen = self.wait(
            lambda: (
                pg.execute("SELECT 1 FROM bench.lat WHERE id = %s", (sentinel,), prepare=True).fetchone() is not None
            ),
            f"{kind} sentinel",
            alive,
            0.002,
        )
        verify = (
            "SELECT count(*) FROM bench.items WHERE qty = -1"
            if kind == "update"
            else "SELECT count(*) FROM bench.items"
        )
        while pg.execute(verify).fetchone()[0] != total:
            alive()
            if time.monotonic() > committed + self.args.timeout:
                raise PeerFailedError(f"{kind}: the sentinel arrived but not all {total:,} rows")
            time.sleep(0.05)
            seen = time.monotonic()
        return seen - committed

    def pg_latency(self, pg: Any, alive: Callable[[], None]) -> list[float]:
        out: list[float] = []
        interval = self.args.latency_interval_ms / 1000
        conn = self.src.connect("bench")
        try:
            with conn.cursor() as cur:
                for i in range(1, self.args.latency_samples + 1):
                    alive()
                    cur.execute("INSERT INTO lat (id) VALUES (%s)", (i,))
                    committed = time.monotonic()
                    deadline = committed + 10
                    while pg.execute("SELECT 1 FROM bench.lat WHERE id = %s", (i,), prepare=True).fetchone() is None:
                        if time.monotonic() > deadline:
                            raise PeerFailedError("a single-row commit took over 10s to appear")
                        time.sleep(0.0005)
                    out.append((time.monotonic() - committed) * 1000)
                    time.sleep(max(0.0, interval - (time.monotonic() - committed)))
        finally:
            conn.close()
        return out

    # -- MySQL → Kafka

    def kafka_sluice(self, kafka: KafkaInstance, prefix: str, db: str) -> subprocess.Popen[bytes]:
        spec = {
            "id": prefix,
            "source": {"mysql": {"connection": self.src.connection_spec(db)}},
            "sink": {
                "kafka": {
                    "connection": {"brokers": [kafka.bootstrap], "config": {"transactions": {"enabled": True}}},
                    "format": {"debezium": {}},
                }
            },
            "limits": {"cdc": {"flush_interval_ms": self.args.flush_ms}},
        }
        return self.start_sluice(prefix, spec)[0]

    def kafka_debezium(self, kafka: KafkaInstance, prefix: str, db: str) -> subprocess.Popen[bytes]:
        taken = {self.src.server_id}
        server_id = next(i for i in iter(lambda: random.randint(10_000, 2**31 - 1), None) if i not in taken)  # noqa: S311
        connector = {
            "name": prefix,
            "connector.class": "io.debezium.connector.mysql.MySqlConnector",
            "tasks.max": "1",
            "database.hostname": self.src.host,
            "database.port": str(self.src.port),
            "database.user": self.src.admin_user,
            "database.password": self.src.admin_password,
            "database.server.id": str(server_id),
            "database.ssl.mode": "disabled",  # as sluice's connection (ssl_mode: disable)
            "database.include.list": db,
            "table.include.list": f"{db}.items,{db}.lat",
            "topic.prefix": prefix,
            "snapshot.mode": "initial",
            "schema.history.internal.kafka.bootstrap.servers": kafka.bootstrap,
            "schema.history.internal.kafka.topic": f"{prefix}.schema-history",
            "poll.interval.ms": str(self.args.flush_ms),
            "topic.creation.default.replication.factor": "1",
            "topic.creation.default.partitions": "1",
        }
        return start_connect_standalone(self.work, prefix, kafka.bootstrap, connector, CONNECT_SCRIPT_JVM_OPTS)

    def run_kafka(self, kafka: KafkaInstance, name: str) -> Result:
        result = Result(name)
        if name == "debezium" and not any((debezium_home() / "libs").glob("debezium-connector-mysql-*.jar")):
            result.available, result.reason = False, "no debezium-connector-mysql jar: run hack/install-debezium.sh"
            return result
        rows = self.args.rows
        db = f"k_{name}"
        prefix = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        counter = TopicCounter(kafka.bootstrap, f"{prefix}.{db}.items", f"{prefix}.{db}.lat")
        readers = binlog_readers(self.src)
        progress(f"{name} → kafka: starting")
        start = time.monotonic()
        proc = self.kafka_sluice(kafka, prefix, db) if name == "sluice" else self.kafka_debezium(kafka, prefix, db)
        alive = self.alive_check(prefix, proc, connect=name == "debezium")
        try:
            with RssSampler(lambda: _tree(proc.pid), "hwm") as rss:
                result.snapshot_s = self.wait(lambda: counter.count >= rows, "snapshot", alive) - start
                progress(f"{name} → kafka: snapshot {result.snapshot_s:.2f}s")
                if not self.args.no_cdc:
                    wait_new_binlog_reader(self.src, readers, alive)
                    time.sleep(0.5)
                    result.update_s = self.kafka_bulk(db, "update", 2 * rows, counter, alive)
                    progress(f"{name} → kafka: UPDATE of {rows:,} rows {result.update_s:.2f}s")
                    result.insert_s = self.kafka_bulk(db, "insert", 3 * rows, counter, alive)
                    progress(f"{name} → kafka: INSERT of {rows:,} rows {result.insert_s:.2f}s")
                    result.latencies_ms = self.kafka_latency(db, counter, alive)
                    progress(
                        f"{name} → kafka: latency p50 {pct(result.latencies_ms, 50):.1f} ms, "
                        f"p99 {pct(result.latencies_ms, 99):.1f} ms"
                    )
                rss.sample()
            result.peak_rss_mb = rss.peak_kb / 1024
        except PeerFailedError as exc:
            result.available, result.reason = False, str(exc).splitlines()[0][:300]
            progress(f"{name} → kafka failed: {exc}")
        finally:
            self.stop(proc, f"{name} → kafka")
            counter.close()
        return result

    def kafka_bulk(self, db: str, kind: str, total: int, counter: TopicCounter, alive: Callable[[], None]) -> float:
        """Seconds from the COMMIT of one bulk change until the topic holds ``total`` records."""
        self.src.execute(self.bulk_sql(db, kind))  # autocommit: returns once committed
        t0 = time.monotonic()
        return self.wait(lambda: counter.count >= total, kind, alive) - t0

    def kafka_latency(self, db: str, counter: TopicCounter, alive: Callable[[], None]) -> list[float]:
        committed: dict[int, float] = {}
        interval = self.args.latency_interval_ms / 1000
        conn = self.src.connect(db)
        try:
            with conn.cursor() as cur:
                for i in range(1, self.args.latency_samples + 1):
                    cur.execute("INSERT INTO lat (id) VALUES (%s)", (i,))
                    committed[i] = time.monotonic()
                    time.sleep(interval)
        finally:
            conn.close()
        deadline = time.monotonic() + 60
        while len(counter.arrivals) < len(committed) and time.monotonic() < deadline:
            alive()
            time.sleep(0.05)
        return [(counter.arrivals[i] - t) * 1000 for i, t in committed.items() if i in counter.arrivals]


# ---- report -----------------------------------------------------------------------------------------------------


def render_pg(res: PgResult, args: argparse.Namespace) -> str:
    n = args.rows

    def rate(seconds: float | None) -> str:
        return "—" if not seconds else f"{n / seconds:,.0f} ({seconds:.2f} s)"

    pgl = rate(res.pgloader_s) if res.pgloader_s else f"— ({' '.join(res.pgloader_reason.split())[:160]})"
    ratio = f"{res.pgloader_s / res.snapshot_s:.2f}x" if res.pgloader_s and res.snapshot_s else "—"
    lines = [
        "## MySQL → PostgreSQL: Sluice vs pgloader",
        "",
        "| measure | sluice | pgloader | sluice / pgloader |",
        "|---|---|---|---|",
        f"| snapshot, rows/s | {rate(res.snapshot_s)} | {pgl} | {ratio} |",
    ]
    if not args.no_cdc:
        lat = res.latencies_ms
        p50, p99 = (f"{pct(lat, 50):.1f}", f"{pct(lat, 99):.1f}") if lat else ("—", "—")
        lines += [
            f"| CDC, one {n:,}-row UPDATE, rows/s | {rate(res.update_s)} | — | — |",
            f"| CDC, one {n:,}-row INSERT, rows/s | {rate(res.insert_s)} | — | — |",
            f"| commit → visible p50 ms ({len(lat)} single-row commits) | {p50} | — | — |",
            f"| commit → visible p99 ms (target ≤ 50) | {p99} | — | — |",
        ]
    rss = "—" if res.peak_rss_mb is None else f"{res.peak_rss_mb:.0f}"
    lines.append(f"| worker peak RSS MB (target ≤ 128) | {rss} | — | — |")
    if res.reason:
        lines.append(f"\nsluice: not measured ({res.reason})")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flavor", choices=["mariadb", "mysql"], default="mariadb")
    ap.add_argument("--rows", type=int, default=300_000, help="rows of the table; also the UPDATE and INSERT sizes")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one phase may take")
    ap.add_argument("--no-cdc", action="store_true", help="snapshots only (no UPDATE, INSERT or latency)")
    ap.add_argument("--no-pgloader", action="store_true", help="skip pgloader")
    ap.add_argument("--no-pg", dest="no_sluice_pg", action="store_true", help="skip Sluice → PostgreSQL")
    ap.add_argument("--no-kafka", action="store_true", help="skip the Kafka part (no broker started)")
    ap.add_argument("--peers", default=",".join(KAFKA_PEERS), help="Kafka part: a subset of sluice,debezium")
    ap.add_argument(
        "--profile", action="store_true", help="sample each sluice worker with py-spy; print its hottest functions"
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory (peer logs and configs)")
    ap.add_argument("--latency-samples", type=int, default=200)
    ap.add_argument("--latency-interval-ms", type=int, default=50, help="time between single-row commits")
    ap.add_argument(
        "--flush-ms", type=int, default=10, help="sluice's limits.cdc.flush_interval_ms and Debezium's poll.interval.ms"
    )
    ap.add_argument(
        "--bytecode",
        action="store_true",
        help="start the worker with its modules' bytecode compiled (as installed), not compiled at every start",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    if unknown := set(peers) - set(KAFKA_PEERS):
        print(f"error: unknown peers {sorted(unknown)}", file=sys.stderr)
        return 2
    if not args.no_kafka:
        ok, why = kafka_available()
        if not ok:
            print(f"error: {why} (or pass --no-kafka)", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-mysql-"))
    # pgloader's MySQL driver cannot follow MySQL 8's auth-switch from caching_sha2_password: offer the old plugin.
    options = {"default-authentication-plugin": "mysql_native_password"} if args.flavor == "mysql" else {}
    src = MySqlInstance(flavor=args.flavor, name="bench", options=options)
    sink = PostgresInstance(name="bench-sink", fast=True)
    kafka = KafkaInstance(name="bench-kafka", heap="512m")
    pg_part = not (args.no_sluice_pg and args.no_pgloader)
    sections: list[str] = []
    try:
        progress(f"starting {args.flavor}")
        src.start()
        progress(f"loading {args.rows:,} rows")
        load(src, args.rows)
        if not args.no_kafka:
            for name in peers:
                clone(src, f"k_{name}")
        version = src.execute("SELECT VERSION()")[0][0]
        bench = Bench(args, src, work)
        if pg_part:
            progress("starting PostgreSQL")
            sink.start()
            sections.append(render_pg(bench.run_pg(sink), args))
            sink.destroy()
        if not args.no_kafka and peers:
            progress("starting Kafka")
            kafka.start()
            results = [bench.run_kafka(kafka, name) for name in peers]
            title = f"## MySQL → Kafka: Sluice vs Debezium {DEBEZIUM_VERSION} MySQL connector on Kafka Connect"
            sections.append(render(results, args, title))
    finally:
        kafka.destroy()
        sink.destroy()
        src.destroy()
        if args.keep:
            progress(f"kept the peers' logs and configs in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    start = "bytecode cached" if args.bytecode else "bytecode compiled at start"
    load_avg = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    head = (
        f"# MySQL source benchmark ({version}, {args.rows:,} rows)\n\n"
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average at the end {load_avg}, "
        f"sluice {start}, flush/poll interval {args.flush_ms} ms, "
        f"latency: {args.latency_samples} commits, one every {args.latency_interval_ms} ms\n"
    )
    text = "\n".join([head, *sections])
    print(text)
    out = REPO / "bench" / "results" / f"mysql_to_pg-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
