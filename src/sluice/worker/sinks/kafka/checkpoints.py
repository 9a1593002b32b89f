"""A connector's progress as records of the compacted topic ``__sluice_checkpoints``, beside its data.

Keys (UTF-8), all starting with the connector id:

============================== ===============================================================================
``<id>``                       the :class:`~sluice.worker.checkpoints.Checkpoint` (JSON)
``<id>#plan``                  the snapshot plan: ``[{"table", "index", "bounds"}]`` (JSON)
``<id>#chunk#<table>#<index>`` ``done``: that chunk's rows are in Kafka (written in the same transaction)
============================== ===============================================================================

A null value (a tombstone) deletes a key: a new plan tombstones the chunk marks of the old one, a reset all keys.
With transactions, the records are produced inside the data's Kafka transaction, so a ``read_committed`` read
(:func:`read_state`) sees exactly the progress whose data is committed. The topic is compacted: only the newest
record of each key is kept for good.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from sluice.worker.checkpoints import Checkpoint
from sluice.worker.sinks.kafka.errors import KafkaSinkError
from sluice.worker.sources.base import SnapshotChunk

__all__ = ["TOPIC_CONFIG", "State", "chunk_key", "plan_key", "read_state"]

#: settings of the checkpoint topic: compacted, with segments rolled often so compaction can keep it small
TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1"}


def plan_key(connector: str) -> str:
    return f"{connector}#plan"


def chunk_key(connector: str, table: str, index: int) -> str:
    return f"{connector}#chunk#{table}#{index}"


@dataclass
class State:
    """What the checkpoint topic holds for one connector."""

    checkpoint: Checkpoint | None = None
    plan: list[dict[str, Any]] = field(default_factory=list)
    done: set[tuple[str, int]] = field(default_factory=set)
    #: every key of this connector with a live (non-tombstone) value
    keys: set[str] = field(default_factory=set)

    def chunks(self) -> list[SnapshotChunk]:
        return [
            SnapshotChunk(
                str(c["table"]), int(c["index"]), dict(c.get("bounds") or {}), (c["table"], c["index"]) in self.done
            )
            for c in self.plan
        ]

    def with_done(self) -> Checkpoint | None:
        if self.checkpoint is None:
            return None
        cp = self.checkpoint
        done = sorted(f"{t}#{i}" for t, i in self.done)
        return Checkpoint(cp.phase, cp.position, cp.snapshot_position, done)


def read_state(settings: dict[str, Any], topic: str, connector: str, timeout: float = 60) -> State:
    """This connector's records from the start of ``topic`` to its end, committed ones only."""
    consumer = Consumer(
        {
            **settings,
            "group.id": f"sluice-checkpoint-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    state = State()
    prefix = connector + "#"
    try:
        try:
            md = consumer.list_topics(topic, timeout=timeout)
        except KafkaException as exc:
            raise KafkaSinkError(exc.args[0], "reading the checkpoint topic") from exc
        meta = md.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return state
        parts = [TopicPartition(topic, p, 0) for p in sorted(meta.partitions)]
        consumer.assign(parts)
        pending = {p.partition for p in parts}
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise KafkaSinkError(
                    KafkaError(KafkaError._TIMED_OUT, f"not at the end of {topic} after {timeout:.0f}s"),
                    "reading the checkpoint topic",
                )
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition() or 0)
                    continue
                raise KafkaSinkError(err, "reading the checkpoint topic")
            pending.add(msg.partition() or 0)
            raw = msg.key()
            if raw is None:
                continue
            key = raw.decode("utf-8", "replace")
            if key != connector and not key.startswith(prefix):
                continue
            _apply(state, connector, key, msg.value())
    finally:
        consumer.close()
    return state


def _apply(state: State, connector: str, key: str, value: bytes | None) -> None:
    if value is None:
        state.keys.discard(key)
    else:
        state.keys.add(key)
    if key == connector:
        state.checkpoint = None if value is None else Checkpoint.from_json(value.decode())
    elif key == plan_key(connector):
        state.plan = [] if value is None else list(json.loads(value))
    elif key.startswith(f"{connector}#chunk#"):
        table, _, index = key[len(f"{connector}#chunk#") :].rpartition("#")
        if value is None:
            state.done.discard((table, int(index)))
        else:
            state.done.add((table, int(index)))
