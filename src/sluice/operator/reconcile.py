"""One reconcile pass for one Connector: commands, children, status. Called by the kopf handlers.

The kopf handlers stay thin (see ``handlers.py``); this module holds the sequence and the API calls, the builders
hold what the objects look like, ``conditions`` what the status says, and ``sourcedb`` the only SQL. Every pass
is idempotent and starts from a fresh read of the Connector, so the event handlers and the refresh timer may
call it in any order; a per-object lock keeps two passes for the same Connector from interleaving.

Run ids: the current run id lives in the StatefulSet's pod template (``sluice.dev/run-id``). A new run (Restart,
ReIntialize, each scheduled tick) gets a new id, which changes the template and so replaces the pod.

Reads and writes per pass: the Connector is read fresh (one GET); its children come from the watch cache
(``children.IndexView`` under kopf, ``children.ApiView`` — GETs — otherwise) and are written only when the built
object says something the stored one does not (:func:`_covers`). The status patch holds only fields the operator
owns (``sluice.status_owners``) and is sent only when it changes the stored status; both skips are counted in the
operator's metrics (``sluice_operator_writes_total``).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sluice.errors import ConflictError, SluiceError
from sluice.k8s.jsonclient import JsonClient, KubeError, api_path
from sluice.kinds import unavailable_kinds
from sluice.models import secret_access
from sluice.models.quantity import quantity_value
from sluice.models.resource import API_VERSION, KIND
from sluice.operator import builders, conditions, naming, sourcedb
from sluice.operator.children import ApiView, ChildView, WriteMemo
from sluice.operator.history import next_history
from sluice.operator.metrics import OperatorMetrics
from sluice.operator.schedule import next_run
from sluice.status_owners import changes, operator_violations

__all__ = ["OperatorSettings", "Reconciler", "declarative_command_message"]

log = logging.getLogger(__name__)

JsonObj = dict[str, Any]

COMMAND_ANNOTATIONS = (naming.ANNOTATION_COMMAND, "sluice.dev/command-id", "sluice.dev/command-requested-at")


@dataclass(frozen=True)
class OperatorSettings:
    worker: builders.WorkerSettings = field(default_factory=builders.WorkerSettings)
    """How worker pods are built."""
    refresh_seconds: float = 10.0
    """Interval of the status refresh timer (status is also refreshed on every change)."""
    lag_threshold_bytes: int = 1 << 30
    """Slot lag above which SlotLagHigh turns True."""
    slot_query_seconds: float = 30.0
    """How often the slot of a stopped connector is looked at on the source."""
    slot_query_running_seconds: float = 60.0
    """How often the slot of a running PostgreSQL connector is looked at (status.wal_retained_bytes, SlotAtRisk):
    one short connection per connector and period, so less often than while stopped, when nothing else measures it."""
    wal_budget_bytes: int | None = None
    """WAL budget of connectors without spec.wal_budget (None: lag_threshold_bytes)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _fmt(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    """Everything the operator does to one Connector, given a JSON client with the operator's rights."""

    def __init__(self, client: JsonClient, settings: OperatorSettings, metrics: OperatorMetrics | None = None) -> None:
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._slot_cache: dict[tuple[str, str], tuple[float, conditions.SlotInfo, bool]] = {}
        #: children this operator wrote, until the watch cache has them (see ``children``)
        self.memo = WriteMemo()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    # --- entry points ---------------------------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str, view: ChildView | None = None) -> None:
        """One pass; ``view`` is where children are read (default: GETs, see ``children``)."""
        started = time.monotonic()
        outcome = "ok"
        try:
            with self._lock(namespace, name):
                self._reconcile(namespace, name, view or ApiView(self.client))
        except Exception:
            outcome = "error"
            raise
        finally:
            if self.metrics is not None:
                self.metrics.reconciles.labels(outcome).inc()
                self.metrics.reconcile_seconds.observe(time.monotonic() - started)

    def forget(self, namespace: str, name: str) -> None:
        with self._locks_guard:
            self._locks.pop((namespace, name), None)
        self._slot_cache.pop((namespace, name), None)
        self.memo.forget(
            namespace,
            (
                naming.statefulset_name(name),
                naming.worker_pod_name(name),
                naming.config_secret_name(name),
                naming.service_account_name(name),
                naming.role_name(name),
            ),
        )
        if self.metrics is not None:
            self.metrics.forget(namespace, name)

    # --- the pass -------------------------------------------------------------------------------------------

    def _reconcile(self, namespace: str, name: str, view: ChildView) -> None:
        cr = self.client.get_or_none(api_path("connectors", namespace, name))
        if cr is None or cr["metadata"].get("deletionTimestamp"):
            return
        sts = view.get("statefulsets", namespace, naming.statefulset_name(name))
        template_ann = ((sts or {}).get("spec", {}).get("template", {}).get("metadata", {}) or {}).get(
            "annotations"
        ) or {}
        run_id = template_ann.get(naming.ANNOTATION_RUN_ID) or (cr.get("status") or {}).get("run_id") or _new_run()
        status_extra: JsonObj = {}

        # 1. one-shot commands (REST API or kubectl annotate): Restart, ReIntialize, Delete, ForceDelete. Stop/Start
        # are spec.disabled, never written here (see _command).
        annotations = cr["metadata"].get("annotations") or {}
        command = annotations.get(naming.ANNOTATION_COMMAND)
        if command:
            outcome = self._command(cr, command)
            if outcome == "deleted":
                return
            if outcome == "Restart":
                run_id = _new_run()
                status_extra["run_id"] = run_id
            elif outcome == "ReIntialize":
                # Stop the worker first; progress is dropped once it is gone (below), then a new run starts.
                status_extra["reinitialize"] = {"phase": "stopping", "requested_at": _fmt(_now())}
            cr = self.client.get_or_none(api_path("connectors", namespace, name)) or cr

        spec = cr.get("spec") or {}
        status = cr.get("status") or {}
        next_tick: datetime | None = None
        not_allowed = [] if unavailable_kinds(spec) else self.secrets_not_allowed(cr, view)

        if unavailable_kinds(spec):
            # 2'. a kind this version cannot run (stored before the CRD refused it): no worker at all, so nothing
            # crash-loops; the status says UnsupportedKind with the fix (conditions.derive_status).
            replicas = 0
            self._remove_worker(cr, sts, view)
            if status.get("reinitialize") or status_extra.get("reinitialize"):
                status_extra["reinitialize"] = None  # nothing to reset: no worker ever ran this connector
        elif not_allowed:
            # 2''. a referenced Secret is not marked for connectors (sluice.models.secret_access): no worker, so its
            # values reach no pod; the status says SecretNotAllowed with the fix.
            replicas = 0
            self._apply_children(cr, replicas, run_id, view)
        else:
            # 2. how many workers: 0 when disabled or between scheduled runs
            replicas = 0 if spec.get("disabled") else 1
            if spec.get("schedule") and not spec.get("disabled"):
                replicas, run_id, next_tick = self._schedule(cr, sts, run_id, status_extra)

            # 3. children (a pending ReIntialize keeps the worker stopped until its progress is dropped)
            reinitializing = bool(status.get("reinitialize") or status_extra.get("reinitialize"))
            if reinitializing:
                replicas = 0
            self._apply_children(cr, replicas, run_id, view)
            if reinitializing and self._reinitialize(cr, status_extra, view):
                run_id = _new_run()
                status_extra["run_id"] = run_id
                replicas = 0 if spec.get("disabled") else 1
                self._apply_children(cr, replicas, run_id, view)

        # 4. status
        pod = view.get("pods", namespace, naming.worker_pod_name(name))
        if pod is not None and not _owned_by_statefulset(pod, naming.statefulset_name(name)):
            pod = None
        # The slot is measured while stopped (WalRetained, SlotAtRisk) and, less often, while a PostgreSQL worker
        # runs (SlotAtRisk when it lags): only the source can say how much WAL the slot really holds.
        measure = spec.get("disabled") or (conditions.source_kind(spec) == "postgres" and not unavailable_kinds(spec))
        slot = self._slot(cr, stopped=replicas == 0) if measure and not not_allowed else None
        observed = conditions.Observed(
            cr=cr,
            pod=pod,
            desired_replicas=replicas,
            now=_now(),
            slot=slot,
            next_run=next_tick,
            lag_threshold_bytes=self.settings.lag_threshold_bytes,
            default_wal_budget_bytes=self.settings.wal_budget_bytes,
            secrets_not_allowed=tuple(not_allowed),
        )
        patch = conditions.derive_status(observed)
        patch.update(status_extra)
        if "run_id" not in patch and status.get("run_id") != run_id:
            patch["run_id"] = run_id  # the operator names runs; the worker reports its own under worker.run_id
        if spec.get("disabled") or (replicas == 0 and spec.get("schedule")) or unavailable_kinds(spec) or not_allowed:
            # The worker is not running: what it last reported about its activity is no longer true.
            patch["lag_seconds"] = None
        # One writer per field (sluice.status_owners): while a worker runs, its fields are its own.
        foreign = operator_violations(patch, worker_running=replicas > 0)
        if foreign:
            log.warning("connector %s/%s: not writing worker-owned status fields %s", namespace, name, foreign)
            for key in foreign:
                del patch[key]
        history = next_history(status, patch, _now())
        if history is not None:
            patch["history"] = history
        self._events_for_transitions(cr, status, patch)
        if changes(status, patch):
            self.client.merge_patch(api_path("connectors", namespace, name, "status"), {"status": patch})
            self._count("status", "written")
        else:
            self._count("status", "skipped")  # nothing new: a patch would only cost the apiserver a write
        if self.metrics is not None:
            self.metrics.observe(namespace, name, {**status, **patch})

    # --- secrets --------------------------------------------------------------------------------------------

    def secrets_not_allowed(self, cr: JsonObj, view: ChildView | None = None) -> list[tuple[str, tuple[str, ...]]]:
        """Referenced Secrets that lack the label marking them for connectors: (name, referencing fields).

        Only metadata is looked at; a Secret that does not exist is not listed (the worker pod then reports
        WorkerConfigError naming it). Values are never logged. A credentials Secret the REST API wrote for this very
        Connector before the label existed (managed by sluice-api, owned by this Connector's uid) is allowed too:
        labelling a Secret takes the same right as writing it, so this is no weaker than the label.
        """
        namespace = cr["metadata"]["namespace"]
        view = view or ApiView(self.client)
        out: list[tuple[str, tuple[str, ...]]] = []
        for name, fields in sorted(secret_access.referenced_secrets(cr.get("spec") or {}).items()):
            secret = view.get("secrets", namespace, name)
            if secret is not None and not _usable(secret["metadata"], cr["metadata"]["uid"]):
                out.append((name, tuple(fields)))
        return out

    # --- commands -------------------------------------------------------------------------------------------

    def _command(self, cr: JsonObj, command: str) -> str:
        namespace, name = cr["metadata"]["namespace"], cr["metadata"]["name"]
        path = api_path("connectors", namespace, name)
        clear: JsonObj = {"metadata": {"annotations": dict.fromkeys(COMMAND_ANNOTATIONS)}}
        known = {"Start", "Stop", "Restart", "ReIntialize", "Delete", "ForceDelete"}
        if command not in known:
            self.event(
                cr, "Warning", "UnknownCommand", f"Ignored command {command!r}; use one of {', '.join(sorted(known))}."
            )
            self.client.merge_patch(path, clear)
            return "ignored"
        if command in ("Delete", "ForceDelete"):
            if command == "ForceDelete":
                clear["metadata"]["annotations"][naming.ANNOTATION_FORCE_DELETE] = "true"
            self.client.merge_patch(path, clear)
            self.event(cr, "Normal", "CommandApplied", f"{command}: deleting the connector.")
            self.client.delete(path)
            return "deleted"
        if command in ("Start", "Stop"):
            # The operator never writes spec (GitOps tools would fight it): a pause is declared in spec.disabled,
            # which the REST API's Stop/Start set on the caller's behalf.
            self.client.merge_patch(path, clear)
            self.event(cr, "Warning", "CommandRefused", declarative_command_message(command, name))
            return "ignored"
        self.client.merge_patch(path, clear)
        what = {
            "Restart": "worker restarted with a new run id; progress is kept",
            "ReIntialize": "worker stopped; its slot and progress are dropped, then it snapshots again",
        }[command]
        self.event(cr, "Normal", "CommandApplied", f"{command}: {what}.")
        return command

    # --- schedule -------------------------------------------------------------------------------------------

    def _schedule(
        self, cr: JsonObj, sts: JsonObj | None, run_id: str, status_extra: JsonObj
    ) -> tuple[int, str, datetime | None]:
        """Snapshot runs on a schedule: 1 replica from a tick until the run reports ``complete``, then 0."""
        status = cr.get("status") or {}
        now = _now()
        running = bool((sts or {}).get("spec", {}).get("replicas"))
        due = conditions.parse_time(status.get("next_run_at"))
        if running:
            # "complete" counts when the worker of this very run says so (older workers wrote a top-level run_id).
            reported_run = (status.get("worker") or {}).get("run_id") or status.get("run_id")
            done = status.get("state") == "complete" and reported_run == run_id
            if not done:
                return 1, run_id, due
            nxt = next_run(cr["spec"]["schedule"], now)
            status_extra["next_run_at"] = _fmt(nxt)
            self.event(cr, "Normal", "RunComplete", f"Run {run_id} complete; next run at {_fmt(nxt)}.")
            return 0, run_id, nxt
        if due is None and sts is not None:
            nxt = next_run(cr["spec"]["schedule"], now)
            status_extra["next_run_at"] = _fmt(nxt)
            return 0, run_id, nxt
        if due is None or due <= now:  # first run at creation, then one per tick
            new_id = _new_run()
            status_extra["run_id"] = new_id
            status_extra["next_run_at"] = None
            self.event(cr, "Normal", "RunStarted", f"Scheduled run {new_id} started.")
            return 1, new_id, None
        return 0, run_id, due

    # --- children -------------------------------------------------------------------------------------------

    def _reinitialize(self, cr: JsonObj, status_extra: JsonObj, view: ChildView) -> bool:
        """Drop slot and sink progress once the worker is gone; True when done (a new run may start)."""
        namespace, name = cr["metadata"]["namespace"], cr["metadata"]["name"]
        if view.get("pods", namespace, naming.worker_pod_name(name)) is not None:
            return False
        try:
            sourcedb.forget_progress(self.client, cr)
        except SluiceError as exc:
            status_extra["reinitialize"] = {"phase": "blocked", "message": exc.message}
            self.event(cr, "Warning", "ReinitializeBlocked", f"{exc.message} (retrying)")
            return False
        status_extra["reinitialize"] = None
        self.event(cr, "Normal", "Reinitialized", "Slot and progress dropped: the worker snapshots again.")
        return True

    def _apply_children(self, cr: JsonObj, replicas: int, run_id: str, view: ChildView) -> None:
        namespace = cr["metadata"]["namespace"]
        objects = [
            ("serviceaccounts", builders.service_account(cr)),
            ("roles", builders.role(cr)),
            ("rolebindings", builders.role_binding(cr)),
            ("secrets", builders.config_secret(cr)),
        ]
        sts = builders.statefulset(cr, self.settings.worker, replicas=replicas, run_id=run_id)
        objects.append(("statefulsets", sts))
        for plural, obj in objects:
            self._apply(plural, namespace, obj, cr["metadata"]["uid"], view)

    def _remove_worker(self, cr: JsonObj, sts: JsonObj | None, view: ChildView) -> None:
        """Delete the worker StatefulSet of this connector, if one exists (e.g. made by an older operator); its pod
        goes with it. Objects this connector does not own are left alone."""
        if sts is None:
            return
        owners = sts["metadata"].get("ownerReferences") or []
        if not any(o.get("uid") == cr["metadata"]["uid"] for o in owners):
            return
        namespace, name = cr["metadata"]["namespace"], sts["metadata"]["name"]
        deleted = self.client.delete(api_path("statefulsets", namespace, name), uid=sts["metadata"].get("uid"))
        view.dropped("statefulsets", namespace, name)
        if deleted is None:
            return  # already gone, or replaced meanwhile (the next pass looks again)
        self.event(cr, "Normal", "WorkerRemoved", f"Deleted worker StatefulSet {name}: its connector kind cannot run.")

    def _apply(self, plural: str, namespace: str, obj: JsonObj, owner_uid: str, view: ChildView) -> None:
        path = api_path(plural, namespace, obj["metadata"]["name"])
        existing = view.get(plural, namespace, obj["metadata"]["name"])
        if existing is None:
            try:
                view.wrote(plural, self.client.create(api_path(plural, namespace), obj))
                self._count(plural, "written")
            except KubeError as exc:
                if exc.status != 409:
                    raise
            return
        owners = existing["metadata"].get("ownerReferences") or []
        if not any(o.get("uid") == owner_uid for o in owners):
            raise ConflictError(
                f"{plural[:-1]} {namespace}/{obj['metadata']['name']} exists and is not owned by this connector",
                fix="Delete or rename that object; the operator will not take over objects it did not create.",
            )
        if _covers(existing, obj):
            self._count(plural, "skipped")
            return
        view.wrote(plural, self.client.merge_patch(path, obj))
        self._count(plural, "written")

    def _count(self, what: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.writes.labels(what, outcome).inc()

    # --- slot of a disabled connector ----------------------------------------------------------------------

    def _slot(self, cr: JsonObj, *, stopped: bool) -> conditions.SlotInfo:
        """The slot as last measured, measured again when older than the period for the connector's state. A
        measurement taken in the other state (the connector was just stopped or resumed) is not reused."""
        key = (cr["metadata"]["namespace"], cr["metadata"]["name"])
        period = self.settings.slot_query_seconds if stopped else self.settings.slot_query_running_seconds
        cached = self._slot_cache.get(key)
        if cached is not None and cached[2] == stopped and time.monotonic() - cached[0] < period:
            return cached[1]
        info = sourcedb.slot_info(self.client, cr)
        self._slot_cache[key] = (time.monotonic(), info, stopped)
        return info

    # --- events ---------------------------------------------------------------------------------------------

    def _events_for_transitions(self, cr: JsonObj, old: JsonObj, new: JsonObj) -> None:
        def ready(conds: list[JsonObj] | None) -> JsonObj:
            return next((c for c in conds or [] if c.get("type") == "Ready"), {})

        before, after = ready(old.get("conditions")), ready(new.get("conditions"))
        if before.get("status") != after.get("status") or before.get("reason") != after.get("reason"):
            benign = {"Disabled", "Scheduled", "WorkerPending", "WorkerStarting", "Initializing"}
            kind = "Normal" if after.get("status") == "True" or after.get("reason") in benign else "Warning"
            self.event(cr, kind, after.get("reason") or "Ready", after.get("message") or "")
        inline_before: JsonObj = next(
            (c for c in old.get("conditions") or [] if c.get("type") == "CredentialsInline"), {}
        )
        inline_after: JsonObj = next(
            (c for c in new.get("conditions") or [] if c.get("type") == "CredentialsInline"), {}
        )
        if inline_after.get("status") == "True" and inline_before.get("status") != "True":
            self.event(cr, "Warning", secret_access.INLINE_REASON, inline_after.get("message") or "")
        risk_before: JsonObj = next((c for c in old.get("conditions") or [] if c.get("type") == "SlotAtRisk"), {})
        risk_after: JsonObj = next((c for c in new.get("conditions") or [] if c.get("type") == "SlotAtRisk"), {})
        if risk_after.get("status") == "True" and (
            risk_before.get("status") != "True" or risk_before.get("reason") != risk_after.get("reason")
        ):
            self.event(cr, "Warning", risk_after.get("reason") or "SlotAtRisk", risk_after.get("message") or "")
        elif risk_before.get("status") == "True" and risk_after.get("status") == "False":
            self.event(cr, "Normal", "SlotSafe", risk_after.get("message") or "The slot is within its WAL budget.")
        if new.get("state") and new.get("state") != old.get("state"):
            self.event(cr, "Normal", "StateChanged", f"State is now {new['state']}.")
        old_restarts, new_restarts = int(old.get("restarts") or 0), int(new.get("restarts") or 0)
        if new_restarts > old_restarts:
            self.event(
                cr,
                "Warning",
                "WorkerRestarted",
                f"The worker restarted ({new_restarts} restart(s) in total); see status.last_error.",
            )

    def event(self, cr: JsonObj, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the Connector (best effort: an event is never worth failing a reconcile)."""
        namespace = cr["metadata"]["namespace"]
        now = _now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{cr['metadata']['name']}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": cr["metadata"]["name"],
                "namespace": namespace,
                "uid": cr["metadata"]["uid"],
            },
            "reason": reason[:128],
            "message": message[:1024],
            "type": type_,
            "source": {"component": "sluice-operator"},
            "reportingComponent": "sluice.dev/operator",
            "reportingInstance": "sluice-operator",
            "firstTimestamp": now[:19] + "Z",
            "lastTimestamp": now[:19] + "Z",
            "count": 1,
        }
        try:
            self.client.create(api_path("events", namespace), body)
        except Exception as exc:
            log.debug("could not post event %s on %s/%s: %s", reason, namespace, cr["metadata"]["name"], exc)


def declarative_command_message(command: str, name: str) -> str:
    """Why a ``Stop``/``Start`` annotation is ignored, and the fix."""
    value = "true" if command == "Stop" else "false"
    return (
        f"Ignored annotation sluice.dev/command={command}: the operator does not change spec, and the annotation "
        f"takes only the one-shot commands Restart and ReIntialize. Fix: set spec.disabled: {value} "
        f'(kubectl patch connector {name} --type=merge -p \'{{"spec":{{"disabled":{value}}}}}\'), or send '
        f"{command} through the REST API, which sets spec.disabled for you."
    )


def _usable(secret_meta: JsonObj, connector_uid: str) -> bool:
    labels = secret_meta.get("labels") or {}
    if secret_access.is_usable(labels):
        return True
    owned = any(o.get("uid") == connector_uid for o in secret_meta.get("ownerReferences") or [])
    return owned and labels.get("app.kubernetes.io/managed-by") == "sluice-api"


def _covers(existing: Any, desired: Any) -> bool:
    """Whether merge-patching ``desired`` onto ``existing`` would change nothing the builders set.

    Fields the apiserver defaults (a container's ``imagePullPolicy``...) are not in ``desired`` and so are ignored;
    lists must match item by item. A Secret's ``stringData`` is write-only: it is compared with ``data``; a
    ``sizeLimit`` by its value (the apiserver rewrites quantities in canonical form).
    """
    if isinstance(desired, dict):
        if not isinstance(existing, dict):
            return not desired and existing is None  # the apiserver drops an empty object
        for key, value in desired.items():
            if key in ("apiVersion", "kind") and key not in existing:
                continue  # watch events of some kinds omit them; the path already says what it is
            if key == "stringData" and isinstance(value, dict):
                data = existing.get("data") or {}
                try:
                    if any(base64.b64decode(data.get(k, "")).decode() != v for k, v in value.items()):
                        return False
                except (ValueError, UnicodeDecodeError):
                    return False
                continue
            if value is None:
                if existing.get(key) is not None:
                    return False
            elif key == "sizeLimit" and isinstance(value, str):
                # stored in the apiserver's canonical spelling (1.5Gi reads back as 1536Mi): compare values
                have = quantity_value(existing.get(key) or "")
                if have is None or have != quantity_value(value):
                    return False
            elif not _covers(existing.get(key), value):
                return False
        return True
    if isinstance(desired, list):
        return (
            isinstance(existing, list)
            and len(existing) == len(desired)
            and all(_covers(e, d) for e, d in zip(existing, desired, strict=True))
        )
    return bool(existing == desired)


def _new_run() -> str:
    return uuid.uuid4().hex[:12]


def _owned_by_statefulset(pod: JsonObj, sts_name: str) -> bool:
    return any(
        o.get("kind") == "StatefulSet" and o.get("name") == sts_name
        for o in pod["metadata"].get("ownerReferences") or []
    )
