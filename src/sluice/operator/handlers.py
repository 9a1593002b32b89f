"""kopf handlers: thin. Each one names the event, calls the Reconciler (or the cleanup), and maps errors.

- create / update / resume (an operator restart) → one reconcile pass: commands, children, status;
- a timer every ``refresh_seconds`` → the same pass, so status (lag, restarts, stale reports) stays current even
  when nothing about the Connector changes;
- delete → the finalizer ``sluice.dev/cleanup``: stop the worker, drop the slot and the Sluice-created publication,
  then let kopf remove the finalizer; children go with the garbage collector (owner references).
- indexes → one kopf index per kind a pass reads (``children.INDEXED``): the children the operator labels as its
  own, and every Secret's metadata. A pass reads children there, not by GET (``children`` says why); kopf fills
  them before it calls the handlers above, which hand them to the Reconciler as an ``IndexView``.

Error mapping: a retryable ``SluiceError`` (source or apiserver unreachable) is a kopf ``TemporaryError``
(retried after a delay); any other ``SluiceError`` is a ``PermanentError`` for that change — the timer still
refreshes status, so a fixed Secret or source is noticed without a spec edit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf
from pydantic import ValidationError

from sluice.errors import SluiceError, TransientError
from sluice.k8s.jsonclient import KubeError, api_path
from sluice.models.resource import GROUP, PLURAL, VERSION
from sluice.operator import naming, sourcedb
from sluice.operator.children import INDEXED, MANAGED_BY, IndexView, index_entry
from sluice.operator.login import login
from sluice.operator.reconcile import OperatorSettings, Reconciler

__all__ = ["build_registry", "configure_kopf"]

log = logging.getLogger(__name__)


def _mapped(call: Callable[[], None]) -> None:
    try:
        call()
    except SluiceError as exc:
        message = exc.message + (f" Fix: {exc.fix}" if exc.fix else "")
        if exc.retryable:
            raise kopf.TemporaryError(message, delay=10) from exc
        raise kopf.PermanentError(message) from exc


def configure_kopf(settings: kopf.OperatorSettings, operator: OperatorSettings) -> None:
    """kopf's own knobs: our finalizer name, annotations under our domain, no handler-log events."""
    settings.persistence.finalizer = naming.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.sluice.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kopf.sluice.dev")
    settings.posting.enabled = False  # the Reconciler posts meaningful Events itself
    settings.watching.server_timeout = 270
    settings.execution.max_workers = 8
    settings.networking.request_timeout = 30


