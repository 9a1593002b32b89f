"""Names and labels of a Connector's children, in one place (builders, handlers, tests and RBAC agree on them).

Child names must stay valid when the connector id is a full 63-character label: a StatefulSet's pods carry a
``controller-revision-hash`` label ``<statefulset>-<hash>`` that must itself be a label (≤ 63), so the StatefulSet
name is kept to 52 characters by shortening the id and appending a digest of it.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "ANNOTATION_COMMAND",
    "ANNOTATION_CONFIG_HASH",
    "ANNOTATION_FORCE_DELETE",
    "ANNOTATION_RUN_ID",
    "FINALIZER",
    "LABEL_CONNECTOR",
    "child_labels",
    "config_secret_name",
    "role_name",
    "service_account_name",
    "statefulset_name",
    "worker_pod_name",
]

FINALIZER = "sluice.dev/cleanup"
LABEL_CONNECTOR = "sluice.dev/connector"
ANNOTATION_COMMAND = "sluice.dev/command"
ANNOTATION_FORCE_DELETE = "sluice.dev/force-delete"
ANNOTATION_CONFIG_HASH = "sluice.dev/config-hash"
ANNOTATION_RUN_ID = "sluice.dev/run-id"


def _bounded(connector: str, suffix: str, limit: int) -> str:
    name = f"{connector}-{suffix}"
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(connector.encode()).hexdigest()[:8]
    keep = limit - len(suffix) - len(digest) - 2
    return f"{connector[:keep].rstrip('-')}-{digest}-{suffix}"


def statefulset_name(connector: str) -> str:
    return _bounded(connector, "worker", 52)


def worker_pod_name(connector: str) -> str:
    return f"{statefulset_name(connector)}-0"


def config_secret_name(connector: str) -> str:
    return _bounded(connector, "worker-config", 253)


def service_account_name(connector: str) -> str:
    return _bounded(connector, "worker", 253)


def role_name(connector: str) -> str:
    return _bounded(connector, "worker", 253)


def child_labels(connector: str) -> dict[str, str]:
    """Labels on every child; ``sluice.dev/connector`` holds the id only when it fits a label value (≤ 63)."""
    return {
        "app.kubernetes.io/name": "sluice-worker",
        "app.kubernetes.io/part-of": "sluice",
        "app.kubernetes.io/managed-by": "sluice-operator",
        LABEL_CONNECTOR: connector,
    }
