"""``sluice worker --config FILE [--status-file FILE] [--cleanup | --reset]``: run one connector.

``--cleanup`` and ``--reset`` are one-shot actions through the same Source/Sink code the worker runs (what the
operator's finalizer and ReIntialize do): drop the replication slot and Sluice's publication; with ``--reset`` also
forget the progress stored in the sink.

Exit codes: 0 when stopped by SIGTERM/SIGINT after flushing (or when a snapshot-only run finished), 2 for an
invalid spec, 1 for any other failure. The last status line says why.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import uuid
from types import FrameType
from typing import Any

from sluice.errors import ConfigError, SluiceError

__all__ = ["add_arguments", "run"]

log = logging.getLogger("sluice.worker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="connector spec (YAML or JSON; a body or a Connector resource)")
    parser.add_argument("--status-file", default=None, help="append status JSON lines here instead of stdout")
    once = parser.add_mutually_exclusive_group()
    once.add_argument(
        "--cleanup",
        action="store_true",
        help="one shot: drop what the connector created at its source (replication slot, own publication), then exit",
    )
    once.add_argument(
        "--reset",
        action="store_true",
        help="one shot: --cleanup, and forget the progress kept in the sink, so the next run starts with a snapshot",
    )


def _configure_logging() -> None:
    try:
        from sluice import logs

        logs.configure()
    except Exception:  # pragma: no cover - logging must never stop the worker
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)


def run(args: argparse.Namespace) -> int:
    _configure_logging()
    from sluice.worker.k8s_status import with_kubernetes_reporter
    from sluice.worker.metrics import with_metrics_reporter
    from sluice.worker.status import JsonLinesReporter

    # In a pod the operator sets SLUICE_STATUS_REPORTER=kubernetes: reports also go to the Connector's status.
    reporter = with_metrics_reporter(with_kubernetes_reporter(JsonLinesReporter(args.status_file)))
    try:
        return _run(args, reporter)
    finally:
        close = getattr(reporter, "close", None)
        if close is not None:
            close()  # flush the last report (a failure) before the process exits


def _one_shot(connector: Any, *, reset: bool) -> int:
    """``--cleanup`` / ``--reset``: the same Source and Sink code the worker runs, one action, a JSON line."""
    from sluice.worker import registry

    try:
        source = registry.source_for(connector)
        try:
            dropped = source.cleanup(force=True)
        finally:
            source.close()
        if reset:
            sink = registry.sink_for(connector)
            try:
                sink.reset()
            finally:
                sink.close()
    except SluiceError as exc:
        print(json.dumps(exc.as_dict()), file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except Exception as exc:
        classified = registry.source_for(connector).classify(exc)
        err = classified or SluiceError(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        print(json.dumps(err.as_dict()), file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1
    print(json.dumps({"connector": connector.id, "dropped": dropped, "progress_reset": reset}))
    return 0


def _run(args: argparse.Namespace, reporter: Any) -> int:
    from sluice.worker.status import WorkerStatus

    try:
        from sluice.worker.config import load_connector

        connector = load_connector(args.config)
    except ConfigError as exc:
        status = WorkerStatus(connector="", run_id=str(uuid.uuid4()), status="failed", last_error=exc.as_dict())
        reporter.report(status)
        print(json.dumps(exc.as_dict()), file=sys.stderr)
        return 2
    from sluice import logs

    logs.bind_connector(connector.id)
    if getattr(args, "cleanup", False) or getattr(args, "reset", False):
        return _one_shot(connector, reset=bool(getattr(args, "reset", False)))
    if connector.disabled:
        reporter.report(WorkerStatus(connector=connector.id, run_id=str(uuid.uuid4()), state="disabled"))
        return 0

    from sluice.worker.engine import Engine

    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch, then exiting", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        # Building the connection parameters can already refuse the spec (VerifyCa without ssl_root_cert...).
        engine = Engine(connector, reporter, stop)
    except ConfigError as exc:
        log.error("connector failed: %s (fix: %s)", exc.message, exc.fix)
        reporter.report(
            WorkerStatus(connector=connector.id, run_id=str(uuid.uuid4()), status="failed", last_error=exc.as_dict())
        )
        print(json.dumps(exc.as_dict()), file=sys.stderr)
        return 2
    try:
        code = engine.run()
        if code == 0 and not stop.is_set() and os.environ.get("SLUICE_IDLE_AFTER_COMPLETE") == "1":
            # A scheduled run in a pod: exiting would make the pod restart and run again; the operator scales the
            # worker to 0 once it sees "complete", so wait for that SIGTERM instead.
            log.info("run complete; idling until stopped")
            stop.wait()
        return code
    except SluiceError as exc:
        log.error("connector failed: %s (fix: %s)", exc.message, exc.fix)
        print(json.dumps(exc.as_dict()), file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
