"""MySQL / MariaDB → PostgreSQL: Sluice's snapshot against pgloader's on the same data, and Sluice's CDC rows/s.

One run, same machine, same servers: a MariaDB 10.11 or MySQL 8.0 source (``--flavor``) and a PostgreSQL sink,
both throw-away instances tuned alike for speed. A table of ``--rows`` rows (bigint key, int, varchar, decimal,
datetime, text) is copied

- by ``pgloader`` (Debian package; ``pgloader mysql://... postgresql://...``, its defaults: 4 workers, tables
  created by pgloader) into one sink database, timed from start to exit;
- by ``sluice worker`` (a connector with the default snapshot parallelism) into another, timed from start until
  the worker's status says ``realtime`` (the snapshot committed, start-up included);

then one UPDATE of every row is committed at the source and timed from COMMIT until the sink holds every updated
row (Sluice's CDC in rows/s; pgloader has no CDC). Debezium's MySQL connector is not run here (no Kafka Connect
set-up in this bench yet). Prints a markdown table with the ratio; nothing here asserts a speed.

pgloader 3.6.7 from Debian cannot read MySQL 8.0.15 (its driver fails on the server's collation 76: "76 fell
through ECASE expression"), so compare against pgloader with ``--flavor mariadb`` (the default). The bench checks
pgloader's row count and stops with its log rather than report a copy that did not happen.

    bench/mysql_to_pg [--flavor mariadb|mysql] [--rows 300000] [--no-cdc] [--bytecode]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sluice.devstack.mysql import MySqlInstance  # noqa: E402
from sluice.devstack.postgres import PostgresInstance  # noqa: E402

T0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def load(src: MySqlInstance, rows: int) -> None:
    src.execute("CREATE DATABASE bench")
    src.execute(
        "CREATE TABLE bench.items (id bigint PRIMARY KEY, qty int NOT NULL, name varchar(64), price decimal(12,2), "
        "created datetime(6), note text)"
    )
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
        raise RuntimeError(f"pgloader failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    with sink.connect(db) as pg:
        row = pg.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'items'"
        ).fetchone()
        copied = pg.execute(f'SELECT count(*) FROM "{row[0]}".items').fetchone()[0] if row else 0
    if copied != rows:
        raise RuntimeError(f"pgloader exited 0 but copied {copied} of {rows} rows:\n{done.stdout[-3000:]}")
    return took


def bytecode_env(work: Path) -> dict[str, str]:
    """Environment for a worker that starts with its bytecode compiled, as an installed package does (pip compiles
    on install): a private ``PYTHONPYCACHEPREFIX`` warmed by one untimed import of the worker's modules. Without it,
    where ``PYTHONDONTWRITEBYTECODE`` is set, every start compiles every module of Sluice from source."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
    modules = "sluice.worker.cli, sluice.worker.engine, sluice.worker.fastpath.mysql_pg, sluice.worker.registry"
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=env, check=True)
    return env


def run_sluice(
    src: MySqlInstance,
    sink: PostgresInstance,
    db: str,
    work: Path,
    rows: int,
    timeout: float,
    *,
    cdc: bool = True,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    spec = {
        "id": "bench-mysql-to-pg",
        "source": {"mysql": {"connection": src.connection_spec("bench")}},
        "sink": {"postgres": {"connection": sink.connection_spec(db), "target_schema": "bench"}},
        "limits": {"cdc": {"flush_interval_ms": 50}},
    }
    config = work / "connector.yaml"
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    status = work / "status.jsonl"
    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "sluice", "worker", "--config", str(config), "--status-file", str(status)]
    log = work / "worker.log"
    out: dict[str, float] = {}
    with log.open("wb") as fh:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:

        def wait(pred: Any, what: str) -> float:
            deadline = time.monotonic() + timeout
            while not pred():
                if proc.poll() is not None:
                    raise RuntimeError(f"worker exited during {what}:\n{log.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} took over {timeout:.0f}s")
                time.sleep(0.01)
            return time.monotonic()

        def realtime() -> bool:
            try:
                lines = status.read_text().splitlines()
            except FileNotFoundError:
                return False
            return any(json.loads(line).get("state") == "realtime" for line in lines if line.startswith("{"))

        out["snapshot_s"] = wait(realtime, "snapshot") - started
        progress(f"sluice snapshot: {rows:,} rows in {out['snapshot_s']:.2f}s")
        if not cdc:
            return out
        time.sleep(1.0)
        conn = src.connect("bench")
        with conn.cursor() as cur:
            cur.execute("UPDATE items SET qty = -1")
            committed = time.monotonic()
        conn.close()
        with sink.connect(db) as pg:

            def applied() -> bool:
                row = pg.execute("SELECT count(*) FROM bench.items WHERE qty = -1").fetchone()
                return bool(row and row[0] >= rows)

            out["update_s"] = wait(applied, "UPDATE") - committed
        progress(f"sluice CDC: {rows:,}-row UPDATE in {out['update_s']:.2f}s")
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flavor", choices=["mariadb", "mysql"], default="mariadb")
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--no-cdc", action="store_true", help="snapshot only (skip the timed UPDATE)")
    ap.add_argument(
        "--bytecode",
        action="store_true",
        help="start the worker with its modules' bytecode compiled (as installed), not compiled at every start",
    )
    args = ap.parse_args()
    if shutil.which("pgloader") is None:
        print("error: pgloader missing (hack/install-system-deps.sh)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sluice-bench-mysql-"))
    # pgloader's MySQL driver cannot follow MySQL 8's auth-switch from caching_sha2_password: offer the old plugin.
    options = {"default-authentication-plugin": "mysql_native_password"} if args.flavor == "mysql" else {}
    src = MySqlInstance(flavor=args.flavor, name="bench", options=options)
    sink = PostgresInstance(name="bench-sink", fast=True)
    try:
        progress(f"starting {args.flavor} and PostgreSQL")
        src.start()
        sink.start()
        progress(f"loading {args.rows:,} rows")
        load(src, args.rows)
        for db in ("pgloader", "sluice"):
            with sink.connect("postgres") as pg:
                pg.execute(f"CREATE DATABASE {db}")
        progress("pgloader snapshot")
        pgl = run_pgloader(src, sink, "pgloader", args.rows)
        progress(f"pgloader: {args.rows:,} rows in {pgl:.2f}s")
        env = bytecode_env(work) if args.bytecode else None
        res = run_sluice(src, sink, "sluice", work, args.rows, args.timeout, cdc=not args.no_cdc, env=env)
        version = src.execute("SELECT VERSION()")[0][0]
        n = args.rows
        start = "bytecode cached" if args.bytecode else "bytecode compiled at start"
        print(f"\n### MySQL → PostgreSQL ({version}, {n:,} rows, {os.cpu_count()} cores, {start})\n")
        print("| measure | sluice | pgloader | sluice / pgloader |")
        print("|---|---|---|---|")
        print(
            f"| snapshot, rows/s | {n / res['snapshot_s']:,.0f} ({res['snapshot_s']:.2f} s) | {n / pgl:,.0f} "
            f"({pgl:.2f} s) | {pgl / res['snapshot_s']:.2f}x |"
        )
        if "update_s" in res:
            print(
                f"| CDC, one {n:,}-row UPDATE, rows/s | {n / res['update_s']:,.0f} ({res['update_s']:.2f} s) | — | — |"
            )
        return 0
    finally:
        src.destroy()
        sink.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
