"""The Kafka sink: change events into Apache Kafka topics, exactly once with Kafka transactions.

- :mod:`.settings`: the connector's ``sink.kafka`` as librdkafka settings (auth, TLS, producer), refusals by field;
- :mod:`.topics`: topic names from ``topic_name_template``, creation with ``topic_options``;
- :mod:`.checkpoints`: the connector's progress as records of a compacted topic, written in the data's transaction;
- :mod:`.errors`: Kafka errors classified by error code, each with its fix;
- :mod:`.sink`: :class:`~sluice.worker.sinks.kafka.sink.KafkaSink`.
"""
