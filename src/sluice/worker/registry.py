"""Which class runs each source and sink kind: one line per kind.

Adding a sink is ``sinks/<kind>/``, its model in ``sluice.models``, its name in :mod:`sluice.kinds`, and one line
here. Classes are named by import path and loaded on first use, so a worker imports only the drivers its
connector needs (and the operator, which cleans up through the same classes, only those it meets).
"""

from __future__ import annotations

import importlib
from typing import Any

from sluice.errors import ConfigError
from sluice.models import Connector
from sluice.worker.sinks.base import Sink
from sluice.worker.sources.base import Source

__all__ = ["SINKS", "SOURCES", "sink_class", "sink_for", "source_class", "source_for"]

SOURCES: dict[str, str] = {
    "postgres": "sluice.worker.sources.postgres.source:PostgresSource",
    "mysql": "sluice.worker.sources.mysql.source:MySqlSource",
}
SINKS: dict[str, str] = {
    "postgres": "sluice.worker.sinks.postgres.sink:PostgresSink",
    "kafka": "sluice.worker.sinks.kafka.sink:KafkaSink",
    "webhook": "sluice.worker.sinks.webhook.sink:WebhookSink",
}


def _load(table: dict[str, str], part: str, kind: str) -> Any:
    path = table.get(kind)
    if path is None:
        raise ConfigError(
            f"{part}.{kind} is not available in this worker",
            fix=f"Use one of the available {part}s: {', '.join(sorted(table))}.",
        )
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def source_class(kind: str) -> type[Source]:
    cls: type[Source] = _load(SOURCES, "source", kind)
    return cls


def sink_class(kind: str) -> type[Sink]:
    cls: type[Sink] = _load(SINKS, "sink", kind)
    return cls


def source_for(connector: Connector) -> Source:
    return source_class(connector.source.kind)(connector)


def sink_for(connector: Connector) -> Sink:
    return sink_class(connector.sink.kind)(connector)
