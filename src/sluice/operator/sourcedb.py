"""What the operator asks of a connector's databases while no worker runs — through the worker's Source/Sink code.

The operator runs no SQL of its own: it resolves the Connector's secrets, builds the same
:class:`~sluice.worker.sources.base.Source` and :class:`~sluice.worker.sinks.base.Sink` the worker would
(:mod:`sluice.worker.registry`), and asks them: how much log the slot retains (:meth:`Source.retained`, for the
status and the SlotAtRisk condition: every 30 s while the connector is stopped, every 60 s while it runs — one short
connection and one row of ``pg_replication_slots``); in the delete finalizer and for ReIntialize, to drop what
Sluice created (:meth:`Source.cleanup`: the slot, and the publication only when Sluice created it — a user-provided
``publication_name`` is left alone); and for ReIntialize, to forget the progress kept in the sink
(:meth:`Sink.reset`).

Credentials: these jobs need the source password, so the operator resolves ``*_secret_ref`` by reading the Secret
(in memory, for the duration of one call; never logged, stored or put in status). The worker never gets values from
the operator: its pod mounts the Secrets itself.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from sluice.errors import ConfigError, NotFoundError, SluiceError, TransientError
from sluice.k8s.jsonclient import JsonClient, api_path
from sluice.models import Connector, SecretRef
from sluice.models.resource import connector_from_resource
from sluice.models.secrets import resolve_secrets
from sluice.operator.conditions import SlotInfo
from sluice.worker import registry
from sluice.worker.checkpoints.store import ConfigMapCheckpointStore
from sluice.worker.sources.base import Source
from sluice.worker.sources.postgres.slot import slot_name_for

__all__ = ["CleanupResult", "drop_replication_state", "forget_progress", "slot_info", "slot_name"]

log = logging.getLogger(__name__)

JsonObj = dict[str, Any]


@dataclass(frozen=True)
class CleanupResult:
    slot_dropped: bool
    publication_dropped: bool
    publication_kept: str | None


def slot_name(cr: JsonObj) -> str:
    return slot_name_for(cr["metadata"]["name"])


def _resolved(client: JsonClient, cr: JsonObj) -> Connector:
    """The Connector of ``cr`` with its secret references replaced by the Secrets' values (in memory only)."""
    namespace = cr["metadata"]["namespace"]
    connector: Connector = connector_from_resource(cr)

    def lookup(ref: SecretRef) -> str:
        secret = client.get_or_none(api_path("secrets", namespace, ref.name))
        if secret is None:
            raise NotFoundError(f"Secret {ref.name!r} (referenced by the connector) does not exist")
        data = secret.get("data") or {}
        if ref.key not in data:
            raise NotFoundError(f"Secret {ref.name!r} has no key {ref.key!r}")
        return base64.b64decode(data[ref.key]).decode()

    resolved: Connector = resolve_secrets(connector, lookup)
    return resolved


def _source(client: JsonClient, cr: JsonObj) -> Source | None:
    """The connector's Source, or None when this operator has no source class of that kind."""
    connector = _resolved(client, cr)
    try:
        cls = registry.source_class(connector.source.kind)
    except ConfigError:
        return None
    return cls(connector)


def slot_info(client: JsonClient, cr: JsonObj) -> SlotInfo:
    """What the connector's slot retains (``pg_current_wal_lsn() - restart_lsn``, its ``wal_status`` and
    ``safe_wal_size``), never raising."""
    name = slot_name(cr)
    try:
        source = _source(client, cr)
    except SluiceError as exc:
        return SlotInfo(name=name, error=exc.message.splitlines()[0])
    if source is None:
        return SlotInfo(name=name)
    try:
        retained = source.retained()
    finally:
        source.close()
    if retained.error is not None:
        return SlotInfo(name=retained.name, error=retained.error.splitlines()[0])
    if not retained.exists:
        return SlotInfo(name=retained.name, exists=False)
    return SlotInfo(
        name=retained.name,
        exists=True,
        active=retained.active,
        lag_bytes=retained.retained_bytes,
        wal_status=retained.wal_status,
        safe_wal_bytes=retained.safe_wal_bytes,
    )


def drop_replication_state(client: JsonClient, cr: JsonObj) -> CleanupResult:
    """Drop Sluice's slot and (if Sluice created it) its publication. Raises TransientError if unreachable."""
    spec_pg = ((cr.get("spec") or {}).get("source") or {}).get("postgres") or {}
    user_publication = ((spec_pg.get("replication_type") or {}).get("logical_replication") or {}).get(
        "publication_name"
    )
    name = slot_name(cr)
    try:
        source = _source(client, cr)
        if source is None:
            return CleanupResult(False, False, None)
        try:
            # A worker that is still shutting down may hold the slot: its WAL sender is ended first (force).
            dropped = source.cleanup(force=True)
        finally:
            source.close()
    except TransientError:
        raise
    except SluiceError as exc:
        raise TransientError(f"cannot clean up the source: {exc.message}", fix=exc.fix) from exc
    slot_dropped = any(d.startswith("slot ") for d in dropped)
    publication_dropped = any(d.startswith("publication ") for d in dropped)
    log.info(
        "connector %s/%s: slot %s %s, publication %s",
        cr["metadata"]["namespace"],
        cr["metadata"]["name"],
        name,
        "dropped" if slot_dropped else "was absent",
        f"{user_publication} kept (user-provided)"
        if user_publication
        else ("dropped" if publication_dropped else "was absent"),
    )
    return CleanupResult(slot_dropped, publication_dropped, user_publication)


def forget_progress(client: JsonClient, cr: JsonObj) -> None:
    """ReIntialize: drop the slot (and Sluice's publication) and the worker's progress in the sink, so the next
    worker starts from a fresh snapshot. Only called while no worker runs. Raises TransientError if a database
    cannot be reached (the operator retries on its timer)."""
    drop_replication_state(client, cr)
    _reset_sink(client, cr)
    # Sinks without a transaction keep their checkpoint in the worker's ConfigMap (in a pod); the operator is not
    # in a pod of that connector, so the sink's own reset above cannot find it: clear it here.
    ConfigMapCheckpointStore(client, cr["metadata"]["namespace"], cr["metadata"]["name"]).clear()


def _reset_sink(client: JsonClient, cr: JsonObj) -> None:
    """The sink forgets the connector's progress (:meth:`Sink.reset <sluice.worker.sinks.base.Sink.reset>`)."""
    try:
        connector = _resolved(client, cr)
        try:
            cls = registry.sink_class(connector.sink.kind)
        except ConfigError:
            return  # no sink class of that kind here: nothing of ours to reset
        sink = cls(connector)
        try:
            sink.reset()
        finally:
            sink.close()
    except TransientError:
        raise
    except SluiceError as exc:
        raise TransientError(f"cannot reset progress in the sink: {exc.message}", fix=exc.fix) from exc
    except psycopg.Error as exc:  # the PostgreSQL sink lets its driver's errors through unclassified
        raise TransientError(f"cannot reset progress in the sink: {str(exc).strip().splitlines()[0]}") from exc
