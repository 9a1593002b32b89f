"""Where a connector's progress lives, so a restart at any instant neither loses nor repeats a change.

Three places, chosen by what the sink can do (each sink says which through its ``guarantee``):

- **in the sink** (``sinks/postgres``): the position is written in the same sink transaction as the data it
  covers — exactly once;
- **in the sink's log** (a Kafka sink's transactional producer commits data and position together) — exactly once;
- **a store** (:mod:`.store`) for sinks with neither (webhook): the position is saved after the sink
  acknowledged the data, so a crash in between repeats that batch; the sink's idempotency keys make the repeat
  harmless to a receiver that deduplicates — at least once.
"""

from sluice.worker.checkpoints.base import Checkpoint, CheckpointStore

__all__ = ["Checkpoint", "CheckpointStore"]
