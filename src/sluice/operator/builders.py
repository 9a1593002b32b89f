"""Pure functions that render a Connector's child objects as plain dicts (golden-file tested).

Nothing here talks to the API, reads the clock or draws random numbers: the same Connector and settings always give
the same objects, so ``tests/unit/test_builders.py`` pins them as YAML and every change to what the operator creates
shows up in review.

Children of a Connector ``<c>`` (all owned by it, so deleting the Connector garbage-collects them):

- Secret ``<c>-worker-config``: the connector body the worker loads (``--config``). A Secret, not a ConfigMap,
  because a CR written by hand may hold inline credentials. ``*_secret_ref`` values are *not* copied into it:
  the referenced keys are projected into the pod at ``/var/run/secrets/sluice/<secret>/<key>`` (where
  ``sluice.worker.config`` reads them), so the operator never reads a credential, and files keep values out of
  the process environment.
- ServiceAccount + Role + RoleBinding ``<c>-worker``: the Role names the one Connector in ``resourceNames``,
  so a worker can read its own spec and patch its own status, and keep its checkpoint in the ConfigMap
  ``<c>-checkpoint`` (sinks without a transaction of their own); nothing else.
- StatefulSet ``<c>-worker`` with at most one replica, running ``sluice worker``. Its root filesystem is
  read-only; the one writable place is the ``spill`` emptyDir at ``/var/spill/sluice`` (``SLUICE_SPILL_DIR`` and
  ``TMPDIR`` point there), where large streamed transactions are spilled.

Why a StatefulSet and not a Deployment: a replication slot tolerates exactly one consumer. A Deployment's rolling
update starts the new pod before the old one is gone, and after a node failure its ReplicaSet creates a replacement
while the old pod may still run on the unreachable node. A StatefulSet pod has a stable identity (``<c>-worker-0``)
and the controller never creates a pod with that name until the previous one is confirmed deleted — by its kubelet,
or by an administrator who force-deletes it after fencing the node. ``podManagementPolicy: OrderedReady`` keeps
that one-at-a-time discipline for every operation (scale, update, replace), and the ``RollingUpdate`` strategy
with one replica deletes the old pod, waits until it is gone, then creates the new one. The slot being "active"
in PostgreSQL is a last line of defence, not the mechanism.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from sluice.models.resource import API_VERSION, KIND
from sluice.operator import naming
from sluice.worker.checkpoints.store import checkpoint_configmap_name

__all__ = [
    "CONFIG_KEY",
    "CONFIG_MOUNT",
    "SECRETS_MOUNT",
    "SPILL_MOUNT",
    "SPILL_SIZE_LIMIT",
    "WorkerSettings",
    "config_hash",
    "config_secret",
    "owner_reference",
    "probes",
    "role",
    "role_binding",
    "secret_refs",
    "service_account",
    "statefulset",
    "worker_config",
]

JsonObj = dict[str, Any]

CONFIG_KEY = "connector.yaml"
CONFIG_MOUNT = "/etc/sluice"
SECRETS_MOUNT = "/var/run/secrets/sluice"
#: Where the ``spill`` emptyDir is mounted in the worker: the only writable directory under a read-only root.
SPILL_MOUNT = "/var/spill/sluice"
#: Default ``sizeLimit`` of the spill volume: room for the largest streamed transactions in flight (each is spilled
#: whole until its commit). The kubelet evicts a pod whose emptyDir grows past it.
SPILL_SIZE_LIMIT = "10Gi"


@dataclass(frozen=True)
class WorkerSettings:
    """How worker pods are run; set from the operator's command line."""

    image: str = "sluice:dev"
    """Container image holding the ``sluice`` command."""
    command: tuple[str, ...] = ("sluice",)
    """Entry point; ``args`` are ``worker --config ...``."""
    metrics_port: int = 9102
    """Port of the worker's Prometheus endpoint (``SLUICE_METRICS_PORT``), which also serves the health endpoints
    the pod's probes ask; 0 turns both off (no probes are rendered then)."""
    termination_grace_seconds: int = 30
    """Time the worker gets after SIGTERM to flush its batch and confirm its position."""
    log_format: str = "json"
    """``SLUICE_LOG_FORMAT`` of the worker."""
    resources: JsonObj = field(
        default_factory=lambda: {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    )
    """Container resources."""
    extra_env: tuple[tuple[str, str], ...] = ()
    """Additional plain env vars for every worker (name, value)."""
    spill_size_limit: str = SPILL_SIZE_LIMIT
    """``sizeLimit`` of the worker's ``spill`` emptyDir (a Kubernetes quantity)."""


def _meta(cr: JsonObj) -> tuple[str, str]:
    return cr["metadata"]["name"], cr["metadata"]["namespace"]


def owner_reference(cr: JsonObj) -> JsonObj:
    """Controller reference to the Connector: garbage collection and adoption hang on it."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": cr["metadata"]["name"],
        "uid": cr["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _child_meta(cr: JsonObj, name: str) -> JsonObj:
    connector, namespace = _meta(cr)
    return {
        "name": name,
        "namespace": namespace,
        "labels": naming.child_labels(connector),
        "ownerReferences": [owner_reference(cr)],
    }


def _walk_refs(obj: Any) -> Iterator[tuple[str, str]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key.endswith("_secret_ref") and isinstance(value, dict) and "name" in value and "key" in value:
                yield str(value["name"]), str(value["key"])
            else:
                yield from _walk_refs(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _walk_refs(item)


def secret_refs(cr: JsonObj) -> list[tuple[str, str]]:
    """Every (Secret name, key) the connector's spec references, sorted and unique."""
    return sorted(set(_walk_refs(cr.get("spec") or {})))


def worker_config(cr: JsonObj) -> JsonObj:
    """The connector body the worker loads: the spec with ``id`` = the resource name.

    ``disabled`` and ``schedule`` are the operator's business (it scales the worker), so they are left out;
    everything else is passed through unchanged, in the order the user wrote it.
    """
    connector, _ = _meta(cr)
    spec = {k: v for k, v in (cr.get("spec") or {}).items() if k not in ("id", "disabled", "schedule")}
    return {"id": connector, **spec}


def config_secret(cr: JsonObj) -> JsonObj:
    connector, _ = _meta(cr)
    body = yaml.safe_dump(worker_config(cr), sort_keys=False, default_flow_style=False)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _child_meta(cr, naming.config_secret_name(connector)),
        "type": "Opaque",
        "stringData": {CONFIG_KEY: body},
    }


