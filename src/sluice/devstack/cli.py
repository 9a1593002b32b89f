"""``sluice dev``: the whole product on this machine, in the foreground, until Ctrl-C.

Starts, in order, with a progress line for each step:

1. the Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) from
   ``hack/build-k8s.sh``'s binaries, and the generated Connector CRD;
2. the process node (a development stand-in for a kubelet: pods run as local processes, see ``processnode.py``);
3. two PostgreSQL servers — a source with sample data (``shop``: customers, orders) and an empty sink
   (``warehouse``);
4. the operator (``sluice operator``) and the REST API (``sluice api --no-auth`` — **without authentication**,
   for local development only; it says so loudly);
5. a demo connector created through the REST API, then waits until it streams;
6. when they are installed (``make deps`` installs both): a Kafka broker with a second demo connector streaming
   ``shop`` into it (``demo-kafka``, Debezium events), and a MariaDB server with sample data (``inventory``) and a
   third demo connector streaming it into the sink (``demo-mysql``). ``--no-extras`` leaves them out.

Then it prints what to run next and stays in the foreground; Ctrl-C (or SIGTERM) stops everything it started,
in reverse order. State lives under ``--work-dir`` (default ``.sluice``); ``.sluice/kubeconfig`` is the admin
kubeconfig of the development cluster.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)

MYSQL_SAMPLE_SQL = (
    "CREATE TABLE products (id int PRIMARY KEY, name varchar(100) NOT NULL, price decimal(10,2) NOT NULL, "
    "stock int NOT NULL DEFAULT 0, updated_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
    "INSERT INTO products (id, name, price, stock) SELECT seq, CONCAT('product ', seq), seq % 100 + 0.99, seq % 17 "
    "FROM seq_1_to_500",
)

SAMPLE_SQL = """
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text, created_at timestamptz DEFAULT now());
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer_id bigint REFERENCES customers(id), item text NOT NULL,
  qty int NOT NULL, price numeric(10,2) NOT NULL, ordered_at timestamptz DEFAULT now()
);
INSERT INTO customers (id, name, email) SELECT g, 'customer ' || g, 'c' || g || '@example.com'
  FROM generate_series(1, 1000) g;
INSERT INTO orders (id, customer_id, item, qty, price) SELECT g, 1 + g % 1000, 'item-' || (g % 97), 1 + g % 5,
  round((g % 1000) / 10.0, 2) FROM generate_series(1, 10000) g;
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", default=".sluice", help="state, logs and kubeconfig (default .sluice)")
    parser.add_argument("--api-port", type=int, default=8080, help="REST API port on 127.0.0.1 (default 8080)")
    parser.add_argument("--no-demo", action="store_true", help="do not create the demo connector")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the demo to stream")
    parser.add_argument(
        "--no-extras", action="store_true", help="no Kafka broker or MariaDB server (and no demo connectors for them)"
    )


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


def _repo_root() -> Path:
    for candidate in (Path.cwd(), *Path(__file__).resolve().parents):
        if (candidate / "crds" / "connector.yaml").exists():
            return candidate
    raise SystemExit("crds/connector.yaml not found: run `sluice dev` from the repository (or run `make generate`)")


