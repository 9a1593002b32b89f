"""The only SQL the operator runs on a source: how far behind the slot is, and dropping what Sluice created.

Kept apart from the handlers (reconcile logic never builds SQL). The worker owns replication; the operator touches
the source only when no worker runs: to say how much WAL a disabled connector's slot retains, and, in the delete
finalizer, to drop the slot (always Sluice's: ``sluice_<id>``) and the publication — only when Sluice created it
(``publication_name`` unset in the spec); a user-provided publication is left alone.

Credentials: these two jobs need the source password, so the operator resolves ``*_secret_ref`` by reading the
Secret (in memory, for the duration of one connection; never logged, stored or put in status). The worker never
gets values from the operator: its pod mounts the Secrets itself.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Any

import psycopg

from sluice.errors import ConfigError, NotFoundError, TransientError
from sluice.k8s.jsonclient import JsonClient, api_path
from sluice.models import Connector, SecretRef
from sluice.models.resource import connector_from_resource
from sluice.models.secrets import resolve_secrets
from sluice.operator.conditions import SlotInfo
from sluice.worker.cleanup import drop_on
from sluice.worker.sinks.postgres.state import StateStore
from sluice.worker.sources.postgres.connection import conninfo_kwargs
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


def _connect_kwargs(client: JsonClient, cr: JsonObj, part: str = "source") -> dict[str, Any] | None:
    """libpq kwargs for a postgres source (or sink, ``part="sink"``), or None for other kinds."""
    namespace = cr["metadata"]["namespace"]
    connector: Connector = connector_from_resource(cr)
    if getattr(connector, part).kind != "postgres":
        return None

    def lookup(ref: SecretRef) -> str:
        secret = client.get_or_none(api_path("secrets", namespace, ref.name))
        if secret is None:
            raise NotFoundError(f"Secret {ref.name!r} (referenced by the connector) does not exist")
        data = secret.get("data") or {}
        if ref.key not in data:
            raise NotFoundError(f"Secret {ref.name!r} has no key {ref.key!r}")
        return base64.b64decode(data[ref.key]).decode()

    resolved = resolve_secrets(connector, lookup)
    kwargs = conninfo_kwargs(getattr(resolved, part).config.connection, application_name="sluice-operator")
    kwargs["connect_timeout"] = 5
    return kwargs


def _connect(client: JsonClient, cr: JsonObj) -> psycopg.Connection[Any] | None:
    kwargs = _connect_kwargs(client, cr)
    if kwargs is None:
        return None
    try:
        return psycopg.connect(**kwargs, autocommit=True)
    except psycopg.Error as exc:
        raise TransientError(f"cannot connect to the source: {str(exc).strip().splitlines()[0]}") from exc


def slot_info(client: JsonClient, cr: JsonObj) -> SlotInfo:
    """How far behind the connector's slot is (``pg_current_wal_lsn() - restart_lsn``), never raising."""
    name = slot_name(cr)
    try:
        conn = _connect(client, cr)
        if conn is None:
            return SlotInfo(name=name)
        with conn:
            row = conn.execute(
                "SELECT active, (pg_current_wal_lsn() - restart_lsn)::bigint FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (name,),
            ).fetchone()
    except (TransientError, NotFoundError, ConfigError, psycopg.Error) as exc:
        return SlotInfo(name=name, error=str(exc).splitlines()[0])
    if row is None:
        return SlotInfo(name=name, exists=False)
    return SlotInfo(name=name, exists=True, active=bool(row[0]), lag_bytes=int(row[1] or 0))


def drop_replication_state(client: JsonClient, cr: JsonObj) -> CleanupResult:
    """Drop Sluice's slot and (if Sluice created it) its publication. Raises TransientError if unreachable."""
    spec_pg = ((cr.get("spec") or {}).get("source") or {}).get("postgres") or {}
    user_publication = ((spec_pg.get("replication_type") or {}).get("logical_replication") or {}).get(
        "publication_name"
    )
    name = slot_name(cr)
    try:
        conn = _connect(client, cr)
    except (NotFoundError, ConfigError) as exc:
        raise TransientError(f"cannot clean up the source: {exc}") from exc
    if conn is None:
        return CleanupResult(False, False, None)
    with conn:
        # A worker that is still shutting down may hold the slot: its WAL sender is ended first (force).
        dropped = drop_on(conn, connector_id=cr["metadata"]["name"], own_publication=not user_publication, force=True)
    slot_dropped = f"slot {name}" in dropped
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
    try:
        kwargs = _connect_kwargs(client, cr, "sink")
    except (NotFoundError, ConfigError) as exc:
        raise TransientError(f"cannot reach the sink to reset progress: {exc}") from exc
    if kwargs is None:
        return
    kwargs["connect_timeout"] = 5
    try:
        with psycopg.connect(**kwargs, autocommit=True) as conn:
            store = StateStore(cr["metadata"]["name"])
            store.ensure(conn)
            store.clear(conn)
    except psycopg.Error as exc:
        raise TransientError(f"cannot reset progress in the sink: {str(exc).strip().splitlines()[0]}") from exc
