"""PostgreSQL → PostgreSQL, side by side: native logical replication, pgcopydb and sluice, in one run.

Why one run: absolute numbers depend on the machine; only ratios between peers measured on the same servers, the
same data and the same settings, minutes apart, mean anything. Every peer gets a fresh source database copied from
one pgbench template (so the physical layout is identical) and a fresh sink database; peers run one after another,
never concurrently.

Measured per peer:
- snapshot: seconds from start until the sink holds every row (native: all tables in state 'r'; pgcopydb: the
  clone command returns; sluice: the sink's row counts match the source), and rows/s;
- CDC bulk apply: one 500k-row UPDATE and one 500k-row INSERT committed on the source, time from COMMIT until the
  sink holds all of it (a sentinel row committed right after is polled cheaply, then the full change is verified);
- latency: single-row commits at a low rate, time from COMMIT returning until the sink shows the row (p50/p99);
- peak RSS of the replication worker (sluice: the worker process tree's VmHWM; native: the largest private RSS of
  its apply/tablesync backends, shared buffers excluded; pgcopydb: its process tree's VmHWM).

Run ``bench/pg_to_pg --help``. Results go to stdout and ``bench/results/<timestamp>.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sluice.devstack.postgres import PostgresInstance, postgres_available  # noqa: E402

TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers")
PEERS = ("native", "pgcopydb", "sluice")
T_START = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - T_START:7.1f}s] {msg}", file=sys.stderr, flush=True)


class PeerUnavailableError(Exception):
    """This peer cannot run here (or failed); its column says why, the others still print."""


@dataclass
class PeerResult:
    name: str
    available: bool = True
    reason: str = ""
    snapshot_s: float | None = None
    snapshot_rows: int = 0
    update_s: float | None = None
    insert_s: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    rss_note: str = ""
    notes: list[str] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.available = False
        self.reason = reason


# ---- process memory -------------------------------------------------------------------------------------------------


def _status_kb(pid: int, keys: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    wanted = set(keys)
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in wanted:
            out[name] = int(rest.split()[0])
    return out


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[-1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [pid], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time the processes have used so far (what a run costs, however loaded the machine is)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


class RssSampler:
    """Samples memory of a changing set of processes every 100 ms in a thread.

    ``mode="hwm"``: sum over the set of each process's VmHWM (the kernel's own peak, so short spikes count).
    ``mode="private"``: the largest VmRSS minus RssShmem of any one process (PostgreSQL backends map shared buffers,
    which are the server's memory, not the apply worker's).
    """

    def __init__(self, pids: Callable[[], list[int]], mode: str) -> None:
        self._pids = pids
        self._mode = mode
        self._stop = threading.Event()
        self._hwm: dict[int, int] = {}
        self.peak_kb = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.sample()
            self._stop.wait(0.1)

    def sample(self) -> None:
        pids = self._pids()
        if self._mode == "hwm":
            for pid in pids:
                kb = _status_kb(pid, ["VmHWM"]).get("VmHWM", 0)
                self._hwm[pid] = max(self._hwm.get(pid, 0), kb)
            self.peak_kb = max(self.peak_kb, sum(self._hwm.values()))
        else:
            for pid in pids:
                st = _status_kb(pid, ["VmRSS", "RssShmem"])
                self.peak_kb = max(self.peak_kb, st.get("VmRSS", 0) - st.get("RssShmem", 0))


# ---- the run ----------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scale: int = args.scale
        self.accounts = 100_000 * self.scale
        self.snapshot_rows = self.accounts + 10 * self.scale + self.scale
        self.work = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
        self.work.chmod(0o755)  # the servers run as the 'postgres' OS user when we are root
        settings: dict[str, str | int] = {"max_wal_size": "4GB", "checkpoint_timeout": "30min"}
        self.source = PostgresInstance(name="bench-source", fast=args.fast, settings=settings)
        self.sink = PostgresInstance(name="bench-sink", fast=args.fast, settings=settings)
        self.marker = 1000

    # -- helpers

    def next_marker(self) -> int:
        self.marker += 1
        return self.marker

    def pg_tool(self, tool: str) -> str:
        assert self.source.bin_dir is not None
        return str(self.source.bin_dir / tool)

    def run_tool(self, argv: list[str], env: dict[str, str], what: str, timeout: float = 1800) -> None:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")

    def fresh_pair(self, peer: str) -> tuple[str, str]:
        """A source database copied from the template and an empty sink database, both named for the peer."""
        src, dst = f"src_{peer}", f"dst_{peer}"
        self.source.drop_database(src)
        self.sink.drop_database(dst)
        self.source.execute(f'CREATE DATABASE "{src}" TEMPLATE bench_tpl STRATEGY FILE_COPY')
        self.sink.create_database(dst)
        self.source.execute("CHECKPOINT")
        self.sink.execute("CHECKPOINT")
        return src, dst

    def sink_counts_match(self, dst: str) -> bool:
        try:
            counts = self.sink.execute(
                "SELECT (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM pgbench_branches), "
                "(SELECT count(*) FROM pgbench_tellers)",
                dbname=dst,
            )[0]
        except Exception:
            return False  # tables not created yet
        return tuple(counts) == (self.accounts, self.scale, 10 * self.scale)

    # -- set-up

    def setup(self) -> None:
        progress(f"starting two PostgreSQL servers in {self.work} (fast={self.args.fast})")
        self.source.base_dir = self.work / "source"
        self.sink.base_dir = self.work / "sink"
        self.source.start()
        self.sink.start()
        progress(f"source on port {self.source.port}, sink on port {self.sink.port}")
        self.source.create_database("bench_tpl")
        progress(f"pgbench -i -s {self.scale} ({self.accounts:,} accounts)")
        started = time.monotonic()
        self.run_tool(
            [self.pg_tool("pgbench"), "-i", "-s", str(self.scale), "-q", "bench_tpl"],
            self.source.client_env(),
            "pgbench -i",
        )
        # History is empty after -i and has no key; leaving it out keeps every peer on the same three tables.
        self.source.execute("DROP TABLE pgbench_history", dbname="bench_tpl")
        self.source.execute("VACUUM ANALYZE", dbname="bench_tpl")
        progress(f"pgbench -i done in {time.monotonic() - started:.1f}s")

    def teardown(self) -> None:
        if self.args.keep:
            progress(f"keeping servers and data in {self.work}")
            return
        self.source.destroy()
        self.sink.destroy()
        shutil.rmtree(self.work, ignore_errors=True)

    # -- phases shared by the streaming peers

    def wait_sentinel(self, dst: str, bid: int, marker: int, timeout: float) -> None:
        with self.sink.connect(dst) as conn:
            deadline = time.monotonic() + timeout
            while True:
                row = conn.execute("SELECT bbalance FROM pgbench_branches WHERE bid = %s", (bid,)).fetchone()
                if row is not None and row[0] == marker:
                    return
                if time.monotonic() > deadline:
                    raise PeerUnavailableError(f"sink did not show the change within {timeout:.0f}s")
                time.sleep(0.002)

    def bulk(self, src: str, dst: str, kind: str, rows: int, alive: Callable[[], None]) -> float:
        """Commit one big UPDATE or INSERT plus a sentinel; seconds from the big COMMIT until the sink has it all."""
        marker = self.next_marker()
        if kind == "update":
            change = "UPDATE pgbench_accounts SET abalance = %s WHERE aid <= %s"
            params: tuple[int, ...] = (marker, rows)
            verify = "SELECT count(*) FROM pgbench_accounts WHERE aid <= %s AND abalance = %s"
            verify_params: tuple[int, ...] = (rows, marker)
        else:
            first = self.accounts + 1  # every peer starts from a fresh copy of the template
            change = (
                "INSERT INTO pgbench_accounts (aid, bid, abalance, filler) "
                "SELECT g, 1, %s, repeat('x', 84) FROM generate_series(%s::int, %s::int) g"
            )
            params = (marker, first, first + rows - 1)
            verify = "SELECT count(*) FROM pgbench_accounts WHERE aid >= %s AND abalance = %s"
            verify_params = (first, marker)
        with self.source.connect(src, autocommit=True) as conn:
            with conn.transaction():
                conn.execute(change, params)
            committed = time.monotonic()
            # Sentinel in its own transaction: it commits after the big one, so an in-order apply shows it last.
            conn.execute("UPDATE pgbench_branches SET bbalance = %s WHERE bid = 1", (marker,))
        deadline = committed + self.args.cdc_timeout
        while True:
            alive()
            try:
                self.wait_sentinel(dst, 1, marker, timeout=max(0.1, min(1.0, deadline - time.monotonic())))
                break
            except PeerUnavailableError:
                if time.monotonic() > deadline:
                    raise PeerUnavailableError(
                        f"{kind} of {rows:,} rows not applied within {self.args.cdc_timeout}s"
                    ) from None
        seen = time.monotonic()
        # Verify the whole change, not only the sentinel (an apply that is not in commit order must not look fast).
        while self.sink.execute(verify, verify_params, dbname=dst)[0][0] != rows:
            alive()
            if time.monotonic() > deadline:
                raise PeerUnavailableError(f"{kind}: sentinel arrived but not all {rows:,} rows did")
            time.sleep(0.05)
            seen = time.monotonic()
        return seen - committed

    def latency(self, src: str, dst: str, alive: Callable[[], None]) -> list[float]:
        """Single-row commits at a low rate; ms from COMMIT returning until the sink shows the row."""
        out: list[float] = []
        interval = self.args.latency_interval_ms / 1000
        with self.source.connect(src) as s, self.sink.connect(dst) as d:
            poll = "SELECT bbalance FROM pgbench_branches WHERE bid = 2"
            for _ in range(self.args.latency_commits):
                alive()
                marker = self.next_marker()
                s.execute("UPDATE pgbench_branches SET bbalance = %s WHERE bid = 2", (marker,))
                committed = time.monotonic()
                deadline = committed + 10
                while True:
                    row = d.execute(poll, prepare=True).fetchone()
                    now = time.monotonic()
                    if row is not None and row[0] == marker:
                        out.append((now - committed) * 1000)
                        break
                    if now > deadline:
                        raise PeerUnavailableError("a single-row commit took over 10s to appear")
                    time.sleep(0.0002)
                time.sleep(max(0.0, interval - (time.monotonic() - committed)))
        return out

    def streaming_phases(self, result: PeerResult, src: str, dst: str, alive: Callable[[], None]) -> None:
        progress(f"{result.name}: UPDATE of {self.args.update_rows:,} rows")
        result.update_s = self.bulk(src, dst, "update", self.args.update_rows, alive)
        progress(f"{result.name}: update applied in {result.update_s:.2f}s")
        progress(f"{result.name}: INSERT of {self.args.insert_rows:,} rows")
        result.insert_s = self.bulk(src, dst, "insert", self.args.insert_rows, alive)
        progress(f"{result.name}: insert applied in {result.insert_s:.2f}s")
        progress(
            f"{result.name}: {self.args.latency_commits} single-row commits, "
            f"one every {self.args.latency_interval_ms} ms"
        )
        result.latencies_ms = self.latency(src, dst, alive)
        progress(
            f"{result.name}: latency p50 {pct(result.latencies_ms, 50):.2f} ms, "
            f"p99 {pct(result.latencies_ms, 99):.2f} ms"
        )

    # -- peers

    def run_native(self, result: PeerResult) -> None:
        src, dst = self.fresh_pair("native")
        schema = subprocess.run(
            [self.pg_tool("pg_dump"), "-s", "--no-owner", "--no-acl", "-d", src, *[f"-t{t}" for t in TABLES]],
            env=self.source.client_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.sink.psql(schema, dbname=dst)
        self.source.execute(f"CREATE PUBLICATION bench_pub FOR TABLE {', '.join(TABLES)}", dbname=src)

        def backends() -> list[int]:
            rows = self.sink.execute(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'logical replication worker'"
            )
            return [r[0] for r in rows]

        conn = self.source.dsn(src)
        try:
            self._native_phases(result, src, dst, conn, backends)
        finally:
            # A subscription pins its database; detach it from the slot so both databases can be dropped.
            with contextlib.suppress(Exception):
                self.sink.execute("ALTER SUBSCRIPTION bench_sub DISABLE", dbname=dst)
                self.sink.execute("ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE)", dbname=dst)
                self.sink.execute("DROP SUBSCRIPTION bench_sub", dbname=dst)

    def _native_phases(
        self, result: PeerResult, src: str, dst: str, conn: str, backends: Callable[[], list[int]]
    ) -> None:
        def alive() -> None:
            return None

        with RssSampler(backends, "private") as rss:
            progress("native: CREATE SUBSCRIPTION (initial table sync)")
            started = time.monotonic()
            self.sink.execute(f"CREATE SUBSCRIPTION bench_sub CONNECTION '{conn}' PUBLICATION bench_pub", dbname=dst)
            deadline = started + self.args.snapshot_timeout
            while True:
                rows = self.sink.execute(
                    "SELECT count(*) FILTER (WHERE srsubstate = 'r'), count(*) FROM pg_subscription_rel", dbname=dst
                )[0]
                if rows[1] == len(TABLES) and rows[0] == len(TABLES):
                    break
                if time.monotonic() > deadline:
                    raise PeerUnavailableError("initial sync did not finish in time")
                time.sleep(0.01)
            result.snapshot_s = time.monotonic() - started
            result.snapshot_rows = self.snapshot_rows
            if not self.sink_counts_match(dst):
                raise PeerUnavailableError("tables in state 'r' but row counts differ")
            progress(f"native: snapshot in {result.snapshot_s:.2f}s")
            self.streaming_phases(result, src, dst, alive)
        result.peak_rss_mb = rss.peak_kb / 1024
        result.rss_note = "largest apply/tablesync backend, private RSS (shared buffers excluded)"

    def run_pgcopydb(self, result: PeerResult) -> None:
        exe = shutil.which("pgcopydb")
        if exe is None:
            raise PeerUnavailableError("pgcopydb is not installed (hack/install-system-deps.sh)")
        src, dst = self.fresh_pair("pgcopydb")
        workdir = self.work / "pgcopydb"
        shutil.rmtree(workdir, ignore_errors=True)
        env = dict(os.environ)
        # pgcopydb runs pg_dump/pg_restore from PATH: they must match the server's major version.
        env["PATH"] = f"{self.source.bin_dir}:{env.get('PATH', '')}"
        env.pop("PGPASSWORD", None)
        argv = [
            exe,
            "clone",
            "--source",
            self.source.dsn(src),
            "--target",
            self.sink.dsn(dst),
            "--dir",
            str(workdir),
            "--no-owner",
            "--no-acl",
        ]
        progress("pgcopydb: clone")
        log = self.work / "pgcopydb.log"
        started = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            with RssSampler(lambda: _tree(proc.pid), "hwm") as rss:
                try:
                    code = proc.wait(timeout=self.args.snapshot_timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    raise PeerUnavailableError("pgcopydb clone timed out") from None
        elapsed = time.monotonic() - started
        if code != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
            raise PeerUnavailableError(f"pgcopydb clone exited {code}: {tail}")
        if not self.sink_counts_match(dst):
            raise PeerUnavailableError("pgcopydb finished but row counts differ")
        result.snapshot_s = elapsed
        result.snapshot_rows = self.snapshot_rows
        result.peak_rss_mb = rss.peak_kb / 1024
        result.rss_note = "pgcopydb process tree, sum of VmHWM"
        result.notes.append("snapshot only (pgcopydb clone without --follow)")
        progress(f"pgcopydb: clone in {elapsed:.2f}s")

    def sluice_available(self) -> str | None:
        """None if ``sluice worker`` can run, else why not."""
        proc = subprocess.run(
            [sys.executable, "-m", "sluice", "worker", "--help"],
            capture_output=True,
            text=True,
            env=self.sluice_env(),
            check=False,
            timeout=60,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return f"`sluice worker --help` failed: {last}"
        return None

    def sluice_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run_sluice(self, result: PeerResult) -> None:
        why = self.sluice_available()
        if why:
            raise PeerUnavailableError(why)
        src, dst = self.fresh_pair("sluice")
        spec = {
            "id": "bench-pg-to-pg",
            "source": {
                "postgres": {
                    "connection": self.source.connection_spec(src),
                    "replication_type": {"logical_replication": {}},
                }
            },
            "sink": {"postgres": {"connection": self.sink.connection_spec(dst), "target_schema": "public"}},
        }
        config = self.work / "sluice-connector.yaml"
        config.write_text(yaml.safe_dump(spec, sort_keys=False))
        status_file = self.work / "sluice-status.jsonl"
        status_file.unlink(missing_ok=True)
        log = self.work / "sluice-worker.log"
        argv = [sys.executable, "-m", "sluice", "worker", "--config", str(config), "--status-file", str(status_file)]
        progress("sluice: worker start (snapshot)")
        with log.open("wb") as out:
            started = time.monotonic()
            proc = subprocess.Popen(
                argv, env=self.sluice_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

        def alive() -> None:
            if proc.poll() is not None:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
                raise PeerUnavailableError(f"worker exited with {proc.returncode}: {tail}")

        try:
            with RssSampler(lambda: _tree(proc.pid), "hwm") as rss:
                deadline = started + self.args.snapshot_timeout
                # Done when the worker says it streams: every chunk copied and the keys built (the sink is then
                # as usable as native's tables in state 'r'). Its status file is polled as cheaply as native's
                # catalog; counting 2M sink rows every few ms would steal the CPU being measured.
                while not self.worker_streaming(status_file):
                    alive()
                    if time.monotonic() > deadline:
                        raise PeerUnavailableError("snapshot did not finish in time")
                    time.sleep(0.01)
                result.snapshot_s = time.monotonic() - started
                result.snapshot_rows = self.snapshot_rows
                if not self.sink_counts_match(dst):
                    raise PeerUnavailableError("worker reports streaming but row counts differ")
                result.notes.append(
                    "snapshot: from worker process start (start-up included) until it reports streaming, keys built"
                )
                progress(f"sluice: snapshot in {result.snapshot_s:.2f}s")
                self.streaming_phases(result, src, dst, alive)
            result.peak_rss_mb = rss.peak_kb / 1024
            result.rss_note = "worker process tree, sum of VmHWM"
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                code = None
            if code != 0:
                result.notes.append(f"worker exit after SIGTERM: {code} (expected 0)")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    @staticmethod
    def worker_streaming(status_file: Path) -> bool:
        """Whether the worker's JSON-lines status has reached state 'realtime' (snapshot done, streaming)."""
        with contextlib.suppress(OSError):
            for line in status_file.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    if json.loads(line).get("state") == "realtime":
                        return True
        return False

    # -- all

    def run(self) -> list[PeerResult]:
        results: list[PeerResult] = []
        self.setup()
        try:
            for peer in self.args.peers:
                result = PeerResult(peer)
                results.append(result)
                progress(f"=== {peer} ===")
                try:
                    getattr(self, f"run_{peer}")(result)
                except PeerUnavailableError as exc:
                    result.fail(str(exc))
                    progress(f"{peer}: not available ({exc})")
                except Exception as exc:
                    result.fail(f"{type(exc).__name__}: {exc}")
                    progress(f"{peer}: failed ({type(exc).__name__}: {exc})")
                finally:
                    for instance, db in ((self.source, f"src_{peer}"), (self.sink, f"dst_{peer}")):
                        with contextlib.suppress(Exception):
                            instance.drop_database(db)
        finally:
            self.teardown()
        return results