def _wait(check: Any, timeout: float, what: str, stop: threading.Event) -> Any:
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            log.debug("waiting for %s: %s", what, exc)
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        stop.wait(0.5)
    raise SystemExit("interrupted")


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(  # noqa: S310 - a loopback http URL built here
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback URL we built
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def run(args: argparse.Namespace) -> int:
    from sluice.devstack import ControlPlane, missing_binaries
    from sluice.devstack.postgres import PostgresInstance
    from sluice.devstack.processnode import ProcessNode

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    missing = missing_binaries()
    if missing:
        print(
            f"Kubernetes binaries missing ({', '.join(missing)}); build them with: bash hack/build-k8s.sh",
            file=sys.stderr,
        )
        return 1
    root = _repo_root()
    work = Path(args.work_dir).resolve()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cleanups: list[tuple[str, Any]] = []
    children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (logs / f"{name}.log").open("ab") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        children.append((name, proc))
        cleanups.append((name, lambda: _stop_process(proc)))
        return proc

    try:
        _step("starting the Kubernetes control plane (etcd, apiserver, controller-manager, scheduler)")
        plane = ControlPlane(work / "cluster", progress=lambda m: print(f"    {m}", flush=True))
        plane.start()
        cleanups.append(("control plane", plane.stop))
        kubeconfig = work / "kubeconfig"
        shutil.copyfile(plane.kubeconfig_path, kubeconfig)
        kubeconfig.chmod(0o600)
        _step("installing the Connector CRD")
        plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(root / "crds" / "connector.yaml"))

        def established() -> bool:
            # `kubectl wait` errors out instead of waiting while the CRD has no conditions yet: poll instead.
            out = plane.kubectl("get", "crd", "connectors.sluice.dev", "-o", "json", check=False)
            conds = json.loads(out.stdout).get("status", {}).get("conditions") or [] if out.returncode == 0 else []
            return any(c.get("type") == "Established" and c.get("status") == "True" for c in conds)

        _wait(established, 60, "the Connector CRD to be established", stop)
        _wait(lambda: plane.kubectl("get", "connectors", check=False).returncode == 0, 60, "connectors served", stop)

        _step("starting the process node (pods run as local processes; a development tool, not a kubelet)")
        node = ProcessNode(plane.node_kubeconfig("sluice-dev-node"), work / "node", name="sluice-dev-node")
        node.start()
        cleanups.append(("process node", node.stop))

        _step("starting PostgreSQL: source (sample data) and sink")
        source = PostgresInstance(name="dev-source", fast=True)
        source.start()
        cleanups.append(("source database", source.destroy))
        sink = PostgresInstance(name="dev-sink", fast=True)
        sink.start()
        cleanups.append(("sink database", sink.destroy))
        source.create_database("shop")
        source.psql(SAMPLE_SQL, dbname="shop")
        sink.create_database("warehouse")
        print(f"    source: {source.dsn('shop')}\n    sink:   {sink.dsn('warehouse')}", flush=True)
        kafka, mysql = (None, None) if args.no_extras else _start_extras(work, cleanups)

        _step("starting the operator")
        sluice = [sys.executable, "-m", "sluice"]
        spawn(
            "operator",
            [
                *sluice,
                "operator",
                "--kubeconfig",
                str(kubeconfig),
                "--metrics-port",
                "0",
                "--health-port",
                "0",
                "--lease-namespace",
                "default",
                "--refresh-seconds",
                "5",
            ],
        )
        _step(f"starting the REST API on http://127.0.0.1:{args.api_port}")
        print(
            "    !!! NO AUTHENTICATION: `sluice api --no-auth` gives every caller the API's rights.\n"
            "    !!! For local development only; never expose this port.",
            flush=True,
        )
        spawn("api", [*sluice, "api", "--no-auth", "--port", str(args.api_port), "--kubeconfig", str(kubeconfig)])
        base = f"http://127.0.0.1:{args.api_port}"
        _wait(lambda: _http("GET", f"{base}/readyz")[0] == 200, 60, "the API to answer", stop)

        if not args.no_demo:
            _step("creating the demo connector through the REST API (POST /api/v1/connectors/demo)")
            body = {
                "id": "demo",
                "name": "Demo: shop -> warehouse",
                "source": {
                    "postgres": {
                        "connection": source.connection_spec("shop"),
                        "replication_type": {"logical_replication": {}},
                    }
                },
                "sink": {"postgres": {"connection": sink.connection_spec("warehouse")}},
            }
            code, reply = _http("POST", f"{base}/api/v1/connectors/demo", body)
            if code not in (200, 201):
                raise SystemExit(f"creating the demo connector failed ({code}): {reply}")
            connector_id = reply["connector"]["id"]
            print(f"    created connector {connector_id}; waiting until it streams", flush=True)

            _wait(lambda: _streaming(plane, connector_id), args.timeout, f"connector {connector_id} to stream", stop)
            print(f"    connector {connector_id} is streaming", flush=True)
            extra = _extra_connectors(source, sink, kafka, mysql)
            for cid, extra_body in extra.items():
                _step(f"creating the demo connector {cid} through the REST API")
                code, reply = _http("POST", f"{base}/api/v1/connectors/{cid}", extra_body)
                if code not in (200, 201):
                    raise SystemExit(f"creating the demo connector {cid} failed ({code}): {reply}")
            for cid in extra:
                _wait(lambda cid=cid: _streaming(plane, cid), args.timeout, f"connector {cid} to stream", stop)
                print(f"    connector {cid} is streaming", flush=True)

        print(_next_steps(work, kubeconfig, base, node), flush=True)
        if kafka is not None and not args.no_demo:
            print(_kafka_steps(kafka), flush=True)
        while not stop.is_set():
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"!!! {name} exited with {proc.returncode}; see {logs}", flush=True)
                    stop.set()
            stop.wait(1)
        print("\nstopping ...", flush=True)
        return 0
    except SystemExit as exc:
        if exc.code not in (None, 0, "interrupted"):
            print(f"sluice dev: {exc.code}", file=sys.stderr)
            return 1
        return 0
    finally:
        for name, cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as exc:
                print(f"    could not stop {name}: {exc}", file=sys.stderr)
        print("stopped.", flush=True)


