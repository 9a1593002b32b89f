"""Pure logic of the operator and the process node: conditions, schedule ticks, env resolution, status patches."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sluice import kinds
from sluice.devstack.podenv import EnvError, expand, resolve_env
from sluice.models.status import ConnectorStatus
from sluice.operator.conditions import Observed, SlotInfo, derive_status
from sluice.operator.schedule import next_run
from sluice.worker.k8s_status import status_patch
from sluice.worker.status import TableProgress, WorkerStatus

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _cr(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "uid": "u",
            "generation": 4,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"source": {"postgres": {}}, "sink": {"postgres": {}}, **(spec or {})},
        "status": status or {},
    }


def _pod(*, running: bool = True, restarts: int = 0, waiting: dict[str, str] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": "x"}} if running else {"waiting": waiting or {}}
    return {
        "metadata": {"uid": "pod-1"},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if running else "False"}],
            "containerStatuses": [
                {
                    "name": "worker",
                    "state": state,
                    "restartCount": restarts,
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-11-26T11:59:00Z"}}
                    if restarts
                    else {},
                }
            ],
        },
    }


def _reported(
    state: str = "realtime", status: str = "start", reported_at: str = "2026-11-26T11:59:50Z", **fields: Any
) -> dict[str, Any]:
    """The status a worker really writes (``status_patch`` of a ``WorkerStatus``: its statuses are
    start|complete|failed|retry), as reported at ``reported_at``."""
    patch = status_patch(WorkerStatus(connector="c", run_id="r", state=state, status=status, **fields))
    patch["worker_reported_at"] = reported_at
    return patch


def _cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def test_a_retrying_worker_whose_readiness_fails_says_what_it_retries() -> None:
    """A running worker that retries a sink failure answers /readyz with 503, so its pod is not Ready: the condition
    names the failure instead of "starting"."""
    from sluice.errors import TransientError

    err = TransientError("sink refused the connection: connection reset", fix="Check the sink is up.").as_dict()
    cr = _cr(status=_reported("realtime", "retry", last_error=err))
    pod = _pod()
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    ready = _cond(derive_status(Observed(cr=cr, pod=pod, desired_replicas=1, now=NOW)), "Ready")
    assert ready["status"] == "False" and ready["reason"] == "WorkerRetrying"
    assert "connection reset" in ready["message"] and "Check the sink is up." in ready["message"]
    # the same pod while its worker reports it creates its slot is initializing, not starting
    cr = _cr(status=_reported("initialize", "start"))
    ready = _cond(derive_status(Observed(cr=cr, pod=pod, desired_replicas=1, now=NOW)), "Ready")
    assert ready["reason"] == "Initializing" and "initialize" in ready["message"]
    # and before any report, or with a stale one from an earlier pod, it is starting
    for status in ({}, _reported("realtime", "start", reported_at="2026-11-26T11:00:00Z")):
        cr = _cr(status=status)
        assert _cond(derive_status(Observed(cr=cr, pod=pod, desired_replicas=1, now=NOW)), "Ready")["reason"] == (
            "WorkerStarting"
        )


def test_streaming_worker_is_ready_and_streaming() -> None:
    cr = _cr(status=_reported("realtime", "start", lag_bytes=2048))
    out = derive_status(Observed(cr=cr, pod=_pod(), desired_replicas=1, now=NOW))
    assert _cond(out, "Ready")["status"] == "True"
    assert _cond(out, "Streaming")["status"] == "True"
    assert _cond(out, "Degraded")["status"] == "False"
    # the lag lives in status fields, not in the message: a moving figure there re-patched the condition each pass
    ready_message = _cond(out, "Ready")["message"]
    assert "KiB" not in ready_message and "lag_bytes" in ready_message
    other = derive_status(
        Observed(cr=_cr(status=_reported("realtime", "start", lag_bytes=9999)), pod=_pod(), desired_replicas=1, now=NOW)
    )
    assert _cond(other, "Ready") == _cond(out, "Ready")
    assert out["observedGeneration"] == 4 and out["source_kind"] == "postgres"


def test_silent_worker_is_not_ready() -> None:
    cr = _cr(status=_reported("realtime", "start", reported_at="2026-11-26T11:00:00Z"))
    out = derive_status(Observed(cr=cr, pod=_pod(), desired_replicas=1, now=NOW))
    assert _cond(out, "Ready")["reason"] == "WorkerSilent"


def test_failed_worker_says_what_to_fix_and_counts_restarts() -> None:
    err = {"reason": "SourceNotReady", "message": "wal_level is replica", "fix": "Set wal_level = logical."}
    cr = _cr(status={"state": "initialize", "status": {"type": "failed"}, "last_error": err})
    pod = _pod(running=False, restarts=3, waiting={"reason": "CrashLoopBackOff", "message": "back-off 8s"})
    out = derive_status(Observed(cr=cr, pod=pod, desired_replicas=1, now=NOW))
    ready = _cond(out, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "SourceNotReady"
    assert "Set wal_level = logical." in ready["message"]
    assert _cond(out, "Degraded")["status"] == "True"
    assert out["restarts"] == 3 and out["last_restart_time"] == "2026-11-26T11:59:00Z"


def test_restarts_carry_over_to_a_new_pod() -> None:
    cr = _cr(status={"restarts": 5, "restarts_base": 0, "restarts_pod_uid": "old-pod"})
    out = derive_status(Observed(cr=cr, pod=_pod(restarts=1), desired_replicas=1, now=NOW))
    assert out["restarts"] == 6


def test_disabled_connector_says_wal_is_retained_and_how_far_behind() -> None:
    cr = _cr(spec={"disabled": True})
    slot = SlotInfo(name="sluice_c", exists=True, active=False, lag_bytes=3 * 1024 * 1024)
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW, slot=slot))
    assert out["state"] == "disabled"
    wal = _cond(out, "WalRetained")
    assert wal["status"] == "True" and "3.0 MiB behind" in wal["message"] and "sluice_c" in wal["message"]
    assert _cond(out, "Ready")["reason"] == "Disabled"


def test_slot_lag_high() -> None:
    cr = _cr(status={"state": "realtime", "lag_bytes": 5 << 30, "worker_reported_at": "2026-11-26T11:59:59Z"})
    out = derive_status(Observed(cr=cr, pod=_pod(), desired_replicas=1, now=NOW, lag_threshold_bytes=1 << 30))
    assert _cond(out, "SlotLagHigh")["status"] == "True"
    assert _cond(out, "Ready")["status"] == "False" and _cond(out, "Ready")["reason"] == "SlotLagging"
    assert "5.0 GiB" in _cond(out, "SlotLagHigh")["message"]


def test_transition_time_kept_while_status_unchanged() -> None:
    earlier = "2026-11-26T10:00:00Z"
    cr = _cr(
        spec={"disabled": True},
        status={"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": earlier}]},
    )
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW))
    assert _cond(out, "Ready")["lastTransitionTime"] == earlier


def test_schedule_rate_and_cron_in_zone() -> None:
    assert next_run({"rate": {"value": 2, "unit": "Hour"}}, NOW) == NOW + timedelta(hours=2)
    # 03:00 in Berlin on the day summer time starts is 01:00 UTC
    tick = next_run(
        {"cron": {"expression": "0 3 * * *", "timezone": "Europe/Berlin"}}, datetime(2026, 3, 28, 12, tzinfo=UTC)
    )
    assert tick == datetime(2026, 3, 29, 1, tzinfo=UTC)


def test_env_resolution_rules() -> None:
    secret = {"data": {"pw": base64.b64encode(b"s3cret").decode()}}
    cm = {"data": {"a": "1", "b": "2"}}

    def lookup(kind: str, _ns: str, name: str) -> dict[str, Any] | None:
        return {("secrets", "s"): secret, ("configmaps", "c"): cm}.get((kind, name))

    pod = {"metadata": {"name": "p", "namespace": "n", "labels": {"app": "x"}}, "spec": {"nodeName": "node"}}
    container = {
        "envFrom": [{"configMapRef": {"name": "c"}, "prefix": "C_"}],
        "env": [
            {"name": "C_a", "value": "override"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k", "optional": True}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "REF", "value": "$(PW)-$(NOPE)-$$(PW)"},
        ],
    }
    env = resolve_env(pod, container, lookup)
    assert env == {"C_a": "override", "C_b": "2", "PW": "s3cret", "APP": "x", "REF": "s3cret-$(NOPE)-$(PW)"}
    with pytest.raises(EnvError, match="missing"):
        resolve_env(
            pod, {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}]}, lookup
        )
    assert expand("$(A)$(B)", {"A": "1"}) == "1$(B)"


def test_worker_status_patch() -> None:
    ws = WorkerStatus(
        connector="c",
        run_id="engine-run",
        state="realtime",
        status="retry",
        retry_attempt=2,
        tables={"public.t": TableProgress(phase="copied", rows_copied=10)},
        last_error={"error": "Transient", "message": "connection reset", "fix": "wait"},
        position="0/16B3748",
        delivery="exactly-once",
    )
    patch = status_patch(ws, pod="c-worker-0", run_id="operator-run")
    assert patch["position"] == "0/16B3748" and patch["delivery"] == "exactly-once"
    ConnectorStatus.model_validate(patch)  # every field the worker writes is in the CRD's status schema
    assert "run_id" not in patch  # the operator's field; the worker says which run it is under worker.run_id
    assert patch["status"] == {"type": "retry", "attempt": 2, "reason": "connection reset"}
    assert patch["tables"][0]["phase"] == "snapshotted"
    assert patch["last_error"]["reason"] == "Transient" and patch["last_error"]["fix"] == "wait"
    assert patch["worker"] == {"pod": "c-worker-0", "run_id": "operator-run"}


def test_recent_crash_keeps_degraded_while_ready_again() -> None:
    cr = _cr(status=_reported("realtime", "start", reported_at="2026-11-26T11:59:59Z"))
    out = derive_status(Observed(cr=cr, pod=_pod(restarts=1), desired_replicas=1, now=NOW))
    assert _cond(out, "Ready")["status"] == "True"
    degraded = _cond(out, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "WorkerRestarted"
    later = derive_status(Observed(cr=cr, pod=_pod(restarts=1), desired_replicas=1, now=NOW + timedelta(hours=1)))
    assert _cond(later, "Degraded")["status"] == "False"


# --- kinds this version cannot run (a Connector stored before the CRD refused them) ------------------------------


@pytest.mark.parametrize(
    ("spec", "refused"),
    [
        ({"sink": {"clickhouse": {"connection": {"http_url": "https://c:8443"}}}}, [("sink", "clickhouse")]),
        ({"source": {"oracle": {}}, "disabled": True}, [("source", "oracle")]),
        (
            {"source": {"mongo": {}}, "sink": {"snowflake": {}}, "schedule": {"rate": {"value": 1, "unit": "Hour"}}},
            [("source", "mongo"), ("sink", "snowflake")],
        ),
    ],
)
def test_unavailable_kind_is_not_ready_unsupported_kind_and_failed(
    spec: dict[str, Any], refused: list[tuple[kinds.Part, str]]
) -> None:
    cr = _cr(spec=spec, status={"state": "start", "run_id": "r1"})
    out = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW))
    ready = _cond(out, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "UnsupportedKind"
    for part, kind in refused:
        refusal = kinds.unavailable(part, kind)
        assert refusal.text in ready["message"]  # the CRD rule's message: the same words as the REST 422
        assert refusal.message in out["last_error"]["message"]
        assert refusal.fix in out["last_error"]["fix"]
    assert out["last_error"]["reason"] == "UnsupportedKind"
    assert out["status"]["type"] == "failed"
    assert out["state"] is None  # no worker, no lifecycle state (disabled/scheduled do not apply either)
    for ctype in ("Snapshotting", "Streaming", "Degraded"):
        assert _cond(out, ctype)["status"] == "False"
    assert "WalRetained" not in {c["type"] for c in out["conditions"]}


def test_unavailable_kind_status_is_stable_across_passes() -> None:
    """The refresh timer must not rewrite last_error (and so the status) on every pass."""
    cr = _cr(spec={"sink": {"clickhouse": {}}})
    first = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW))
    cr["status"] = first
    later = derive_status(Observed(cr=cr, pod=None, desired_replicas=0, now=NOW + timedelta(minutes=5)))
    assert "last_error" not in later
    assert _cond(later, "Ready")["lastTransitionTime"] == _cond(first, "Ready")["lastTransitionTime"]


def test_available_kinds_and_malformed_specs_are_not_unsupported() -> None:
    for spec in (
        {},
        {"sink": {"postgres": {}, "kafka": {}}},  # two kinds: the CRD's one-of rule speaks, not this one
        {"sink": {"kafak": {}}},  # a typo is pruned/refused by the apiserver, never "not available yet"
    ):
        out = derive_status(Observed(cr=_cr(spec=spec), pod=None, desired_replicas=1, now=NOW))
        assert _cond(out, "Ready")["reason"] != "UnsupportedKind", spec


# --- Secrets a connector may use, inline credentials (sluice.models.secret_access) -------------------------------


def test_secret_not_allowed_is_not_ready_with_the_fix_and_no_worker_state() -> None:
    cr = _cr(status={"state": "realtime"})
    obs = Observed(
        cr=cr,
        pod=None,
        desired_replicas=0,
        now=NOW,
        secrets_not_allowed=(("creds", ("source.postgres.connection.password_secret_ref",)),),
    )
    out = derive_status(obs)
    ready = _cond(out, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "SecretNotAllowed")
    assert 'Secret "creds"' in ready["message"]
    assert "kubectl label secret creds sluice.dev/usable-by-connectors=true" in ready["message"]
    assert _cond(out, "Streaming")["status"] == "False"
    assert out["state"] is None  # the worker's last "realtime" is no longer true


def test_inline_credentials_add_a_condition_naming_the_secret_ref_never_the_value() -> None:
    conn: dict[str, Any] = {"host": "h", "user": "u", "password": "hunter2", "database": "d"}
    spec: dict[str, Any] = {
        "source": {"postgres": {"connection": conn, "replication_type": {"logical_replication": {}}}},
        "sink": {
            "postgres": {"connection": {**conn, "password": None, "password_secret_ref": {"name": "s", "key": "k"}}}
        },
    }
    out = derive_status(Observed(cr=_cr(spec=spec), pod=_pod(), desired_replicas=1, now=NOW))
    cond = _cond(out, "CredentialsInline")
    assert (cond["status"], cond["reason"]) == ("True", "InlineCredentials")
    assert "source.postgres.connection.password_secret_ref" in cond["message"]
    assert "sink.postgres" not in cond["message"]
    assert "hunter2" not in str(out)
    # By reference only: no such condition.
    spec["source"]["postgres"]["connection"] = {
        **conn,
        "password": None,
        "password_secret_ref": {"name": "s", "key": "k"},
    }
    out = derive_status(Observed(cr=_cr(spec=spec), pod=_pod(), desired_replicas=1, now=NOW))
    assert all(c["type"] != "CredentialsInline" for c in out["conditions"])


class _Secrets:
    """Just enough of JsonClient for Reconciler.secrets_not_allowed: GET of Secrets by path."""

    def __init__(self, **metas: dict[str, Any]) -> None:
        self.metas = metas

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        name = path.rsplit("/", 1)[-1]
        return {"metadata": self.metas[name]} if name in self.metas else None


def test_which_referenced_secrets_the_operator_refuses() -> None:
    from sluice.operator.reconcile import OperatorSettings, Reconciler

    def spec(source: str, sink: str) -> dict[str, Any]:
        return {
            "source": {"postgres": {"connection": {"password_secret_ref": {"name": source, "key": "k"}}}},
            "sink": {"postgres": {"connection": {"password_secret_ref": {"name": sink, "key": "k"}}}},
        }

    api_owned = {"labels": {"app.kubernetes.io/managed-by": "sluice-api"}, "ownerReferences": [{"uid": "u"}]}
    client = _Secrets(
        marked={"labels": {"sluice.dev/usable-by-connectors": "true"}},
        plain={"labels": {"team": "a"}},
        falsy={"labels": {"sluice.dev/usable-by-connectors": "yes"}},
        ours=api_owned,  # written by the REST API for this connector (uid "u") before the label existed
        others={**api_owned, "ownerReferences": [{"uid": "another-connector"}]},
    )
    rec = Reconciler(client, OperatorSettings())  # type: ignore[arg-type]
    assert rec.secrets_not_allowed(_cr(spec=spec("marked", "ours"))) == []
    assert rec.secrets_not_allowed(_cr(spec=spec("missing", "marked"))) == []  # the pod reports a missing one
    assert rec.secrets_not_allowed(_cr(spec=spec("plain", "marked"))) == [
        ("plain", ("source.postgres.connection.password_secret_ref",))
    ]
    assert [n for n, _ in rec.secrets_not_allowed(_cr(spec=spec("falsy", "others")))] == ["falsy", "others"]
    same = rec.secrets_not_allowed(_cr(spec=spec("plain", "plain")))
    assert same == [
        ("plain", ("source.postgres.connection.password_secret_ref", "sink.postgres.connection.password_secret_ref"))
    ]
