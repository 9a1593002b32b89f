"""Create, replace, read, patch, command and delete connectors: Connector resources plus their credentials Secret.

Ordering is what keeps "nothing half-created":

- create: Connector first (it must exist to own the Secret), then the Secret with an ownerReference to the
  Connector's uid; if the Secret cannot be written the Connector is deleted again.
- replace/patch: the Secret is written first (new and kept keys only), then the Connector is replaced with the
  resourceVersion that was read (409 on a concurrent change); if that fails the Secret's previous content is
  put back. A Secret no longer referenced is deleted last.
- delete: only the Connector is deleted. The operator's finalizer still needs the credentials to drop the
  replication slot, and the garbage collector removes the Secret once the Connector is gone.

One-shot commands (``Restart``, ``ReIntialize``) are recorded on the resource as annotations
(``sluice.dev/command``, ``sluice.dev/command-id``, ``sluice.dev/command-requested-at``) so the operator acts on
them and removes them, the way Strimzi's ``strimzi.io/restart`` works. ``Stop``/``Start`` set ``spec.disabled``
(true/false) and nothing else: the declarative pause that survives restarts and is visible to GitOps tools (the
worker stops but the replication slot is kept). The operator never writes spec, and refuses a Stop/Start
annotation with a Warning event naming spec.disabled.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from sluice.api.ids import new_connector_id
from sluice.api.merge_patch import merge_patch, reconcile_secret_siblings
from sluice.api.secrets import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    check_no_placeholders,
    connector_view,
    referenced_keys,
    secret_labels,
    secret_name,
)
from sluice.api.validation import config_error
from sluice.errors import ConfigError, ConflictError, ErrorDetail, ImmutableFieldError, NotFoundError, SluiceError
from sluice.k8s import API_VERSION, KIND, Kube, OwnerRef, StoredSecret
from sluice.kinds import unavailable_error, unavailable_kinds
from sluice.models import Connector, ConnectorBody, secret_access
from sluice.models.identity import Immutable, identity_changes
from sluice.models.resource import connector_to_resource
from sluice.models.secrets import extract_secrets
from sluice.models.status import CommandName, ConnectorStatus, ConnectorStatusView, HistoryEvent, StatusEvent

__all__ = [
    "COMMAND_ANNOTATION",
    "COMMAND_ID_ANNOTATION",
    "COMMAND_TIME_ANNOTATION",
    "FORCE_DELETE_ANNOTATION",
    "ConnectorService",
    "SecretCheck",
    "envelope",
]

log = logging.getLogger(__name__)

COMMAND_ANNOTATION = "sluice.dev/command"
COMMAND_ID_ANNOTATION = "sluice.dev/command-id"
COMMAND_TIME_ANNOTATION = "sluice.dev/command-requested-at"
FORCE_DELETE_ANNOTATION = "sluice.dev/force-delete"
CR_LABELS = {MANAGED_BY_LABEL: MANAGED_BY}

#: ``check(namespace, secret_name)``: raises (403) unless the caller may read that Secret. The routes pass
#: ``Authorizer.may_read_secret`` bound to the request's Authorization header; None skips it (no-auth mode).
SecretCheck = Callable[[str, str], None]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(cr: dict[str, Any]) -> dict[str, Any]:
    """``{connector, status, run_id, created_at}`` for one CR; never contains a secret value."""
    raw_status = cr.get("status") or {}
    try:
        status = ConnectorStatus.model_validate(raw_status) if raw_status else None
        view = ConnectorStatusView.of(status).model_dump(mode="json", exclude_none=True)
    except (ValidationError, ValueError):
        status, view = None, {}
    run_id = status.run_id if status is not None else raw_status.get("run_id")
    return {
        "connector": connector_view(cr),
        "status": view,
        "run_id": run_id if isinstance(run_id, str) else None,
        "created_at": cr.get("metadata", {}).get("creationTimestamp"),
    }


def _parse_body(body: Any, connector_id: str) -> Connector:
    """The request body as a `Connector` named ``connector_id``.

    The body's own ``id`` must be a string (the reference schema requires it; its note suggests ``""`` as the
    placeholder) but its value is ignored. A source or sink kind this version cannot run is refused first
    (`sluice.kinds`), with the same words as ``kubectl apply``.
    """
    if not isinstance(body, dict):
        raise ConfigError(
            "the request body must be a JSON object (a connector)",
            details=[ErrorDetail(loc=["body"], msg=f"expected an object, got {type(body).__name__}")],
        )
    refused = unavailable_kinds(body)
    if refused:
        raise unavailable_error(refused)
    try:
        if not isinstance(body.get("id"), str):
            ConnectorBody.model_validate(body)  # reports the id problem together with any others
        connector = Connector.model_validate({**body, "id": connector_id})
    except ValidationError as exc:
        raise config_error(exc) from exc
    check_no_placeholders(connector)
    return connector


def _immutable_error(problems: list[Immutable], also: list[ErrorDetail] | None = None) -> ImmutableFieldError:
    """422 ImmutableField: each change is a detail in the words the CRD's transition rules use (same message,
    same fix), so ``kubectl edit`` and the REST API refuse a change alike."""
    fixes = list(dict.fromkeys(p.fix for p in problems))
    return ImmutableFieldError(
        "; ".join(p.message for p in problems),
        fix=" ".join(fixes),
        details=[p.detail() for p in problems] + list(also or []),
    )


def _check_identity(current: dict[str, Any], connector: Connector) -> None:
    """Refuse a change of a stored connector's identity (`sluice.models.identity`)."""
    try:
        old: dict[str, Any] = Connector.model_validate({**current, "id": connector.id}).model_dump(mode="json")
    except ValidationError:
        old = current
    problems = identity_changes(old, connector.model_dump(mode="json"))
    if problems:
        raise _immutable_error(problems)


