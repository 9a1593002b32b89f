"""The operator at scale: N Connectors (1,000 by default), K of them streaming, the rest ``spec.disabled``.

Why: the operator runs one reconcile pass per connector every ``--refresh-seconds`` whether anything changed or
not, so what a pass costs — in memory, in time, and in apiserver requests — is multiplied by the number of
connectors. This bench measures it on a real control plane (etcd, kube-apiserver, kube-controller-manager from
``sluice.devstack``), the process node that runs worker pods as local processes, and one operator process, the way
the e2e tests do (``tests/e2e/test_operator_scale.py``).

Setup: one PostgreSQL source server and one sink server; each streaming connector gets a source database with one
seeded table and an empty sink database; every disabled connector points at one shared idle source database (no
slot: it never ran). All connectors share one credentials Secret. The operator runs under a user of its own
(``bench-operator``, bound to cluster-admin) so that its requests fall into an API Priority and Fairness flow
schema of their own (``global-default``): ``apiserver_flowcontrol_dispatched_requests_total`` then splits the
apiserver's load by who asked — the operator, the workers (``service-accounts``), the process node
(``system-nodes``), the controllers, and this bench (``exempt``: it does not poll during the window).

Measured over a steady window (``--window`` seconds, after every connector has a status and all K stream):

- operator RSS (mean and max over the window, VmHWM at the end);
- reconcile passes per second and p50/p99 duration (``sluice_operator_reconcile_seconds``, bucket-interpolated);
- apiserver requests per second (``apiserver_request_total`` delta), split by verb, by resource, and by flow schema;
- the operator's writes sent and skipped (``sluice_operator_writes_total``, when the operator has it);
- time from the first create until all K report Streaming, and until all N have a status.

Run ``bench/operator_scale --help``. ``--operator-src DIR`` runs the operator from another checkout's ``src`` (e.g.
a ``git worktree`` of an older commit) for a before/after comparison on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sluice.devstack import ControlPlane  # noqa: E402
from sluice.devstack.postgres import PostgresInstance, postgres_available  # noqa: E402
from sluice.devstack.processnode import ProcessNode  # noqa: E402

NAMESPACE = "scale"
NODE = "bench-node"
OPERATOR_USER = "bench-operator"
CRD_PATH = REPO / "crds" / "connector.yaml"
T_START = time.monotonic()
SEED_TABLE = "CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL, qty int NOT NULL)"
SEED_ROWS = "INSERT INTO orders SELECT g, 'item-' || g, g % 7 FROM generate_series(1, 50) g"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - T_START:7.1f}s] {msg}", file=sys.stderr, flush=True)


# ---- Prometheus text ------------------------------------------------------------------------------------------------

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, *names: str) -> Samples:
    out: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None or (names and m.group(1) not in names):
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            continue
    return out


def delta(before: Samples, after: Samples) -> Samples:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def sum_by(samples: Samples, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (metric, labels), value in samples.items():
        if metric == name:
            out[dict(labels).get(label, "")] += value
    return dict(out)


def histogram_quantile(samples: Samples, name: str, q: float) -> float | None:
    """Like PromQL's histogram_quantile over a delta of cumulative buckets (linear inside a bucket)."""
    buckets = sorted(
        (float("inf") if dict(labels)["le"] == "+Inf" else float(dict(labels)["le"]), value)
        for (metric, labels), value in samples.items()
        if metric == f"{name}_bucket"
    )
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return None


# ---- processes ----------------------------------------------------------------------------------------------------


def rss_mb(pid: int, field_name: str = "VmRSS") -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Operator:
    popen: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def operator_process(
    plane: ControlPlane, workdir: Path, kubeconfig: Path, refresh: float, src: Path | None
) -> Iterator[Operator]:
    log = workdir / "operator.log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    argv = [
        sys.executable, "-m", "sluice", "operator",
        "--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE,
        "--metrics-port", str(port), "--health-port", "0", "--worker-metrics-port", "0",
        "--refresh-seconds", str(refresh), "--no-leader-election", "--worker-image", "sluice:bench",
    ]  # fmt: skip
    with log.open("ab") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    op = Operator(popen, log, port)
    try:
        deadline = time.monotonic() + 90
        while "operator started" not in log.read_text(errors="replace"):
            if popen.poll() is not None:
                raise RuntimeError(f"operator exited with {popen.returncode}:\n{op.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"operator did not start:\n{op.tail()}")
            time.sleep(0.5)
        yield op
    finally:
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)