def config_hash(cr: JsonObj, settings: WorkerSettings) -> str:
    """Digest of everything a worker reads at start; a new value in the pod template rolls the pod.

    Values of referenced Secrets are not part of it (the operator does not read them): after rotating a password,
    use the Restart command.
    """
    material = {
        "config": worker_config(cr),
        "refs": secret_refs(cr),
        "image": settings.image,
        "command": list(settings.command),
        "env": list(settings.extra_env),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def service_account(cr: JsonObj) -> JsonObj:
    connector, _ = _meta(cr)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _child_meta(cr, naming.service_account_name(connector)),
    }


def role(cr: JsonObj) -> JsonObj:
    """Least privilege for one worker: its own Connector and its own checkpoint ConfigMap, by name; the one
    exception is ``create`` on configmaps, which Kubernetes cannot limit by name."""
    connector, _ = _meta(cr)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _child_meta(cr, naming.role_name(connector)),
        "rules": [
            # Read its own spec (the worker re-reads it to compare generations).
            {"apiGroups": ["sluice.dev"], "resources": ["connectors"], "resourceNames": [connector], "verbs": ["get"]},
            # Write its own progress into the status subresource.
            {
                "apiGroups": ["sluice.dev"],
                "resources": ["connectors/status"],
                "resourceNames": [connector],
                "verbs": ["get", "patch"],
            },
            # Create its checkpoint ConfigMap (sinks without a transaction keep their position there). A create
            # cannot be limited by resourceNames: the name is in the body, unknown when the request is authorized.
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
            # Read and replace its own checkpoint ConfigMap, by name (clearing it is an update, not a delete).
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [checkpoint_configmap_name(connector)],
                "verbs": ["get", "update"],
            },
        ],
    }


def role_binding(cr: JsonObj) -> JsonObj:
    connector, namespace = _meta(cr)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _child_meta(cr, naming.role_name(connector)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": naming.role_name(connector)},
        "subjects": [
            {"kind": "ServiceAccount", "name": naming.service_account_name(connector), "namespace": namespace}
        ],
    }


def _env(cr: JsonObj, settings: WorkerSettings, run_id: str) -> list[JsonObj]:
    connector, _ = _meta(cr)
    env: list[JsonObj] = [
        {"name": "SLUICE_CONNECTOR_NAME", "value": connector},
        {"name": "SLUICE_CONNECTOR_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "SLUICE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "SLUICE_RUN_ID", "value": run_id},
        {"name": "SLUICE_STATUS_REPORTER", "value": "kubernetes"},
        {"name": "SLUICE_METRICS_PORT", "value": str(settings.metrics_port)},
        {"name": "SLUICE_LOG_FORMAT", "value": settings.log_format},
        {"name": "SLUICE_SECRETS_DIR", "value": SECRETS_MOUNT},
        # Spill files, and any other temporary file, go to the spill volume: the root filesystem is read-only.
        {"name": "SLUICE_SPILL_DIR", "value": SPILL_MOUNT},
        {"name": "TMPDIR", "value": SPILL_MOUNT},
    ]
    if (cr.get("spec") or {}).get("schedule"):
        # One run per tick: the worker waits after "complete" until the operator scales it to 0.
        env.append({"name": "SLUICE_IDLE_AFTER_COMPLETE", "value": "1"})
    env.extend({"name": k, "value": v} for k, v in settings.extra_env)
    return env


