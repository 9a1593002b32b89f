"""Change event encoders shared by the sinks that send events as messages (Kafka, webhook).

- :mod:`.debezium`: Debezium's change event envelope, as Kafka Connect's ``JsonConverter`` writes it (with or
  without the embedded schema), so consumers written for Debezium read Sluice's events unchanged;
- :mod:`.native`: Sluice's flat JSON rows.

Both are pure: events (:mod:`sluice.worker.events`) and a transaction context in, JSON-ready dicts out; the
sinks serialize (:func:`dumps`) and send.
"""

from sluice.worker.encoders.debezium import (
    UNAVAILABLE_VALUE,
    DebeziumEncoder,
    Record,
    TxContext,
    dumps,
    dumps_bytes,
)
from sluice.worker.encoders.native import NativeEncoder

__all__ = ["UNAVAILABLE_VALUE", "DebeziumEncoder", "NativeEncoder", "Record", "TxContext", "dumps", "dumps_bytes"]
