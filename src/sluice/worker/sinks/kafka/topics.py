"""Topic names from ``topic_name_template``, and creating the topics that are missing with ``topic_options``.

Placeholders: ``{prefix}`` (the connector id, Debezium's ``topic.prefix``), ``{database_or_schema}`` (the
PostgreSQL schema or the MySQL database), ``{table}``. Characters Kafka does not allow in a topic name
(anything but ``a-zA-Z0-9._-``) become ``_``, as Debezium does.
"""

from __future__ import annotations

import logging
import re
import string
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sluice.errors import ConfigError, ErrorDetail
from sluice.worker.events import TableId
from sluice.worker.sinks.kafka.errors import KafkaSinkError

__all__ = ["CHECKPOINT_TOPIC", "PLACEHOLDERS", "TopicNamer", "checkpoint_topic", "ensure_topics"]

log = logging.getLogger(__name__)

#: the compacted topic holding every connector's checkpoint records, keyed by connector id
CHECKPOINT_TOPIC = "__sluice_checkpoints"


def checkpoint_topic(scope: str) -> str:
    """One compacted checkpoint topic per connector (``scope`` = ``<namespace>.<id>`` in a pod, else the id).

    Not one shared topic: a read_committed consumer stops at the first open transaction in a partition, so a
    connector's open transaction (a snapshot chunk may stay open for minutes) would hide every other connector's
    newer checkpoints and make them resume from stale positions.
    """
    return f"{CHECKPOINT_TOPIC}.{scope}"


PLACEHOLDERS = ("prefix", "database_or_schema", "table")
_INVALID = re.compile(r"[^a-zA-Z0-9._-]")
_FIELD = ["sink", "kafka", "topic_name_template"]


class TopicNamer:
    """``topic_name_template`` checked once, then applied per table."""

    def __init__(self, template: str, prefix: str) -> None:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        unknown = sorted(names - set(PLACEHOLDERS))
        if unknown or not template.strip():
            problem = f"unknown placeholder {{{unknown[0]}}}" if unknown else "empty template"
            fix = "Use only " + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + " in the template."
            raise ConfigError(
                f"sink.kafka.topic_name_template {template!r}: {problem}",
                fix=fix,
                details=[ErrorDetail(list(_FIELD), problem, fix)],
            )
        self.template = template
        self.prefix = prefix

    def topic(self, table: TableId) -> str:
        name = self.template.format(prefix=self.prefix, database_or_schema=table.namespace, table=table.name)
        name = _INVALID.sub("_", name)[:249]
        if name in ("", ".", ".."):
            raise ConfigError(
                f"sink.kafka.topic_name_template gives the invalid topic name {name!r} for {table.label}",
                fix="Use a template that yields letters, digits, '.', '_' or '-'.",
            )
        return name

    @property
    def transaction_topic(self) -> str:
        """Where transaction BEGIN/END events go (Debezium: ``<topic.prefix>.transaction``)."""
        return _INVALID.sub("_", f"{self.prefix}.transaction")


def ensure_topics(
    admin: AdminClient,
    topics: Iterable[str],
    *,
    partitions: int,
    replication_factor: int,
    config: dict[str, str] | None = None,
    timeout: float = 30,
) -> list[str]:
    """Create the topics of ``topics`` that do not exist yet; return those created. Existing topics are left as
    they are (their partitions and settings are the operator's business once created)."""
    wanted = sorted(set(topics))
    if not wanted:
        return []
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise KafkaSinkError(exc.args[0], "listing topics") from exc
    missing = [t for t in wanted if t not in existing]
    if not missing:
        return []
    futures: dict[str, Any] = admin.create_topics(
        [
            NewTopic(t, num_partitions=partitions, replication_factor=replication_factor, config=config or {})
            for t in missing
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(topic)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise KafkaSinkError(err, f"creating topic {topic}") from exc
    if created:
        log.info(
            "created Kafka topics %s (partitions=%d, replication_factor=%d)", created, partitions, replication_factor
        )
    return created