_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _user_refs(connector: Connector) -> dict[str, list[str]]:
    """Secrets the request's connector references by ``*_secret_ref`` (name → fields), before inline credentials
    move into the API's own Secret: the Secret named ``<id>-credentials`` too, when the caller names it."""
    return secret_access.referenced_secrets(connector.model_dump(mode="json", exclude_none=True))


def _owner(cr: dict[str, Any]) -> OwnerRef:
    meta = cr["metadata"]
    return OwnerRef(api_version=API_VERSION, kind=KIND, name=meta["name"], uid=meta["uid"])


def _stored_refs(cr: dict[str, Any]) -> set[str]:
    return set(secret_access.referenced_secrets(cr.get("spec") or {}))


class SecretNotAllowedError(ConfigError):
    """A connector references a Secret not marked for use by connectors (`sluice.models.secret_access`)."""

    reason = secret_access.REASON


def _is_ours(secret: StoredSecret) -> bool:
    return secret.labels.get(MANAGED_BY_LABEL) == MANAGED_BY


class ConnectorService:
    """Connector operations in terms of Kubernetes objects. Sync: FastAPI runs these in its thread pool."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    # -- reads ------------------------------------------------------------------------------------------------

    def get(self, namespace: str, connector_id: str) -> dict[str, Any]:
        return envelope(self.kube.connectors.get(namespace, connector_id))

    def exists(self, namespace: str, connector_id: str) -> bool:
        try:
            self.kube.connectors.get(namespace, connector_id)
        except NotFoundError:
            return False
        return True

    def list_all(self, namespace: str) -> list[dict[str, Any]]:
        items = self.kube.connectors.list(namespace)
        return [envelope(cr) for cr in sorted(items, key=lambda cr: cr.get("metadata", {}).get("name", ""))]

    def history(self, namespace: str, connector_id: str) -> list[dict[str, Any]]:
        """Status events the operator keeps in ``status.history`` (newest last); ``[]`` until it writes any."""
        cr = self.kube.connectors.get(namespace, connector_id)
        events = (cr.get("status") or {}).get("history") or []
        out: list[dict[str, Any]] = []
        for event in events if isinstance(events, list) else []:
            try:
                stored = StatusEvent.model_validate(event)
                view = ConnectorStatusView.of(ConnectorStatus(state=stored.state, status=stored.status))
                rest = HistoryEvent(
                    id=stored.id,
                    connector_id=connector_id,
                    run_id=stored.run_id,
                    created_at=stored.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    component=stored.component,
                    status=view.status or "start",
                    state=view.state,
                )
                out.append(rest.model_dump(mode="json", exclude_none=True))
            except (ValidationError, ValueError):
                log.debug('skipping a malformed history event of connector "%s/%s"', namespace, connector_id)
        return out

    # -- create -----------------------------------------------------------------------------------------------

    def check_secret_refs(
        self,
        namespace: str,
        connector: Connector,
        check: SecretCheck | None,
        *,
        already: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        """A connector may reference only Secrets its writer may read (``check``: 403) and that are marked for
        connectors (the label of `sluice.models.secret_access`: 422, the operator's words). Secrets in ``already``
        (referenced before this change) are not checked again."""
        refs = {n: f for n, f in _user_refs(connector).items() if n not in already}
        invalid = [
            ErrorDetail(
                loc=[*f.split("."), "name"],
                msg=f"{name!r} is not a valid Secret name (a DNS-1123 subdomain), so no such Secret can exist",
                fix="Name an existing Secret of the connector's namespace: lowercase letters, digits, '-' and '.'.",
            )
            for name, fields in sorted(refs.items())
            if not _SECRET_NAME.fullmatch(name)
            for f in fields
        ]
        if invalid:
            raise ConfigError("a *_secret_ref names no valid Secret", details=invalid)
        for name in sorted(refs):
            if check is not None:
                check(namespace, name)
        problems: list[ErrorDetail] = []
        for name, fields in sorted(refs.items()):
            stored = self._read_secret(namespace, name)
            if stored is None or secret_access.is_usable(stored.labels):
                continue  # a missing Secret is reported by the worker pod (WorkerConfigError), as for kubectl
            msg, fix = secret_access.not_allowed_message(name, fields), secret_access.not_allowed_fix(name)
            problems.extend(ErrorDetail(loc=list(f.split(".")), msg=msg, fix=fix) for f in fields)
        if problems:
            raise SecretNotAllowedError(
                "; ".join(dict.fromkeys(p.msg for p in problems)),
                fix=" ".join(dict.fromkeys(p.fix for p in problems)),
                details=problems,
            )

    def create(
        self,
        namespace: str,
        body: Any,
        connector_id: str | None = None,
        *,
        check_secret: SecretCheck | None = None,
    ) -> dict[str, Any]:
        """Create a connector; with ``connector_id=None`` the id is generated (retried on the rare collision)."""
        attempts = 1 if connector_id else 3
        for attempt in range(attempts):
            cid = connector_id or new_connector_id()
            connector = _parse_body(body, cid)
            if attempt == 0:
                self.check_secret_refs(namespace, connector, check_secret)
            try:
                return self._create(namespace, connector)
            except ConflictError:
                if connector_id or attempt == attempts - 1 or not self.exists(namespace, cid):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _create(self, namespace: str, connector: Connector) -> dict[str, Any]:
        sname = secret_name(connector.id)
        stored, data = extract_secrets(connector, sname)
        resource = connector_to_resource(stored, namespace, labels=CR_LABELS)
        cr = self.kube.connectors.create(namespace, resource)
        if data:
            try:
                self._put_secret(namespace, sname, connector.id, data, owner=_owner(cr), previous=None, adopt=True)
            except SluiceError:
                self._undo_create(namespace, connector.id)
                raise
        log.info('created connector "%s/%s" (%d secret value(s) stored)', namespace, connector.id, len(data))
        return envelope(cr)

    def _undo_create(self, namespace: str, connector_id: str) -> None:
        try:
            self.kube.connectors.delete(namespace, connector_id)
        except NotFoundError:
            pass
        except SluiceError:
            log.exception('could not delete connector "%s/%s" after a failed create', namespace, connector_id)

    # -- replace / patch --------------------------------------------------------------------------------------

    def put(
        self, namespace: str, connector_id: str, body: Any, *, check_secret: SecretCheck | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Create or replace ``connector_id``; returns the envelope and whether it was created."""
        connector = _parse_body(body, connector_id)
        try:
            cr = self.kube.connectors.get(namespace, connector_id)
        except NotFoundError:
            self.check_secret_refs(namespace, connector, check_secret)
            return self._create(namespace, connector), True
        _check_identity(dict(cr.get("spec") or {}), connector)
        self.check_secret_refs(namespace, connector, check_secret, already=_stored_refs(cr))
        return self._write_existing(namespace, cr, connector), False

    def patch(
        self, namespace: str, connector_id: str, patch: Any, *, check_secret: SecretCheck | None = None
    ) -> dict[str, Any]:
        """Apply an RFC 7396 merge patch to the connector; identity fields cannot change."""
        if not isinstance(patch, dict):
            raise ConfigError(
                "a merge patch for a connector must be a JSON object",
                details=[ErrorDetail(loc=["body"], msg=f"expected an object, got {type(patch).__name__}")],
            )
        patch = {k: v for k, v in patch.items() if k != "id"}  # the path names the connector
        cr = self.kube.connectors.get(namespace, connector_id)
        current = dict(cr.get("spec") or {})
        merged = reconcile_secret_siblings(merge_patch(current, patch), patch)
        merged["id"] = connector_id
        refused = unavailable_kinds(merged)
        if refused:
            # A kind change is refused in any case; say both things at once rather than one after the other.
            kind_changes = [p for p in identity_changes(current, merged) if len(p.loc) == 1]
            if kind_changes:
                raise _immutable_error(kind_changes, also=[r.detail() for r in refused])
            raise unavailable_error(refused)
        try:
            connector = Connector.model_validate(merged)
        except ValidationError as exc:
            raise config_error(exc, what="the patched connector") from exc
        check_no_placeholders(connector)
        _check_identity(current, connector)
        self.check_secret_refs(namespace, connector, check_secret, already=_stored_refs(cr))
        return self._write_existing(namespace, cr, connector)

    def _write_existing(self, namespace: str, cr: dict[str, Any], connector: Connector) -> dict[str, Any]:
        sname = secret_name(connector.id)
        stored, inline = extract_secrets(connector, sname)
        previous = self._read_secret(namespace, sname)
        if previous is not None and not _is_ours(previous):
            previous_data: dict[str, str] = {}
            if inline:
                raise self._foreign_secret(namespace, sname)
        else:
            previous_data = previous.data if previous is not None else {}
        keep = referenced_keys(stored, sname) - inline.keys()
        missing = sorted(k for k in keep if k not in previous_data)
        if missing and (previous is None or _is_ours(previous)):
            raise ConfigError(
                f'the connector refers to key(s) {", ".join(missing)} of Secret "{sname}", which it does not hold',
                fix="Send those credentials inline (they will be stored there), or refer to another Secret.",
            )
        data = {k: v for k, v in previous_data.items() if k in keep} | inline
        # A Secret of ours still owned by an earlier connector of the same name would be garbage-collected:
        # rewrite it with this connector as owner even when its data is unchanged.
        owned = previous is not None and _is_ours(previous) and cr["metadata"]["uid"] in previous.owner_uids
        wrote = False
        marked = previous is not None and secret_access.is_usable(previous.labels)
        if data and (not owned or data != previous_data or not marked):
            self._put_secret(namespace, sname, connector.id, data, owner=_owner(cr), previous=previous, adopt=False)
            wrote = True
        body = copy.deepcopy(cr)
        body.pop("status", None)
        body["spec"] = connector_to_resource(stored, namespace)["spec"]
        try:
            out = self.kube.connectors.replace(namespace, body)
        except SluiceError:
            if wrote:
                self._restore_secret(namespace, sname, previous, owner=_owner(cr))
            raise
        if not data and previous is not None and _is_ours(previous):
            with contextlib.suppress(NotFoundError):
                self.kube.secrets.delete(namespace, sname)
        log.info('replaced connector "%s/%s"', namespace, connector.id)
        return envelope(out)

    # -- secrets ----------------------------------------------------------------------------------------------

    def _read_secret(self, namespace: str, name: str) -> StoredSecret | None:
        try:
            return self.kube.secrets.get(namespace, name)
        except NotFoundError:
            return None

    def _foreign_secret(self, namespace: str, name: str) -> ConflictError:
        return ConflictError(
            f'Secret "{name}" in namespace "{namespace}" exists and is not managed by Sluice; '
            "its inline credentials cannot be stored there",
            fix=f'Rename or delete that Secret, or give the credentials as *_secret_ref to "{name}" instead.',
        )

    def _put_secret(
        self,
        namespace: str,
        name: str,
        connector_id: str,
        data: dict[str, str],
        *,
        owner: OwnerRef,
        previous: StoredSecret | None,
        adopt: bool,
    ) -> None:
        """Create the Secret, or replace it when it is ours (``adopt``: one left from an earlier connector of
        the same name that the garbage collector has not removed yet)."""
        # Marked for connectors: the operator runs a worker only with Secrets that carry this label.
        labels = secret_labels(connector_id) | {secret_access.USABLE_LABEL: secret_access.USABLE_VALUE}
        if previous is None:
            try:
                self.kube.secrets.create(namespace, name, data, labels=labels, owner=owner)
                return
            except ConflictError:
                if not adopt:
                    raise
                previous = self.kube.secrets.get(namespace, name)
                if not _is_ours(previous):
                    raise self._foreign_secret(namespace, name) from None
        self.kube.secrets.replace(
            namespace, name, data, labels=labels, owner=owner, resource_version=previous.resource_version
        )

    def _restore_secret(self, namespace: str, name: str, previous: StoredSecret | None, *, owner: OwnerRef) -> None:
        try:
            if previous is None:
                self.kube.secrets.delete(namespace, name)
            elif _is_ours(previous):
                self.kube.secrets.replace(
                    namespace, name, previous.data, labels=previous.labels, owner=owner, resource_version=None
                )
        except SluiceError:
            log.exception('could not restore Secret "%s/%s" after a failed update', namespace, name)

    # -- commands ---------------------------------------------------------------------------------------------

    def command(self, namespace: str, connector_id: str, command: CommandName) -> dict[str, Any]:
        """Record ``command`` on the connector (or delete it); returns what was recorded."""
        command_id = uuid.uuid4().hex
        at = _now()
        annotations = {
            COMMAND_ANNOTATION: command.value,
            COMMAND_ID_ANNOTATION: command_id,
            COMMAND_TIME_ANNOTATION: at,
        }
        result: dict[str, Any] = {
            "id": connector_id,
            "command": command.value,
            "command_id": command_id,
            "requested_at": at,
        }
        if command in (CommandName.DELETE, CommandName.FORCE_DELETE):
            if command is CommandName.FORCE_DELETE:
                annotations[FORCE_DELETE_ANNOTATION] = "true"
                self.kube.connectors.merge_patch(namespace, connector_id, {"metadata": {"annotations": annotations}})
            self.kube.connectors.delete(namespace, connector_id)
            log.info('%s: connector "%s/%s" deleted', command.value, namespace, connector_id)
            return result | {"deleted": True}
        patch: dict[str, Any]
        if command in (CommandName.STOP, CommandName.START):
            # Declarative: the API writes spec.disabled on the caller's behalf; the operator never writes spec and
            # takes only one-shot commands from the annotation.
            patch = {"spec": {"disabled": command is CommandName.STOP}}
        else:
            patch = {"metadata": {"annotations": annotations}}
        cr = self.kube.connectors.merge_patch(namespace, connector_id, patch)
        log.info('%s recorded on connector "%s/%s"', command.value, namespace, connector_id)
        return result | {"connector": envelope(cr)}

    def delete(self, namespace: str, connector_id: str) -> None:
        self.kube.connectors.delete(namespace, connector_id)
        log.info('connector "%s/%s" deleted', namespace, connector_id)
