"""The engine: one connector's run, whatever its source and sink — phases, retries, stop, status.

It imports no database driver. It builds the connector's :class:`~sluice.worker.sources.base.Source` and
:class:`~sluice.worker.sinks.base.Sink` from the registry and hands them to a pipeline:

- :class:`~sluice.worker.flow.Flow`, the general one: preflight -> snapshot -> stream over the neutral events;
- a fast path when one fits both ends (:mod:`sluice.worker.fastpath`: PostgreSQL -> PostgreSQL moves pgoutput
  tuples straight into COPY lines and pipes binary COPY between the servers). It is an optimisation behind the
  same interfaces, and ``SLUICE_FASTPATH=off`` turns it off (the general flow then runs PG -> PG too).

Retries: a failure whose class is retryable (:class:`~sluice.errors.TransientError`) is retried with back-off
until ``retry_window_seconds`` have passed without progress; anything else stops the run with the error's fix in
the status. A stop request (SIGTERM) ends the run cleanly at a transaction boundary, also while waiting to retry;
the sink hears of it at once (:meth:`~sluice.worker.sinks.base.Sink.stop`), so a wait of its own (a webhook's retry
back-off) does not hold the worker past its grace period.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from sluice.errors import ReplicationError, SluiceError
from sluice.models import Connector
from sluice.worker.config import WorkerSettings, settings_for
from sluice.worker.sinks.base import Sink
from sluice.worker.sources.base import Source
from sluice.worker.status import StatusReporter, WorkerStatus

__all__ = ["DEFAULT_RETRY_WINDOW_SECONDS", "Engine", "Pipeline", "RunContext"]

log = logging.getLogger(__name__)

#: how long transient failures are retried without progress when the source does not say
DEFAULT_RETRY_WINDOW_SECONDS = 300


class Pipeline(Protocol):
    """One attempt at running the connector: returns when stopped or finished, raises on failure."""

    def run(self) -> None: ...


@dataclass
class RunContext:
    """What every pipeline shares with the engine: the connector, its settings, the status and the stop flag."""

    connector: Connector
    settings: WorkerSettings
    status: WorkerStatus
    reporter: StatusReporter
    stop: threading.Event
    #: set by a pipeline whenever it moved data; a failure after progress starts a new retry window
    progress: bool = False
    _last_report: float = field(default=0.0, repr=False)

    def report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_report >= 1.0:
            self._last_report = now
            self.reporter.report(self.status)

    def set_state(self, state: str, status: str = "start") -> None:
        self.status.state = state
        self.status.status = status
        self.report(force=True)


def _retry_window(connector: Connector) -> float:
    """``replication_type.logical_replication.retry_window_seconds`` where the source has it."""
    rt = getattr(connector.source.config, "replication_type", None)
    logical = getattr(rt, "logical_replication", None)
    window = getattr(logical, "retry_window_seconds", None)
    return float(window) if window else float(DEFAULT_RETRY_WINDOW_SECONDS)


def _fastpath_enabled() -> bool:
    return os.environ.get("SLUICE_FASTPATH", "on").lower() not in ("off", "0", "false", "no")


PipelineFactory = Callable[[RunContext, Source, Sink], Pipeline]


@contextmanager
def _relay_stop(stop: threading.Event, hook: Callable[[], None]) -> Iterator[None]:
    """While the block runs, a stop request also calls ``hook`` (once, from a helper thread): the pipeline's thread
    may be blocked inside the sink, where it would see ``stop`` only after the sink's own wait ended."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if stop.wait(0.2):
                try:
                    hook()
                except Exception:
                    log.exception("the sink's stop hook failed")
                return

    thread = threading.Thread(target=watch, name="stop-relay", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=1)


