"""From what the operator observes to the Connector's status: pure functions, unit-tested without a cluster.

Inputs are plain dicts: the Connector (its ``status`` already holds what the worker reported), the worker pod
(or None), and optional facts about the slot the operator queried itself. Output is the status fragment the
operator owns: ``observedGeneration``, ``conditions``, ``restarts``/``last_restart_time``, kinds, ``created_at``,
and the ``state`` when the operator (not the worker) decides it (``disabled``, ``scheduled``).

Condition rules (each message says what to do):

- Ready: the worker pod runs, the worker reports ``snapshot`` or ``realtime``, no failed step, no failed table,
  the worker's report is fresh and the slot is not lagging past the threshold. Anything else is False with the
  most useful reason.
- Snapshotting / Streaming: the worker's ``state``.
- Degraded: the worker is retrying, crash-looping, reported an error, or crashed in the last 10 minutes.
- SlotLagHigh: the slot is more than ``lag_threshold_bytes`` behind: WAL piles up on the source.
- WalRetained (only while disabled): the slot is kept and holds WAL on the source.
- SlotAtRisk (PostgreSQL sources): the WAL the slot retains (``status.wal_retained_bytes``, which the operator
  measures itself) is past the connector's budget (``spec.wal_budget``, else the operator's ``--wal-budget``) while
  nothing drains it: the connector is stopped (disabled, between scheduled runs, no worker allowed) or lagging (the
  worker is not Ready, or reports more lag than the budget). A streaming worker within budget drains the slot, so
  retention it cannot release on its own (a long transaction on the source) is not reported as a risk. Also True,
  whatever the budget, when the source itself says the slot's WAL is past ``max_slot_wal_keep_size``
  (``wal_status`` unreserved) or already removed (lost): then the fix is different. It complements the other two:
  WalRetained says a slot is kept on purpose, SlotLagHigh compares the sink's lag with the operator-wide threshold
  (and feeds Ready), SlotAtRisk compares the source's retained WAL with a per-connector budget (and feeds alerts).
- A referenced Secret without the label ``sluice.dev/usable-by-connectors: "true"`` (`sluice.models.secret_access`):
  Ready False with reason ``SecretNotAllowed`` and the fix; no worker runs.
- CredentialsInline (only when the spec holds a credential inline): True with the fields and the ``*_secret_ref``
  to use instead (the operator also posts a Warning event when it turns True).
- A source or sink kind this version cannot run (`sluice.kinds`; a Connector stored before the CRD refused it):
  Ready False with reason ``UnsupportedKind`` and the same message and fix as the API and the CRD, run status
  ``failed``, ``last_error`` set; the operator runs no worker for it, so nothing crash-loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sluice.kinds import REASON, unavailable_kinds
from sluice.models import secret_access
from sluice.models.quantity import parse_byte_quantity

__all__ = ["Observed", "SlotInfo", "derive_status", "human_bytes", "parse_time", "source_kind", "wal_budget_bytes"]

JsonObj = dict[str, Any]

STALE_REPORT_SECONDS = 120.0
#: A worker crash this recent keeps Degraded True even once the worker runs again.
RECENT_CRASH_SECONDS = 600.0


@dataclass(frozen=True)
class SlotInfo:
    """The replication slot as the operator saw it on the source (None fields: could not tell)."""

    name: str
    exists: bool | None = None
    active: bool | None = None
    lag_bytes: int | None = None
    """WAL the slot retains: ``pg_current_wal_lsn() - restart_lsn`` (None for a lost slot)."""
    error: str | None = None
    wal_status: str | None = None
    """``pg_replication_slots.wal_status``: reserved, extended, unreserved or lost."""
    safe_wal_bytes: int | None = None
    """``safe_wal_size``: WAL that may still be written before the slot is at risk of being lost (None: no limit)."""


@dataclass(frozen=True)
class Observed:
    cr: JsonObj
    pod: JsonObj | None
    desired_replicas: int
    now: datetime
    slot: SlotInfo | None = None
    next_run: datetime | None = None
    lag_threshold_bytes: int = 1 << 30
    default_wal_budget_bytes: int | None = None
    """The operator's WAL budget for connectors without ``spec.wal_budget`` (None: ``lag_threshold_bytes``)."""
    secrets_not_allowed: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Referenced Secrets without the label that marks them for connectors: (name, referencing fields)."""


def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _fmt(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def wal_budget_bytes(spec: JsonObj, default: int) -> int:
    """The budget in effect: ``spec.wal_budget`` (a Kubernetes quantity), else ``default``. A value the CRD and the
    API would refuse (stored under an older CRD) falls back to ``default`` rather than failing every pass."""
    text = spec.get("wal_budget")
    if isinstance(text, str):
        try:
            return parse_byte_quantity(text)
        except ValueError:
            pass
    return default


def source_kind(spec: JsonObj) -> str | None:
    """The key set under ``spec.source`` (``postgres``, ``mysql``...), None when not exactly one."""
    return _kind(spec, "source")


def _kind(spec: JsonObj, part: str) -> str | None:
    value = spec.get(part)
    if isinstance(value, dict):
        keys = [k for k, v in value.items() if v is not None]
        return keys[0] if len(keys) == 1 else None
    return None


def _container(pod: JsonObj | None) -> JsonObj:
    if not pod:
        return {}
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return next((c for c in statuses if c.get("name") == "worker"), statuses[0] if statuses else {})


def _error_text(err: Any) -> str:
    if not isinstance(err, dict):
        return ""
    text = str(err.get("message", ""))
    if err.get("fix"):
        text += f" Fix: {err['fix']}"
    return text


def derive_status(obs: Observed) -> JsonObj:
    cr = obs.cr
    spec = cr.get("spec") or {}
    current = cr.get("status") or {}
    generation = cr["metadata"].get("generation")
    container = _container(obs.pod)
    pod_status = (obs.pod or {}).get("status") or {}
    waiting = (container.get("state") or {}).get("waiting") or {}
    running = "running" in (container.get("state") or {})
    pod_ready = running and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in pod_status.get("conditions") or []
    )
    restarts = int(container.get("restartCount") or 0)
    last_term = (container.get("lastState") or {}).get("terminated") or {}

    worker_state = current.get("state")
    run = current.get("status") or {}
    run_type = run.get("type") if isinstance(run, dict) else run
    last_error = current.get("last_error")
    failed_tables = [t for t in current.get("tables") or [] if t.get("phase") == "failed"]
    reported_at = parse_time(current.get("worker_reported_at"))
    fresh = reported_at is not None and (obs.now - reported_at).total_seconds() < STALE_REPORT_SECONDS
    lag_bytes = current.get("lag_bytes")
    if obs.slot is not None and obs.slot.lag_bytes is not None and (obs.desired_replicas == 0 or lag_bytes is None):
        lag_bytes = obs.slot.lag_bytes

    out: JsonObj = {
        "observedGeneration": generation,
        "source_kind": _kind(spec, "source"),
        "sink_kind": _kind(spec, "sink"),
        "created_at": cr["metadata"].get("creationTimestamp"),
    }
    # restartCount starts again at 0 with every new pod (a spec change rolls it): carry the total across pods.
    pod_uid = ((obs.pod or {}).get("metadata") or {}).get("uid")
    base = int(current.get("restarts_base") or 0)
    if pod_uid and pod_uid != current.get("restarts_pod_uid"):
        base = int(current.get("restarts") or 0)
    if pod_uid:
        out["restarts_pod_uid"] = pod_uid
        out["restarts_base"] = base
    out["restarts"] = base + restarts
    if last_term.get("finishedAt") and restarts:
        out["last_restart_time"] = last_term["finishedAt"]

    conds: list[tuple[str, bool, str, str]] = []  # (type, status, reason, message)
    slot_name = obs.slot.name if obs.slot else "the connector's slot"
    budget = wal_budget_bytes(
        spec, obs.default_wal_budget_bytes if obs.default_wal_budget_bytes is not None else obs.lag_threshold_bytes
    )
    #: Whether a worker drains the slot within budget; set by the branch below that knows (None: no worker runs).
    draining: bool | None = None

    refused = unavailable_kinds(spec)
    if refused:
        # Stored before the CRD refused it (or applied under an older CRD): no worker is run for it (see reconcile).
        text = " ".join(r.text for r in refused)
        message = "; ".join(r.message for r in refused)
        fix = " ".join(r.fix for r in refused)
        out["state"] = None
        out["status"] = {"type": "failed", "reason": message}
        error = current.get("last_error")
        error = error if isinstance(error, dict) else {}
        if (error.get("reason"), error.get("message"), error.get("fix")) != (REASON, message, fix):
            out["last_error"] = {"reason": REASON, "message": message, "fix": fix, "time": _fmt(obs.now)}
        idle = "No worker runs for this connector: " + text
        conds.append(("Ready", False, REASON, text))
        conds.append(("Snapshotting", False, REASON, idle))
        conds.append(("Streaming", False, REASON, idle))
        conds.append(("Degraded", False, REASON, idle))
    elif obs.secrets_not_allowed:
        # No worker runs (see reconcile): its pod would receive values of Secrets not marked for connectors.
        text = " ".join(
            f"{secret_access.not_allowed_message(n, list(f))}. Fix: {secret_access.not_allowed_fix(n)}"
            for n, f in obs.secrets_not_allowed
        )
        idle = "No worker runs for this connector: " + text
        out["state"] = None
        conds.append(("Ready", False, secret_access.REASON, text))
        conds.append(("Snapshotting", False, secret_access.REASON, idle))
        conds.append(("Streaming", False, secret_access.REASON, idle))
        conds.append(("Degraded", False, secret_access.REASON, idle))
    elif spec.get("disabled"):
        out["state"] = "disabled"
        behind = (
            f"{human_bytes(lag_bytes)} behind" if isinstance(lag_bytes, int) else "lag unknown (source unreachable)"
        )
        if obs.slot is not None and obs.slot.error:
            behind = f"lag unknown: {obs.slot.error}"
        if obs.slot is not None and obs.slot.exists is False:
            conds.append(("WalRetained", False, "NoSlot", f"No replication slot {slot_name} exists on the source."))
        else:
            conds.append(
                (
                    "WalRetained",
                    True,
                    "SlotKept",
                    f"The worker is stopped but replication slot {slot_name} is kept, so the source retains WAL "
                    f"({behind}). Set spec.disabled: false to resume without losing changes, or delete the connector "
                    "to drop the slot.",
                )
            )
        conds.append(
            (
                "Ready",
                False,
                "Disabled",
                "spec.disabled is true: the worker is stopped. Set it to false (or send the Start command) to resume.",
            )
        )
        conds.append(("Snapshotting", False, "Disabled", "The worker is stopped."))
        conds.append(("Streaming", False, "Disabled", "The worker is stopped."))
        conds.append(("Degraded", False, "Disabled", ""))
    elif obs.desired_replicas == 0 and spec.get("schedule"):
        out["state"] = "scheduled"
        when = f" Next run at {_fmt(obs.next_run)}." if obs.next_run else ""
        ok = run_type != "failed"
        msg = "Waiting for the next scheduled run." + when
        if not ok:
            msg = f"The last run failed: {_error_text(last_error)}{when}"
        conds.append(("Ready", ok, "Scheduled" if ok else "LastRunFailed", msg))
        conds.append(("Snapshotting", False, "Scheduled", "Between scheduled runs."))
        conds.append(("Streaming", False, "Scheduled", "Snapshot replication does not stream."))
        conds.append(("Degraded", not ok, "LastRunFailed" if not ok else "AsExpected", "" if ok else msg))
    else:
        snapshotting = worker_state in ("initialize", "snapshot")
        streaming = worker_state == "realtime" and run_type not in ("failed",)
        conds.append(
            (
                "Snapshotting",
                snapshotting and running,
                "WorkerReport",
                f"Worker state: {worker_state or 'not reported yet'}.",
            )
        )
        conds.append(
            (
                "Streaming",
                streaming and running,
                "WorkerReport",
                "Changes are streamed into the sink."
                if streaming
                else f"Worker state: {worker_state or 'not reported yet'}.",
            )
        )
        # Ready, with the most specific reason first.
        reason, message = "", ""
        if obs.pod is None:
            reason, message = "WorkerPending", "The worker pod has not been created yet."
        elif waiting.get("reason") == "CreateContainerConfigError":
            reason = "WorkerConfigError"
            message = (
                f"The worker cannot start: {waiting.get('message', '')}. Create the Secret/key named, or fix "
                "the *_secret_ref in the spec."
            )
        elif run_type == "failed" or (
            last_error and (not running or (restarts and worker_state in (None, "start", "initialize")))
        ):
            # Down, or restarted and not past setup yet: the previous failure is still the news.
            reason = str((last_error or {}).get("reason") or "WorkerFailed")
            message = _error_text(last_error) or "The worker failed."
        elif failed_tables:
            t = failed_tables[0]
            reason = "TableFailed"
            message = f"Table {t.get('name')} failed: {t.get('error', '')}" + (
                f" Fix: {t['fix']}" if t.get("fix") else ""
            )
        elif waiting.get("reason") == "CrashLoopBackOff" or (not running and restarts):
            reason = "WorkerCrashLooping"
            code = last_term.get("exitCode")
            message = (
                f"The worker exited (code {code}) {restarts} time(s) and is restarted with a growing "
                f"back-off. {_error_text(last_error) or 'Read the worker log for the cause.'}"
            )
        elif not pod_ready and run_type == "retry":
            # The worker is up but its readiness probe fails while it retries: say what it retries, not "starting".
            reason = "WorkerRetrying"
            message = f"The worker is retrying. {_error_text(last_error) or 'Read the worker log for the cause.'}"
        elif running and fresh and worker_state not in (None, "snapshot", "realtime"):
            # Its readiness probe answers 503 outside snapshot and streaming, so the pod is not Ready while the
            # worker, say, waits for open transactions to create its slot: name that state, not "starting".
            reason, message = "Initializing", f"Worker state: {worker_state}."
        elif not pod_ready:
            reason, message = "WorkerStarting", "The worker pod is starting."
        elif worker_state not in ("snapshot", "realtime"):
            reason, message = "Initializing", f"Worker state: {worker_state or 'not reported yet'}."
        elif not fresh:
            reason = "WorkerSilent"
            message = (
                f"The worker has not reported for over {STALE_REPORT_SECONDS:.0f}s although its pod runs; "
                "it may be stuck. Send the Restart command if this persists."
            )
        elif isinstance(lag_bytes, int) and lag_bytes > obs.lag_threshold_bytes:
            reason = "SlotLagging"
            message = (
                f"The sink is {human_bytes(lag_bytes)} behind the source (threshold "
                f"{human_bytes(obs.lag_threshold_bytes)}); see the SlotLagHigh condition."
            )
        ready = reason == ""
        worker_lag = current.get("lag_bytes")
        draining = ready and not (isinstance(worker_lag, int) and worker_lag > budget)
        if ready:
            reason = "Streaming" if worker_state == "realtime" else "Snapshotting"
            # No figure in the message: a lag in it changed the condition on every pass, so the operator patched a
            # streaming connector's status each time the lag moved. status.lag_bytes/lag_seconds carry it.
            message = "Replicating; status.lag_seconds and status.lag_bytes say how far behind the sink is."
        conds.append(("Ready", ready, reason, message))
        finished = parse_time(last_term.get("finishedAt"))
        recent_crash = (
            restarts > 0
            and last_term.get("exitCode") not in (None, 0)
            and finished is not None
            and (obs.now - finished).total_seconds() < RECENT_CRASH_SECONDS
        )
        degraded = (
            run_type == "retry"
            or waiting.get("reason") == "CrashLoopBackOff"
            or (bool(last_error) and not ready)
            or recent_crash
        )
        if run_type == "retry":
            dreason, dmsg = "Retrying", f"Retrying (attempt {run.get('attempt')}): {run.get('reason', '')}"
        elif degraded and not ready:
            dreason, dmsg = reason, message
        elif degraded:
            dreason = "WorkerRestarted"
            dmsg = (
                f"The worker exited with code {last_term.get('exitCode')} at {last_term.get('finishedAt')} and was "
                f"restarted ({restarts} restart(s) of this pod); it replicates again. "
                f"{_error_text(last_error) or 'Read the worker log for the cause.'}"
            )
        else:
            dreason, dmsg = "AsExpected", ""
        conds.append(("Degraded", degraded, dreason, dmsg))

    high = isinstance(lag_bytes, int) and lag_bytes > obs.lag_threshold_bytes
    conds.append(
        (
            "SlotLagHigh",
            high,
            "SlotLagging" if high else "WithinThreshold",
            (
                f"Replication slot {slot_name} is {human_bytes(lag_bytes)} behind (threshold "
                f"{human_bytes(obs.lag_threshold_bytes)}): the source keeps that much WAL. "
                "Resume or fix the connector, or delete it to drop the slot."
            )
            if high and isinstance(lag_bytes, int)
            else "",
        )
    )
    if spec.get("disabled") and isinstance(lag_bytes, int):
        out["lag_bytes"] = lag_bytes
    if source_kind(spec) == "postgres":
        out["wal_budget_bytes"] = budget
        if obs.slot is not None and obs.slot.error is None:
            out["wal_retained_bytes"] = obs.slot.lag_bytes if obs.slot.exists else None
        conds.append(_slot_at_risk(obs.slot, slot_name, budget, draining, current.get("wal_retained_bytes")))
    inline = secret_access.inline_credentials(spec)
    if inline:
        conds.append(
            ("CredentialsInline", True, secret_access.INLINE_REASON, secret_access.inline_credential_message(inline))
        )

    old = {c.get("type"): c for c in current.get("conditions") or []}
    now = _fmt(obs.now)
    conditions = []
    for ctype, ok, reason, message in conds:
        status = "True" if ok else "False"
        previous = old.get(ctype)
        changed = previous is None or previous.get("status") != status
        conditions.append(
            {
                "type": ctype,
                "status": status,
                "reason": reason or ("AsExpected" if ok else "NotApplicable"),
                "message": message,
                "lastTransitionTime": now if changed or previous is None else previous.get("lastTransitionTime", now),
                "observedGeneration": generation,
            }
        )
    out["conditions"] = conditions
    return out


def _slot_at_risk(
    slot: SlotInfo | None, slot_name: str, budget: int, draining: bool | None, last_retained: Any
) -> tuple[str, bool, str, str]:
    """The SlotAtRisk condition (see the module docstring). ``draining``: a Ready worker within budget (True), a
    worker that is not (False), no worker (None). ``last_retained``: the previous measurement, used while this pass
    has none (the slot is looked at on a slower timer than the status)."""
    fix_stopped = (
        "Resume the connector (spec.disabled: false) so it drains the slot, raise spec.wal_budget if the source has "
        "the disk for it, or delete the connector to drop the slot."
    )
    if slot is not None and slot.error is not None:
        return ("SlotAtRisk", False, "RetentionUnknown", f"Cannot look at replication slot {slot_name}: {slot.error}")
    if slot is not None and slot.exists is False:
        return ("SlotAtRisk", False, "NoSlot", f"No replication slot {slot_name} exists on the source.")
    if slot is not None and slot.wal_status == "lost":
        return (
            "SlotAtRisk",
            True,
            "SlotLost",
            f"The source removed WAL that replication slot {slot_name} still needed (wal_status lost: it exceeded "
            "the source's max_slot_wal_keep_size); the connector cannot resume from it. Fix: send the ReIntialize "
            "command to drop the slot and snapshot again, and raise max_slot_wal_keep_size or resume sooner.",
        )
    retained = slot.lag_bytes if slot is not None else last_retained
    if not isinstance(retained, int):
        return ("SlotAtRisk", False, "RetentionUnknown", f"Replication slot {slot_name} has not been measured yet.")
    if slot is not None and slot.wal_status == "unreserved":
        return (
            "SlotAtRisk",
            True,
            "WalUnreserved",
            f"Replication slot {slot_name} retains {human_bytes(retained)}, past the source's "
            "max_slot_wal_keep_size: the next checkpoint removes WAL it needs and the slot is lost. Fix: resume the "
            "connector now, or raise max_slot_wal_keep_size on the source.",
        )
    within = f"Replication slot {slot_name} retains {human_bytes(retained)} of WAL (budget {human_bytes(budget)})"
    if retained <= budget:
        return ("SlotAtRisk", False, "WithinBudget", within + ".")
    if draining:
        return ("SlotAtRisk", False, "Draining", within + "; the worker streams within budget and drains it.")
    safe = (
        f" The source may still write {human_bytes(slot.safe_wal_bytes)} before it removes WAL the slot needs."
        if slot is not None and isinstance(slot.safe_wal_bytes, int)
        else ""
    )
    why = "the connector is stopped" if draining is None else "the worker is not draining it"
    fix = (
        fix_stopped
        if draining is None
        else "See the Ready condition for why the worker lags and fix that, raise spec.wal_budget if the source "
        "has the disk for it, or delete the connector to drop the slot."
    )
    return (
        "SlotAtRisk",
        True,
        "WalBudgetExceeded",
        f"{within}, and {why}: the source keeps this WAL on its disk until the slot advances.{safe} Fix: {fix}",
    )
