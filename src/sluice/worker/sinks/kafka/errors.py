"""Kafka errors as Sluice errors, by error code (``KafkaError.code()``), never by message text.

=============================================== ================== ==========================================
codes                                            class              fix names
=============================================== ================== ==========================================
``_AUTHENTICATION``, ``SASL_AUTHENTICATION_FAILED`` ConfigError     auth.username / password / mechanism
``_SSL``                                         ConfigError        auth.ssl_ca_pem / protocol
``*_AUTHORIZATION_FAILED``                       ConfigError        the ACLs the user needs
``_FENCED``, ``PRODUCER_FENCED``,
``INVALID_PRODUCER_EPOCH``                       ConflictError      another worker with the transactional id
``MSG_SIZE_TOO_LARGE``, ``RECORD_LIST_TOO_LARGE``  ReplicationError  topic max.message.bytes / batch_size
``INVALID_REPLICATION_FACTOR``,
``INVALID_PARTITIONS``, ``POLICY_VIOLATION``     ConfigError        topic_options
``INVALID_TRANSACTION_TIMEOUT``                  ConfigError        transactions.timeout_ms
broker down, timeouts, leader moves, any
error the client marks retriable                  TransientError     (retried within the retry window)
=============================================== ================== ==========================================
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from sluice.errors import ConfigError, ConflictError, ReplicationError, SluiceError, TransientError

__all__ = ["KafkaSinkError", "classify", "classify_error"]

_AUTH = "sink.kafka.connection.auth"
_TOPICS = "sink.kafka.topic_options"

_TRANSIENT = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.CONCURRENT_TRANSACTIONS,
    KafkaError.TRANSACTION_ABORTABLE,
    KafkaError._PURGE_QUEUE,
    KafkaError._PURGE_INFLIGHT,
}


class KafkaSinkError(Exception):
    """A failure the sink noticed itself (a delivery report, a flush that did not finish), with its Kafka error."""

    def __init__(self, error: KafkaError, what: str) -> None:
        super().__init__(f"{what}: {error.str()}")
        self.error = error
        self.what = what


def classify_error(err: KafkaError, what: str = "Kafka") -> SluiceError:
    """One Kafka error (with what the sink was doing) as a Sluice error with its fix."""
    code = err.code()
    text = f"{what}: {err.name()}: {err.str()}"
    if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        return ConfigError(
            text,
            fix=f"Check {_AUTH}.username and password (or password_secret_ref) and that {_AUTH}.mechanism is one "
            "the brokers enable for this user (SCRAM users are per mechanism).",
        )
    if code == KafkaError._SSL:
        return ConfigError(
            text,
            fix=f"Check {_AUTH}.protocol matches the brokers' listener and that {_AUTH}.ssl_ca_pem holds the CA "
            "that signed the brokers' certificates (and the client certificate/key for mutual TLS).",
        )
    if code in (
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
    ):
        return ConfigError(
            text,
            fix="Grant the Kafka user ACLs for: Write and Describe on the connector's topics and the "
            "__sluice_checkpoints.* topics, Create on the cluster (or create the topics yourself), Read on "
            "__sluice_checkpoints.*, and Write/Describe on the transactional id when transactions are enabled.",
        )
    if code in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH):
        return ConflictError(
            text,
            fix="Another producer took over this connector's transactional_id (a second worker, or another "
            "connector with the same sink.kafka.connection.config.transactions.transactional_id): give each "
            "connector its own transactional_id; this worker stops so the newer one can continue.",
        )
    if code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE):
        return ReplicationError(
            text,
            fix="Raise the topic's max.message.bytes (and the broker's message.max.bytes), or lower "
            "sink.kafka.connection.config.batch_size.",
        )
    if code in (KafkaError.INVALID_REPLICATION_FACTOR, KafkaError.INVALID_PARTITIONS, KafkaError.POLICY_VIOLATION):
        return ConfigError(
            text,
            fix=f"Choose {_TOPICS}.partitions and replication_factor the cluster accepts (replication_factor at "
            "most the number of brokers), or create the topics yourself.",
        )
    if code == KafkaError.INVALID_TRANSACTION_TIMEOUT:
        return ConfigError(
            text,
            fix="Set sink.kafka.connection.config.transactions.timeout_ms at most the brokers' "
            "transaction.max.timeout.ms (15 minutes by default).",
        )
    if code in _TRANSIENT or err.retriable():
        return TransientError(
            text,
            fix="Check that the brokers in sink.kafka.connection.brokers are running and reachable from the "
            "worker; the connector resumes from its last committed checkpoint once they are.",
        )
    if err.fatal():
        return ReplicationError(text, fix="The Kafka producer cannot continue; see the worker log. It restarts.")
    return ReplicationError(text, fix="See the worker log for the Kafka request that failed.")


def classify(exc: BaseException) -> SluiceError | None:
    """Errors raised by the Kafka client or by this sink; None for anything else."""
    if isinstance(exc, KafkaSinkError):
        return classify_error(exc.error, exc.what)
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return classify_error(exc.args[0])
    return None