def _streaming(plane: Any, connector_id: str) -> bool:
    out = plane.kubectl("get", "connector", connector_id, "-o", "json", check=False)
    status = json.loads(out.stdout).get("status", {}) if out.returncode == 0 else {}
    conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return conds.get("Streaming") == "True"


def _start_extras(work: Path, cleanups: list[tuple[str, Any]]) -> tuple[Any, Any]:
    """A Kafka broker and a MariaDB server with sample data, each only when installed (said either way)."""
    from sluice.devstack.kafka import KafkaInstance, kafka_available
    from sluice.devstack.mysql import MySqlInstance, mysql_available

    kafka = mysql = None
    ok, why = kafka_available()
    if ok:
        _step("starting Kafka (one KRaft broker)")
        (work / "kafka").mkdir(parents=True, exist_ok=True)
        kafka = KafkaInstance(name="dev-kafka", base_dir=work / "kafka").start()
        cleanups.append(("kafka", kafka.stop))
        print(f"    bootstrap: {kafka.bootstrap}", flush=True)
    else:
        print(f"    (no Kafka demo: {why})", flush=True)
    ok, why = mysql_available("mariadb")
    if ok:
        _step("starting MariaDB with sample data (inventory)")
        # A directory of its own under the system temp dir, like the PostgreSQL servers: the server runs as the
        # `mysql` user when we are root, and the work dir's parents need not be open to it.
        mysql = MySqlInstance(flavor="mariadb", name="dev-mariadb").start()
        cleanups.append(("mariadb", mysql.stop))
        mysql.execute("CREATE DATABASE IF NOT EXISTS inventory")
        for statement in MYSQL_SAMPLE_SQL:
            mysql.execute(statement, database="inventory")
        print(f"    mariadb: {mysql.host}:{mysql.port}/inventory", flush=True)
    else:
        print(f"    (no MariaDB demo: {why})", flush=True)
    return kafka, mysql


def _extra_connectors(source: Any, sink: Any, kafka: Any, mysql: Any) -> dict[str, Any]:
    """The demo connectors of the extra servers: shop -> Kafka, MariaDB inventory -> warehouse."""
    out: dict[str, Any] = {}
    if kafka is not None:
        out["demo-kafka"] = {
            "id": "demo-kafka",
            "name": "Demo: shop -> Kafka (Debezium events)",
            "source": {
                "postgres": {
                    "connection": source.connection_spec("shop"),
                    "replication_type": {"logical_replication": {}},
                }
            },
            "sink": {
                "kafka": {
                    "connection": {"brokers": [kafka.bootstrap]},
                    "format": {"debezium": {}},
                    "topic_name_template": "{prefix}.{database_or_schema}.{table}",
                }
            },
        }
    if mysql is not None:
        out["demo-mysql"] = {
            "id": "demo-mysql",
            "name": "Demo: MariaDB inventory -> warehouse",
            "source": {"mysql": {"connection": mysql.connection_spec("inventory")}},
            "sink": {"postgres": {"connection": sink.connection_spec("warehouse"), "target_schema": "inventory"}},
        }
    return out


def _kafka_steps(kafka: Any) -> str:
    from sluice.devstack.kafka import kafka_home

    libs = kafka_home() / "libs"
    return f"""Watch the Kafka demo's events as they arrive (one topic per table, <connector>.<schema>.<table>):

  java -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "{libs}/*" \\
       org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server {kafka.bootstrap} \\
       --topic demo-kafka.public.orders --from-beginning --isolation-level read_committed
"""


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    import os

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _next_steps(work: Path, kubeconfig: Path, base: str, node: Any) -> str:
    return f"""
Sluice is running. In another terminal:

  export KUBECONFIG={kubeconfig}
  kubectl get connectors
  kubectl describe connector demo
  kubectl get pods -o wide                       # the worker runs as a local process on the process node

  curl -s {base}/api/v1/connectors | python3 -m json.tool
  curl -s {base}/api/v1/connectors/demo | python3 -m json.tool
  curl -s -X POST {base}/api/v1/connector/command/demo -H 'Content-Type: application/json' \\
       -d '{{"command": "Stop"}}'               # Start, Restart, ReIntialize, Delete, ForceDelete

Logs: {work / "logs"} (operator, api), worker logs under {node.workdir / "pods"}.
Press Ctrl-C to stop everything.
"""