def build_registry(rec: Reconciler, operator: OperatorSettings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    resource = (GROUP, VERSION, PLURAL)

    # ServiceAccount, else kubeconfig, including a user's tokenFile (kopf alone would ignore it: login.py).
    kopf.on.login(registry=registry)(login)

    _register_indexes(registry)

    def view(kwargs: dict[str, Any]) -> IndexView:
        return IndexView({plural: kwargs[f"{plural}_idx"] for plural in INDEXED}, rec.memo)

    @kopf.on.resume(*resource, registry=registry)
    @kopf.on.create(*resource, registry=registry)
    @kopf.on.update(*resource, registry=registry)
    def changed(*, name: str, namespace: str | None, **kwargs: Any) -> None:
        assert namespace is not None  # Connectors are namespaced
        children = view(kwargs)
        _mapped(lambda: rec.reconcile(namespace, name, children))

    @kopf.timer(*resource, interval=operator.refresh_seconds, sharp=False, registry=registry)
    def refresh(*, name: str, namespace: str | None, **kwargs: Any) -> None:
        assert namespace is not None  # Connectors are namespaced
        children = view(kwargs)
        _mapped(lambda: rec.reconcile(namespace, name, children))

    @kopf.on.delete(*resource, registry=registry)
    def deleted(*, name: str, namespace: str | None, **_: Any) -> None:
        assert namespace is not None  # Connectors are namespaced
        _mapped(lambda: cleanup(rec, namespace, name))

    return registry


def _register_indexes(registry: kopf.OperatorRegistry) -> None:
    """One index per kind in ``children.INDEXED``, keyed ``(namespace, name)``; kopf passes each to the handlers
    as a kwarg named by the index's id (``<plural>_idx``; the default id of a nested function is its qualname)."""
    ours = {"app.kubernetes.io/managed-by": MANAGED_BY}
    rbac = ("rbac.authorization.k8s.io", "v1")

    def entry(plural: str, namespace: str | None, name: str | None, body: Any) -> dict[Any, Any]:
        return {(namespace, name): index_entry(plural, body)}

    @kopf.index("apps", "v1", "statefulsets", labels=ours, id="statefulsets_idx", registry=registry)
    def statefulsets_idx(*, namespace: str | None, name: str | None, body: Any, **_: Any) -> dict[Any, Any]:
        return entry("statefulsets", namespace, name, body)

    @kopf.index("v1", "pods", labels=ours, id="pods_idx", registry=registry)
    def pods_idx(*, namespace: str | None, name: str | None, body: Any, **_: Any) -> dict[Any, Any]:
        return entry("pods", namespace, name, body)

    # every Secret, not only ours: a spec may reference any (only their metadata is kept, see children)
    @kopf.index("v1", "secrets", id="secrets_idx", registry=registry)
    def secrets_idx(*, namespace: str | None, name: str | None, body: Any, **_: Any) -> dict[Any, Any]:
        return entry("secrets", namespace, name, body)

    @kopf.index("v1", "serviceaccounts", labels=ours, id="serviceaccounts_idx", registry=registry)
    def serviceaccounts_idx(*, namespace: str | None, name: str | None, body: Any, **_: Any) -> dict[Any, Any]:
        return entry("serviceaccounts", namespace, name, body)

    @kopf.index(*rbac, "roles", labels=ours, id="roles_idx", registry=registry)
    def roles_idx(*, namespace: str | None, name: str | None, body: Any, **_: Any) -> dict[Any, Any]:
        return entry("roles", namespace, name, body)

    @kopf.index(*rbac, "rolebindings", labels=ours, id="rolebindings_idx", registry=registry)
    def rolebindings_idx(*, namespace: str | None, name: str | None, body: Any, **_: Any) -> dict[Any, Any]:
        return entry("rolebindings", namespace, name, body)


def cleanup(rec: Reconciler, namespace: str, name: str) -> None:
    """The finalizer: worker stopped first (it would recreate the slot), then the slot and publication dropped."""
    client = rec.client
    cr = client.get_or_none(api_path("connectors", namespace, name))
    if cr is None:
        return
    force = (cr["metadata"].get("annotations") or {}).get(naming.ANNOTATION_FORCE_DELETE) == "true"
    try:
        ns = client.get_or_none(api_path("namespaces", name=namespace))
    except KubeError:  # without `get namespaces` rights: assume the namespace stays
        ns = {"metadata": {}}
    if ns is None or ns["metadata"].get("deletionTimestamp"):
        # The namespace is going away: its Secrets (the source credentials) are deleted alongside, so waiting
        # for a reachable source could block the namespace forever. Clean up if possible, never block.
        force = True
    sts_path = api_path("statefulsets", namespace, naming.statefulset_name(name))
    if client.get_or_none(sts_path) is not None:
        client.merge_patch(sts_path, {"spec": {"replicas": 0}})
    pod = client.get_or_none(api_path("pods", namespace, naming.worker_pod_name(name)))
    if pod is not None and not force:
        raise kopf.TemporaryError("waiting for the worker to stop before dropping its slot", delay=2)
    not_allowed = rec.secrets_not_allowed(cr)
    if not_allowed:
        # The credentials are in a Secret not marked for connectors: the operator does not read it.
        slot = sourcedb.slot_name(cr)
        rec.event(
            cr,
            "Warning",
            "CleanupSkipped",
            f"Deleted without cleaning the source: Secret {not_allowed[0][0]} is not labelled "
            f"sluice.dev/usable-by-connectors=true. If a worker ever ran, drop its slot and publication with "
            f"SELECT pg_drop_replication_slot('{slot}'); DROP PUBLICATION IF EXISTS {slot};",
        )
        rec.forget(namespace, name)
        return
    try:
        result = sourcedb.drop_replication_state(client, cr)
    except ValidationError:
        log.warning("connector %s/%s: spec is invalid; nothing to clean up on the source", namespace, name)
        result = None
    except TransientError as exc:
        slot = sourcedb.slot_name(cr)
        if force:
            rec.event(
                cr,
                "Warning",
                "ForceDeleted",
                f"Deleted without cleaning the source ({exc.message}). Replication slot {slot} and publication "
                f"{slot} may remain: drop them with SELECT pg_drop_replication_slot('{slot}'); DROP PUBLICATION "
                f"IF EXISTS {slot};",
            )
            rec.forget(namespace, name)
            return
        rec.event(
            cr,
            "Warning",
            "CleanupBlocked",
            f"Cannot drop replication slot {slot}: {exc.message}. Make the source reachable, or annotate "
            f"the connector with {naming.ANNOTATION_FORCE_DELETE}=true (or send ForceDelete) to delete anyway.",
        )
        raise kopf.TemporaryError(f"source unreachable: {exc.message}", delay=10) from exc
    if result is not None:
        kept = f"; publication {result.publication_kept} kept (user-provided)" if result.publication_kept else ""
        rec.event(
            cr,
            "Normal",
            "CleanedUp",
            f"Replication slot {'dropped' if result.slot_dropped else 'absent'}, "
            f"publication {'dropped' if result.publication_dropped else 'absent'}{kept}.",
        )
    rec.forget(namespace, name)