def _credentials_volume(cr: JsonObj) -> JsonObj | None:
    """One projected volume with exactly the referenced keys, laid out as ``<secret>/<key>``."""
    by_secret: dict[str, list[str]] = {}
    for name, key in secret_refs(cr):
        by_secret.setdefault(name, []).append(key)
    if not by_secret:
        return None
    sources = [
        {"secret": {"name": name, "items": [{"key": key, "path": f"{name}/{key}"} for key in keys]}}
        for name, keys in sorted(by_secret.items())
    ]
    return {"name": "credentials", "projected": {"sources": sources, "defaultMode": 0o400}}


def probes() -> JsonObj:
    """Startup, liveness and readiness probes on the worker's metrics port (see :mod:`sluice.worker.health`).

    - startup: the HTTP server answers within 2 minutes of the container start (an interpreter on a busy node can
      be slow to import); it gates the others, so liveness needs no initial delay.
    - liveness: ``/healthz`` failing 6 times 10 s apart (or not answering within 10 s: a stopped or deadlocked
      process) restarts the container — a minute, so a node whose CPUs are saturated (a busy test machine, a noisy
      neighbour) slows the answer without getting a healthy worker killed. The worker bounds its own loop's
      silence by phase (an hour before streaming, 5 minutes while streaming), so a long snapshot chunk or a quiet
      source never fails it. The kill gets 10 s, not the pod's grace period: a wedged loop does not flush on
      SIGTERM, and positions advance only once durable, so nothing is lost by not waiting.
    - readiness: ``/readyz``, copying or streaming and not retrying a failure; every 5 s.
    """

    def http(path: str) -> JsonObj:
        return {"httpGet": {"path": path, "port": "metrics"}, "timeoutSeconds": 5}

    return {
        "startupProbe": {**http("/healthz"), "periodSeconds": 2, "failureThreshold": 60},
        "livenessProbe": {
            **http("/healthz"),
            "timeoutSeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
            "terminationGracePeriodSeconds": 10,
        },
        "readinessProbe": {**http("/readyz"), "periodSeconds": 5, "failureThreshold": 3},
    }


def statefulset(
    cr: JsonObj,
    settings: WorkerSettings,
    *,
    replicas: int,
    run_id: str,
) -> JsonObj:
    """The worker StatefulSet. ``replicas`` is 0 (disabled, between scheduled runs) or 1.

    ``run_id`` and the config hash are pod-template annotations: a new run or a changed spec changes the template,
    and the StatefulSet controller replaces the pod (old one fully gone first, see the module docstring).
    """
    if replicas not in (0, 1):
        raise ValueError("a connector has at most one worker")
    connector, _ = _meta(cr)
    name = naming.statefulset_name(connector)
    labels = naming.child_labels(connector)
    selector = {"app.kubernetes.io/name": labels["app.kubernetes.io/name"], naming.LABEL_CONNECTOR: connector}
    container: JsonObj = {
        "name": "worker",
        "image": settings.image,
        "command": list(settings.command),
        "args": ["worker", "--config", f"{CONFIG_MOUNT}/{CONFIG_KEY}"],
        "env": _env(cr, settings, run_id),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "spill", "mountPath": SPILL_MOUNT},
        ],
        "resources": settings.resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    volumes: list[JsonObj] = [
        {"name": "config", "secret": {"secretName": naming.config_secret_name(connector)}},
        {"name": "spill", "emptyDir": {"sizeLimit": settings.spill_size_limit}},
    ]
    credentials = _credentials_volume(cr)
    if credentials is not None:
        volumes.append(credentials)
        container["volumeMounts"].append({"name": "credentials", "mountPath": SECRETS_MOUNT, "readOnly": True})
    if settings.metrics_port:
        container["ports"] = [{"name": "metrics", "containerPort": settings.metrics_port}]
        container.update(probes())
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _child_meta(cr, name),
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            # One pod at a time for every operation: never two workers on one replication slot.
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        naming.ANNOTATION_CONFIG_HASH: config_hash(cr, settings),
                        naming.ANNOTATION_RUN_ID: run_id,
                    },
                },
                "spec": {
                    "serviceAccountName": naming.service_account_name(connector),
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": settings.termination_grace_seconds,
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
