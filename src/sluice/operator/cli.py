"""``sluice operator``: run the kopf operator that turns Connectors into workers.

Safe with two replicas: unless ``--no-leader-election``, each replica first takes a Lease (``leader.py``); only
the leader starts kopf, the other waits. A leader that loses its lease stops and exits 1 (its Deployment restarts
it as a standby).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import threading
import uuid
from pathlib import Path

from sluice.k8s.jsonclient import JsonClient
from sluice.models.quantity import parse_byte_quantity
from sluice.operator.builders import SPILL_SIZE_LIMIT, WorkerSettings

__all__ = ["add_arguments", "run"]

log = logging.getLogger("sluice.operator")

# A Kubernetes quantity as an emptyDir's sizeLimit takes it (plain bytes, decimal or binary suffix). Checked here so a
# typo fails the operator at start-up, not every worker StatefulSet the apiserver would then refuse.
_QUANTITY = re.compile(r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[mkMGTPE]|[KMGTPE]i)?$")


def _quantity(text: str) -> str:
    if not _QUANTITY.match(text):
        raise argparse.ArgumentTypeError(f"not a Kubernetes quantity: {text!r} (e.g. 10Gi, 500M)")
    return text


def _byte_quantity(text: str) -> int:
    try:
        return parse_byte_quantity(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--all-namespaces", action="store_true", help="watch Connectors in every namespace (default)")
    scope.add_argument("--namespace", action="append", default=[], help="watch only this namespace (repeatable)")
    parser.add_argument("--metrics-port", type=int, default=9090, help="Prometheus endpoint port (0: off)")
    parser.add_argument("--health-port", type=int, default=8080, help="liveness endpoint port /healthz (0: off)")
    parser.add_argument("--worker-image", default=os.environ.get("SLUICE_WORKER_IMAGE", "sluice:dev"))
    parser.add_argument("--worker-command", default="sluice", help="entry point of the worker container")
    parser.add_argument("--worker-metrics-port", type=int, default=9102, help="worker metrics port (0: off)")
    parser.add_argument(
        "--worker-spill-size",
        type=_quantity,
        default=SPILL_SIZE_LIMIT,
        help="sizeLimit of each worker's spill emptyDir: room for the large transactions in flight (a quantity)",
    )
    parser.add_argument("--refresh-seconds", type=float, default=10.0, help="status refresh interval")
    parser.add_argument("--lag-threshold-bytes", type=int, default=1 << 30, help="SlotLagHigh threshold")
    parser.add_argument(
        "--wal-budget",
        type=_byte_quantity,
        default=None,
        help="WAL a stopped or lagging connector's slot may retain before SlotAtRisk, for connectors without "
        "spec.wal_budget (a quantity such as 10Gi; default: --lag-threshold-bytes)",
    )
    parser.add_argument("--no-leader-election", action="store_true", help="act at once (single replica only)")
    parser.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "sluice-system"))
    parser.add_argument("--lease-name", default="sluice-operator")
    parser.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    import kopf

    from sluice.operator.handlers import build_registry, configure_kopf
    from sluice.operator.leader import LeaseElector
    from sluice.operator.metrics import OperatorMetrics
    from sluice.operator.reconcile import OperatorSettings, Reconciler

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(logging.WARNING)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = str(Path(args.kubeconfig).resolve())
    client = JsonClient(args.kubeconfig)
    settings = OperatorSettings(
        worker=WorkerSettings(
            image=args.worker_image,
            command=(args.worker_command,),
            metrics_port=args.worker_metrics_port,
            spill_size_limit=args.worker_spill_size,
        ),
        refresh_seconds=args.refresh_seconds,
        lag_threshold_bytes=args.lag_threshold_bytes,
        wal_budget_bytes=args.wal_budget,
    )
    metrics = OperatorMetrics()
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    elector = None
    if not args.no_leader_election:
        identity = f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        elector = LeaseElector(client, args.lease_namespace, args.lease_name, identity)
        if not elector.acquire(stop):
            return 0
        lost = elector.lost

        def stop_when_lost() -> None:
            lost.wait()
            stop.set()

        threading.Thread(target=stop_when_lost, daemon=True, name="lease-watch").start()

    reconciler = Reconciler(client, settings, metrics)
    registry = build_registry(reconciler, settings)
    kopf_settings = kopf.OperatorSettings()
    configure_kopf(kopf_settings, settings)
    log.info("operator started (%s)", "all namespaces" if not args.namespace else ", ".join(args.namespace))
    try:
        kopf.run(
            registry=registry,
            settings=kopf_settings,
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None,
            stop_flag=stop,
        )
    finally:
        if elector is not None:
            elector.release()
    if elector is not None and elector.lost.is_set():
        log.error("lost the leader lease; exiting so that a standby takes over")
        return 1
    return 0