# ---- report ---------------------------------------------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if value >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}x"


def render(results: list[PeerResult], args: argparse.Namespace, pg_version: str) -> str:
    by = {r.name: r for r in results}

    def metric(r: PeerResult | None, fn: Callable[[PeerResult], float | None]) -> float | None:
        if r is None or not r.available:
            return None
        with contextlib.suppress(TypeError, ZeroDivisionError):
            return fn(r)
        return None

    rows: list[tuple[str, Callable[[PeerResult], float | None], str]] = [
        ("snapshot seconds (lower is better)", lambda r: r.snapshot_s, "s"),
        ("snapshot rows/s", lambda r: r.snapshot_rows / r.snapshot_s if r.snapshot_s else None, "rows/s"),
        (
            f"CDC UPDATE {args.update_rows:,} rows: rows/s",
            lambda r: args.update_rows / r.update_s if r.update_s else None,
            "",
        ),
        (
            f"CDC INSERT {args.insert_rows:,} rows: rows/s",
            lambda r: args.insert_rows / r.insert_s if r.insert_s else None,
            "",
        ),
        ("commit→visible p50 ms (lower is better)", lambda r: pct(r.latencies_ms, 50) if r.latencies_ms else None, ""),
        ("commit→visible p99 ms (lower is better)", lambda r: pct(r.latencies_ms, 99) if r.latencies_ms else None, ""),
        ("worker peak RSS MB (lower is better)", lambda r: r.peak_rss_mb, ""),
    ]
    names = [p for p in PEERS if p in by]
    header = "| metric | " + " | ".join(names) + " | sluice/native | sluice/pgcopydb |"
    lines = [header, "|" + "---|" * (len(names) + 3)]
    for label, fn, _unit in rows:
        vals = {n: metric(by.get(n), fn) for n in names}
        cells = []
        for n in names:
            r = by[n]
            if not r.available:
                cells.append("n/a")
            else:
                cells.append(_fmt(vals[n]))
        vs_native = _ratio(vals.get("sluice"), vals.get("native"))
        vs_pgcopydb = _ratio(vals.get("sluice"), vals.get("pgcopydb"))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {vs_native} | {vs_pgcopydb} |")
    out = [
        f"# pg_to_pg benchmark, {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        f"- machine: {os.cpu_count()} CPUs, {platform.platform()}; {pg_version}",
        f"- data: pgbench scale {args.scale} ({100_000 * args.scale:,} accounts + branches + tellers); "
        f"same servers and settings for every peer (fast={args.fast}: fsync/synchronous_commit/full_page_writes "
        f"{'off' if args.fast else 'on'})",
        f"- latency: {args.latency_commits} single-row commits, one every {args.latency_interval_ms} ms",
        f"- load average at the end (1/5/15 min): {' / '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(other work on the machine skews all peers; compare ratios, rerun when it is high)",
        f"- git: {git_describe()}",
        "",
        *lines,
        "",
    ]
    for r in results:
        if not r.available:
            out.append(f"- {r.name}: not available ({r.reason})")
        else:
            extra = [r.rss_note, *r.notes]
            out.append(f"- {r.name}: " + "; ".join(x for x in extra if x))
    out.append(
        "- rates (rows/s): higher is better, so a ratio above 1 favours sluice; seconds, latency and RSS: "
        "lower is better, so a ratio below 1 favours sluice"
    )
    return "\n".join(out) + "\n"


def git_describe() -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        ).stdout.strip()
    return "unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/pg_to_pg", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=int, default=20, help="pgbench scale (100k accounts each; default 20 = 2M)")
    parser.add_argument("--update-rows", type=int, default=500_000)
    parser.add_argument("--insert-rows", type=int, default=500_000)
    parser.add_argument("--latency-commits", type=int, default=200)
    parser.add_argument("--latency-interval-ms", type=int, default=50, help="time between single-row commits")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS))
    parser.add_argument("--fast", action="store_true", help="fsync/synchronous_commit/full_page_writes off (all peers)")
    parser.add_argument("--snapshot-timeout", type=float, default=900)
    parser.add_argument("--cdc-timeout", type=float, default=600)
    parser.add_argument("--keep", action="store_true", help="keep the servers' directory for a look afterwards")
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ok, why = postgres_available()
    if not ok:
        print(f"error: {why}", file=sys.stderr)
        return 2
    bench = Bench(args)
    results = bench.run()
    pg_version = "PostgreSQL " + str(bench.source.bin_dir.parent.name if bench.source.bin_dir else "?")
    report = render(results, args, pg_version)
    print(report)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}.md"
    path.write_text(report)
    progress(f"results written to {path}")
    return 0 if any(r.available for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