# ---- the cluster's objects ------------------------------------------------------------------------------------------


def kubectl_create(plane: ControlPlane, objects: list[dict[str, Any]]) -> None:
    """One POST per object (``apply`` would GET each first: minutes at a thousand)."""
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    plane.kubectl("create", "-n", NAMESPACE, "-f", "-", input=body, timeout=600)


def get_json(plane: ControlPlane, *args: str) -> Any:
    return json.loads(plane.kubectl("get", *args, "-o", "json").stdout)


def connector(name: str, source: dict[str, Any], sink: dict[str, Any], *, disabled: bool) -> dict[str, Any]:
    def conn(c: dict[str, Any], key: str) -> dict[str, Any]:
        c = {k: v for k, v in c.items() if k != "password"}
        c["password_secret_ref"] = {"name": "bench-creds", "key": key}
        return c

    spec: dict[str, Any] = {
        "source": {
            "postgres": {
                "connection": conn(source, "source"),
                "replication_type": {"logical_replication": {"skip_snapshots": False}},
                "parallel_snapshots_enabled": False,
            }
        },
        "sink": {"postgres": {"connection": conn(sink, "sink")}},
    }
    if disabled:
        spec["disabled"] = True
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": "Connector", "metadata": {"name": name}, "spec": spec}


def condition(obj: dict[str, Any], ctype: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return str(c.get("status"))
    return None


# ---- the run ---------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    n: int
    k: int
    refresh: float
    window: float
    operator_src: str
    all_status_s: float | None = None
    all_streaming_s: float | None = None
    streaming: int = 0
    rss_mean: float | None = None
    rss_max: float | None = None
    hwm: float | None = None
    passes_per_s: float | None = None
    p50: float | None = None
    p99: float | None = None
    errors: float = 0.0
    rps_total: float = 0.0
    rps_verb: dict[str, float] = field(default_factory=dict)
    rps_resource: dict[str, float] = field(default_factory=dict)
    rps_flow: dict[str, float] = field(default_factory=dict)
    writes: dict[str, float] = field(default_factory=dict)


def default_streaming() -> int:
    """As many workers as the process node schedules: it offers the host's cores, and a worker requests 100m."""
    return max(5, min(100, 10 * (os.cpu_count() or 2)))


def run(args: argparse.Namespace) -> Result:
    ok, why = postgres_available()
    if not ok:
        raise SystemExit(f"PostgreSQL is not available: {why}")
    res = Result(args.connectors, args.streaming, args.refresh_seconds, args.window, str(args.operator_src or "."))
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="sluice-operator-scale-"))
        if not args.keep:
            stack.callback(shutil.rmtree, workdir, True)
        progress(f"work directory {workdir}")

        progress("starting the control plane")
        plane = ControlPlane(workdir / "controlplane", progress=lambda m: None)
        plane.start()
        stack.callback(plane.stop)
        plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_PATH))
        until = time.monotonic() + 60
        while plane.kubectl("get", "connectors", "-A", check=False).returncode != 0:  # Established, then served
            if time.monotonic() > until:
                raise RuntimeError("the Connector CRD is not served after 60 s")
            time.sleep(0.5)
        plane.kubectl("create", "namespace", NAMESPACE)
        op_kubeconfig = plane.user_kubeconfig(user=OPERATOR_USER)
        plane.kubectl("create", "clusterrolebinding", "bench-operator", "--clusterrole=cluster-admin",
                      f"--user={OPERATOR_USER}")  # fmt: skip

        progress("starting the process node")
        node = ProcessNode(plane.node_kubeconfig(NODE), workdir / "node", name=NODE, backoff_base=1.0)
        node.start()
        stack.callback(node.stop)

        room = args.streaming + 10
        progress(f"starting PostgreSQL (source with room for {args.streaming} slots, sink)")
        pg_src = PostgresInstance(
            name="scale-src",
            fast=True,
            settings={
                "max_replication_slots": room,
                "max_wal_senders": room,
                "max_connections": 100 + 8 * args.streaming,
            },
        )
        pg_src.start()
        stack.callback(pg_src.destroy)
        pg_sink = PostgresInstance(
            name="scale-sink",
            fast=True,
            settings={"max_connections": 100 + 8 * args.streaming},
        )
        pg_sink.start()
        stack.callback(pg_sink.destroy)

        progress(f"creating {args.streaming} source/sink database pairs")
        objects: list[dict[str, Any]] = [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "bench-creds", "labels": {"sluice.dev/usable-by-connectors": "true"}},
                "stringData": {"source": pg_src.superuser.password, "sink": pg_sink.superuser.password},
            }
        ]
        streaming_names = []
        for i in range(args.streaming):
            name = f"stream-{i:04d}"
            db = f"s{i:04d}"
            pg_src.create_database(db)
            pg_sink.create_database(db)
            pg_src.execute(
                "CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL, qty int NOT NULL)", dbname=db
            )
            pg_src.execute("INSERT INTO orders SELECT g, 'item-' || g, g % 7 FROM generate_series(1, 50) g", dbname=db)
            objects.append(connector(name, pg_src.connection_spec(db), pg_sink.connection_spec(db), disabled=False))
            streaming_names.append(name)
        pg_src.create_database("idle")
        pg_sink.create_database("idle")
        for i in range(args.connectors - args.streaming):
            objects.append(
                connector(
                    f"idle-{i:04d}", pg_src.connection_spec("idle"), pg_sink.connection_spec("idle"), disabled=True
                )
            )

        progress(f"starting the operator (refresh {args.refresh_seconds:g}s, src {args.operator_src or 'this tree'})")
        op = stack.enter_context(
            operator_process(plane, workdir, op_kubeconfig, args.refresh_seconds, args.operator_src)
        )

        progress(f"creating {len(objects) - 1} connectors in batches of {args.batch}")
        applied_at = time.monotonic()
        # the streaming ones first: they take longest to get going
        for start in range(0, len(objects), args.batch):
            kubectl_create(plane, objects[start : start + args.batch])
        progress(f"created in {time.monotonic() - applied_at:.1f}s")

        deadline = applied_at + args.timeout
        wanted = set(streaming_names)
        while True:
            items = get_json(plane, "connectors", "-n", NAMESPACE)["items"]
            with_status = sum(1 for c in items if (c.get("status") or {}).get("conditions"))
            streaming = {c["metadata"]["name"] for c in items if condition(c, "Streaming") == "True"} & wanted
            now = time.monotonic()
            if res.all_status_s is None and with_status >= args.connectors:
                res.all_status_s = now - applied_at
            if res.all_streaming_s is None and len(streaming) >= len(wanted):
                res.all_streaming_s = now - applied_at
            progress(
                f"{with_status}/{args.connectors} with a status, {len(streaming)}/{len(wanted)} streaming, "
                f"operator RSS {rss_mb(op.popen.pid) or 0:.0f} MB"
            )
            if res.all_status_s is not None and res.all_streaming_s is not None:
                break
            if op.popen.poll() is not None:
                raise RuntimeError(f"operator exited:\n{op.tail()}")
            if now > deadline:
                progress(f"timed out after {args.timeout:.0f}s; measuring what runs")
                break
            time.sleep(5)
        res.streaming = len(streaming)

        progress(f"settling for {args.settle:g}s")
        time.sleep(args.settle)
        progress(f"measuring a steady window of {args.window:g}s (no polling by the bench)")
        api_names = ("apiserver_request_total", "apiserver_flowcontrol_dispatched_requests_total")
        api0 = parse_metrics(plane.kubectl("get", "--raw", "/metrics").stdout, *api_names)
        op0 = parse_metrics(op.metrics())
        rss: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                value = rss_mb(op.popen.pid)
                if value is not None:
                    rss.append(value)

        sampler = threading.Thread(target=sample, daemon=True)
        t0 = time.monotonic()
        sampler.start()
        time.sleep(args.window)
        stop.set()
        sampler.join()
        api1 = parse_metrics(plane.kubectl("get", "--raw", "/metrics").stdout, *api_names)
        op1 = parse_metrics(op.metrics())
        elapsed = time.monotonic() - t0
        res.hwm = rss_mb(op.popen.pid, "VmHWM")
        if rss:
            res.rss_mean, res.rss_max = sum(rss) / len(rss), max(rss)

        api = delta(api0, api1)
        res.rps_verb = {k: v / elapsed for k, v in sum_by(api, "apiserver_request_total", "verb").items() if v}
        res.rps_total = sum(res.rps_verb.values())
        resources: dict[str, float] = defaultdict(float)
        for (metric, labels), value in api.items():
            if metric == "apiserver_request_total" and value:
                d = dict(labels)
                key = (d.get("resource") or "(non-resource)") + (f"/{d['subresource']}" if d.get("subresource") else "")
                resources[f"{d.get('verb')} {key}"] += value / elapsed
        res.rps_resource = dict(resources)
        res.rps_flow = {
            k: v / elapsed
            for k, v in sum_by(api, "apiserver_flowcontrol_dispatched_requests_total", "flow_schema").items()
            if v
        }
        ops = delta(op0, op1)
        passes = sum(v for (m, _), v in ops.items() if m == "sluice_operator_reconciles_total")
        res.errors = sum(
            v
            for (m, labels), v in ops.items()
            if m == "sluice_operator_reconciles_total" and ("outcome", "error") in labels
        )
        res.passes_per_s = passes / elapsed
        res.p50 = histogram_quantile(ops, "sluice_operator_reconcile_seconds", 0.50)
        res.p99 = histogram_quantile(ops, "sluice_operator_reconcile_seconds", 0.99)
        res.writes = {
            f"{dict(labels).get('what')} {dict(labels).get('outcome')}": v / elapsed
            for (m, labels), v in ops.items()
            if m == "sluice_operator_writes_total" and v
        }
        if args.keep:
            progress(f"kept {workdir}")
    return res


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def report(res: Result) -> str:
    rows = [
        ("connectors (streaming / disabled)", f"{res.n} ({res.streaming} of {res.k} streaming / {res.n - res.k})"),
        ("operator", res.operator_src),
        ("refresh interval", f"{res.refresh:g} s"),
        ("all N with a status after", fmt(res.all_status_s, ".0f", " s")),
        ("all K streaming after", fmt(res.all_streaming_s, ".0f", " s")),
        ("operator RSS mean / max (window)", f"{fmt(res.rss_mean, '.0f')} / {fmt(res.rss_max, '.0f')} MB"),
        ("operator VmHWM (peak since start)", fmt(res.hwm, ".0f", " MB")),
        ("reconcile passes / s", fmt(res.passes_per_s, ".1f")),
        (
            "reconcile p50 / p99",
            f"{fmt(res.p50 and res.p50 * 1000, '.0f')} / {fmt(res.p99 and res.p99 * 1000, '.0f')} ms",
        ),
        ("reconcile errors in window", f"{res.errors:.0f}"),
        ("apiserver requests / s (all)", f"{res.rps_total:.1f}"),
    ]
    for verb, v in sorted(res.rps_verb.items(), key=lambda kv: -kv[1]):
        rows.append((f"  verb {verb}", f"{v:.1f}"))
    for flow, v in sorted(res.rps_flow.items(), key=lambda kv: -kv[1]):
        rows.append((f"  by flow schema {flow}", f"{v:.1f}"))
    for what, v in sorted(res.rps_resource.items(), key=lambda kv: -kv[1])[:12]:
        rows.append((f"  {what}", f"{v:.2f}"))
    for what, v in sorted(res.writes.items()):
        rows.append((f"operator writes/s {what}", f"{v:.2f}"))
    width = max(len(r[0]) for r in rows)
    lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    lines.append(
        f"\nWindow {res.window:g} s. Flow schemas: global-default = the operator (user {OPERATOR_USER}), "
        "service-accounts = the workers, system-nodes = the process node, exempt = this bench's kubectl (2 metric "
        "scrapes), kube-controller-manager/workload-* = controllers."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connectors", type=int, default=1000, help="N connectors in all (default 1000)")
    parser.add_argument(
        "--streaming",
        type=int,
        default=default_streaming(),
        help="K of them streaming, each a worker process with its own databases (default: 10 per core)",
    )
    parser.add_argument("--refresh-seconds", type=float, default=10.0, help="operator status refresh (its default)")
    parser.add_argument("--window", type=float, default=60.0, help="steady window measured, seconds")
    parser.add_argument("--settle", type=float, default=20.0, help="wait after all are up, before the window")
    parser.add_argument("--timeout", type=float, default=1200.0, help="for all to have a status and stream")
    parser.add_argument("--batch", type=int, default=100, help="connectors per kubectl create")
    parser.add_argument("--operator-src", type=Path, help="run the operator from this src dir (PYTHONPATH)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if not 0 <= args.streaming <= args.connectors:
        parser.error("--streaming must be between 0 and --connectors")
    res = run(args)
    text = report(res)
    print(text)
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"operator-scale-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}.md"
    path.write_text(text + "\n")
    progress(f"written to {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