class Engine:
    """Runs one connector until it is stopped, finished (snapshot only) or failed."""

    def __init__(self, connector: Connector, reporter: StatusReporter, stop: threading.Event | None = None) -> None:
        from sluice.worker import registry

        self.connector = connector
        self.stop = stop or threading.Event()
        self.ctx = RunContext(
            connector=connector,
            settings=settings_for(connector),
            status=WorkerStatus(connector=connector.id, run_id=str(uuid.uuid4())),
            reporter=reporter,
            stop=self.stop,
        )
        self.source_class = registry.source_class(connector.source.kind)
        self.sink_class = registry.sink_class(connector.sink.kind)
        # Building the classes' connection parameters can refuse the spec (VerifyCa without a root cert...): let
        # that surface now, before any status says the run started.
        self.source_class(connector).close()
        probe = self.sink_class(connector)
        # The instance's class: a sink may give a different guarantee by configuration (Kafka transactions on/off).
        self.ctx.status.delivery = str(type(probe).guarantee)
        probe.close()

    @property
    def status(self) -> WorkerStatus:
        return self.ctx.status

    def pipeline(self, source: Source, sink: Sink) -> Pipeline:
        """The fast path when one fits both ends (and is not turned off), else the general flow."""
        if _fastpath_enabled():
            from sluice.worker.fastpath import select

            factory = select(source, sink)
            if factory is not None:
                return factory(self.ctx, source, sink)
        from sluice.worker.flow import Flow

        return Flow(self.ctx, source, sink)

    def _run_once(self) -> None:
        source = self.source_class(self.connector)
        self._ends: tuple[Source | Sink, ...] = (source,)
        try:
            sink = self.sink_class(self.connector)
            self._ends = (sink, source)  # the sink recognises its own connections; the source takes the rest
            try:
                with _relay_stop(self.stop, sink.stop):
                    self.pipeline(source, sink).run()
            finally:
                sink.close()
        finally:
            source.close()

    def classify(self, exc: BaseException) -> SluiceError:
        """The driver's own classification (by error code), through whichever end recognises the error."""
        if isinstance(exc, SluiceError):
            return exc
        ends: tuple[Source | Sink, ...] = getattr(self, "_ends", ())
        for end in ends:
            classified = end.classify(exc)
            if classified is not None:
                return classified
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ReplicationError(text, fix="See the worker log for the step that failed.")

    def run(self) -> int:
        """0 when stopped or finished cleanly; raises the final :class:`SluiceError` otherwise."""
        status = self.ctx.status
        window = _retry_window(self.connector)
        first_failure: float | None = None
        attempt = 0
        while True:
            try:
                self.ctx.progress = False
                self._run_once()
                return 0
            except BaseException as raw:
                if isinstance(raw, KeyboardInterrupt | SystemExit):
                    raise
                exc = self.classify(raw)
                if self.ctx.progress:
                    first_failure, attempt = None, 0
                now = time.monotonic()
                first_failure = first_failure or now
                status.last_error = exc.as_dict()
                if exc.retryable and self.stop.is_set():
                    # Stopping while a transient problem was being handled is a clean stop, not a failure.
                    log.info("stopped while handling a transient failure: %s", exc.message)
                    self.ctx.set_state("shutdown", "complete")
                    return 0
                if not exc.retryable or now - first_failure > window:
                    status.status = "failed"
                    self.ctx.report(force=True)
                    if exc.retryable:
                        raise ReplicationError(
                            f"gave up after {attempt + 1} attempts over {int(now - first_failure)}s "
                            f"(retry_window_seconds={int(window)}): {exc.message}",
                            fix=exc.fix
                            or "Check that the source and sink are reachable; the connector resumes where it "
                            "stopped once they are.",
                        ) from raw
                    raise exc from raw
                attempt += 1
                status.status = "retry"
                status.retry_attempt = attempt
                self.ctx.report(force=True)
                delay = min(10.0, 0.5 * (2 ** min(attempt, 5)))
                log.warning("transient failure (attempt %d, retrying in %.1fs): %s", attempt, delay, exc.message)
                if self.stop.wait(delay):
                    self.ctx.set_state("shutdown", "complete")
                    return 0
