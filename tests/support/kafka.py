"""Kafka fixtures: one real single-node KRaft broker per test session, and helpers to read what landed in it.

Registered in ``tests/conftest.py``; any test may ask for:

- ``kafka`` (session): a :class:`~sluice.devstack.kafka.KafkaInstance` (PLAINTEXT on ``kafka.bootstrap``,
  SASL PLAIN/SCRAM on ``kafka.sasl_bootstrap``, TLS on ``kafka.ssl_bootstrap`` with its CA in ``kafka.ca_pem``).
  A test that stops or restarts it must leave it running.
- :func:`consume_all`: every record of some topics, read with ``isolation.level=read_committed``.

When Kafka is not installed (``make kafka``), tests using the fixture are skipped with the reason — unless ``CI`` is
set, where a missing broker is a broken machine and the tests fail loudly instead.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from sluice.devstack.kafka import KafkaInstance, kafka_available


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_kafka() -> None:
    """Skip (locally) or fail (under CI) when a Kafka broker cannot be started here."""
    ok, reason = kafka_available()
    if ok:
        return
    if _in_ci():
        pytest.fail(f"Kafka is required under CI: {reason}", pytrace=False)
    pytest.skip(f"Kafka not available: {reason}")


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaInstance]:
    require_kafka()
    instance = KafkaInstance(name="kafka", tls=True)
    try:
        instance.start()
        yield instance
    finally:
        instance.destroy()


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def consume_all(
    bootstrap: str,
    topics: Sequence[str],
    *,
    committed_only: bool = True,
    timeout: float = 30,
    at_least: int = 0,
) -> list[Record]:
    """Every record of ``topics`` from the start to the current end (read_committed unless told otherwise).

    Reads until each partition's end offset (the last stable offset under read_committed) is reached and at least
    ``at_least`` records were seen, or ``timeout`` passes (then returns what it has).
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed" if committed_only else "read_uncommitted",
            "enable.partition.eof": True,
            "log_level": 0,
        }
    )
    out: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        md = consumer.list_topics(timeout=10)
        parts = [TopicPartition(t, p, 0) for t in topics if t in md.topics for p in sorted(md.topics[t].partitions)]
        if not parts:
            return out
        consumer.assign(parts)
        eof: set[tuple[str, int]] = set()
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if len(eof) == len(parts) and len(out) >= at_least:
                    break
                continue
            err = msg.error()
            if err is not None:
                if err.code() == err._PARTITION_EOF:
                    eof.add((msg.topic(), msg.partition()))
                    if len(eof) == len(parts) and len(out) >= at_least:
                        break
                continue
            eof.discard((msg.topic(), msg.partition()))
            out.append(
                Record(
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    msg.key(),
                    msg.value(),
                    tuple((h[0], h[1]) for h in (msg.headers() or [])),
                )
            )
    finally:
        consumer.close()
    return out


def topic_config(bootstrap: str, topic: str) -> dict[str, Any]:
    """Partitions, replication factor and selected configs of ``topic``."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    md = admin.list_topics(topic, timeout=10).topics[topic]
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(timeout=10)
    return {
        "partitions": len(md.partitions),
        "replication_factor": len(next(iter(md.partitions.values())).replicas),
        "configs": {k: v.value for k, v in configs.items()},
    }
