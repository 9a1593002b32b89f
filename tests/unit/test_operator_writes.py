"""One writer per status field, and writes only when they change something (``sluice.status_owners``,
``sluice.operator.children``, the reconcile pass and the worker's status reporter).

The reconcile tests run the real ``Reconciler`` against an in-memory apiserver (``_Api``: paths, merge patches,
resourceVersions, Secrets' ``stringData``), with children read either by GET or from an index fed by its writes.
"""

from __future__ import annotations

import base64
import copy
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from sluice.operator import children, naming
from sluice.operator.conditions import Observed, SlotInfo, derive_status
from sluice.operator.metrics import OperatorMetrics
from sluice.operator.reconcile import OperatorSettings, Reconciler, _covers
from sluice.status_owners import (
    HANDOVER_FIELDS,
    OPERATOR_FIELDS,
    WORKER_FIELDS,
    changes,
    operator_violations,
    worker_violations,
)
from sluice.worker.k8s_status import KubernetesStatusReporter, status_patch
from sluice.worker.status import TableProgress, WorkerStatus

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
JsonObj = dict[str, Any]


def _cr(spec: JsonObj | None = None, status: JsonObj | None = None) -> JsonObj:
    return {
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "Connector",
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


def _pod(*, running: bool = True, restarts: int = 0) -> JsonObj:
    state: JsonObj = {"running": {"startedAt": "x"}} if running else {"waiting": {"reason": "CrashLoopBackOff"}}
    return {
        "metadata": {
            "uid": "pod-1",
            "name": "c-worker-0",
            "ownerReferences": [{"kind": "StatefulSet", "name": naming.statefulset_name("c")}],
        },
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


def _report(**fields: Any) -> JsonObj:
    return status_patch(WorkerStatus(connector="c", run_id="r", **fields), pod="c-worker-0", run_id="r")


# --- the split ---------------------------------------------------------------------------------------------------


def test_the_two_writers_own_disjoint_fields_and_the_handover_is_the_workers() -> None:
    assert not WORKER_FIELDS & OPERATOR_FIELDS
    assert HANDOVER_FIELDS <= WORKER_FIELDS


@pytest.mark.parametrize(
    "fields",
    [
        {"state": "snapshot", "tables": {"public.t": TableProgress(phase="snapshot", rows_copied=3)}},
        {"state": "realtime", "lag_bytes": 10, "lag_seconds": 0.5, "position": "0/1", "delivery": "exactly-once"},
        {"state": "realtime", "status": "retry", "retry_attempt": 2, "last_error": {"message": "reset"}},
        {"state": "start", "status": "failed", "last_error": {"reason": "SourceUnreachable", "message": "down"}},
    ],
)
def test_worker_reports_write_only_worker_fields(fields: JsonObj) -> None:
    patch = _report(**fields)
    assert worker_violations(patch) == []
    assert "run_id" not in patch and patch["worker"] == {"run_id": "r", "pod": "c-worker-0"}


def test_a_foreign_field_is_a_violation() -> None:
    assert worker_violations({"state": "realtime", "conditions": []}) == ["conditions"]
    assert operator_violations({"conditions": [], "state": "disabled"}, worker_running=True) == ["state"]
    assert operator_violations({"conditions": [], "state": "disabled"}, worker_running=False) == []
    assert operator_violations({"position": "0/1"}, worker_running=False) == ["position"]


_REFUSED_SPEC: JsonObj = {"source": {"oracle": {}}, "sink": {"postgres": {}}}


@pytest.mark.parametrize(
    ("spec", "status", "pod", "replicas", "slot", "not_allowed"),
    [
        # a worker runs: streaming, snapshotting, failed, crash-looping, silent, pending
        ({}, _report(state="realtime", lag_bytes=5), _pod(), 1, None, ()),
        ({}, _report(state="snapshot"), _pod(), 1, None, ()),
        ({}, _report(state="start", status="failed", last_error={"message": "x"}), _pod(running=False), 1, None, ()),
        ({}, _report(state="realtime"), _pod(running=False, restarts=3), 1, None, ()),
        ({}, {**_report(state="realtime"), "worker_reported_at": "2026-11-26T10:00:00Z"}, _pod(), 1, None, ()),
        ({}, {}, None, 1, None, ()),
        # no worker runs: disabled (slot lag queried by the operator), scheduled, refused kind, Secret not allowed
        ({"disabled": True}, _report(state="realtime"), None, 0, SlotInfo("s", True, False, 42), ()),
        ({"schedule": {"rate": {"value": 1, "unit": "Hour"}}}, _report(state="complete"), None, 0, None, ()),
        (_REFUSED_SPEC, {}, None, 0, None, ()),
        ({}, {}, None, 0, None, (("creds", ("source.password_secret_ref",)),)),
    ],
)
def test_derived_status_writes_worker_fields_only_while_no_worker_runs(
    spec: JsonObj,
    status: JsonObj,
    pod: JsonObj | None,
    replicas: int,
    slot: SlotInfo | None,
    not_allowed: tuple[tuple[str, tuple[str, ...]], ...],
) -> None:
    cr = _cr(spec=spec, status=status)
    if spec is _REFUSED_SPEC:
        cr["spec"] = copy.deepcopy(spec)
    out = derive_status(
        Observed(cr=cr, pod=pod, desired_replicas=replicas, now=NOW, slot=slot, secrets_not_allowed=not_allowed)
    )
    assert operator_violations(out, worker_running=replicas > 0) == []
    if replicas == 0:
        assert out.keys() & HANDOVER_FIELDS  # the hand-over is real: this test would notice it going away


# --- patch only on change ----------------------------------------------------------------------------------------


def test_changes_follows_merge_patch_semantics() -> None:
    current = {"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": None}
    assert not changes(current, {})
    assert not changes(current, {"a": 1, "b": {"c": 2}})
    assert not changes(current, {"e": None, "missing": None})
    assert not changes(current, {"b": {"d": [1, 2], "x": None}})
    assert changes(current, {"a": 2})
    assert changes(current, {"a": None})
    assert changes(current, {"b": {"d": [2, 1]}})
    assert changes(current, {"new": {}})
    assert changes(current, {"b": {"c": 2, "new": 0}})


def test_covers_ignores_server_defaults_but_not_changes() -> None:
    desired = {"spec": {"containers": [{"name": "w", "image": "a"}], "empty": {}}, "apiVersion": "v1"}
    stored = {"spec": {"containers": [{"name": "w", "image": "a", "imagePullPolicy": "IfNotPresent"}]}}
    assert _covers(stored, desired)
    assert not _covers(stored, {"spec": {"containers": [{"name": "w", "image": "b"}]}})
    assert not _covers(stored, {"spec": {"containers": [{"name": "w"}, {"name": "x"}]}})
    secret = {"data": {"k": base64.b64encode(b"body").decode()}}
    assert _covers(secret, {"stringData": {"k": "body"}})
    assert not _covers(secret, {"stringData": {"k": "other"}})
    assert not _covers({}, {"stringData": {"k": "body"}})


@pytest.mark.parametrize(
    ("asked", "stored"), [("1.5Gi", "1536Mi"), ("1e9", "1G"), ("1073741824", "1Gi"), ("10Gi", "10Gi"), ("750k", "750k")]
)
def test_a_quantity_the_apiserver_respelled_is_still_covered(asked: str, stored: str) -> None:
    """--worker-spill-size 1.5Gi reads back as 1536Mi: compared as text, every pass re-patched every StatefulSet."""
    volume = {"volumes": [{"name": "spill", "emptyDir": {"sizeLimit": stored}}]}
    assert _covers(volume, {"volumes": [{"name": "spill", "emptyDir": {"sizeLimit": asked}}]})
    assert not _covers(volume, {"volumes": [{"name": "spill", "emptyDir": {"sizeLimit": "2Gi"}}]})


# --- the watch cache and the memo of our own writes --------------------------------------------------------------


def _obj(name: str, rv: str, **extra: Any) -> JsonObj:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv}, **extra}


def test_a_lagging_index_is_corrected_by_what_we_wrote_until_it_catches_up() -> None:
    index: dict[str, dict[Any, list[JsonObj]]] = {"statefulsets": {("ns", "s"): [_obj("s", "5", replicas=1)]}}
    memo = children.WriteMemo()
    view = children.IndexView(index, memo)
    assert view.get("statefulsets", "ns", "s")["replicas"] == 1  # type: ignore[index]
    view.wrote("statefulsets", _obj("s", "7", replicas=0))
    assert view.get("statefulsets", "ns", "s")["replicas"] == 0  # type: ignore[index]  # index still at 5
    index["statefulsets"][("ns", "s")] = [_obj("s", "9", replicas=3)]
    assert view.get("statefulsets", "ns", "s")["replicas"] == 3  # type: ignore[index]  # caught up and past
    assert len(memo) == 0
    view.dropped("statefulsets", "ns", "s")
    assert view.get("statefulsets", "ns", "s") is None  # deleted by us, the index has not seen it yet
    view.wrote("statefulsets", _obj("new", "11"))
    assert view.get("statefulsets", "ns", "new") is not None  # created by us, not in the index yet


def test_the_memo_expires() -> None:
    memo = children.WriteMemo(ttl=0.0)
    memo.put("pods", _obj("p", "3"))
    time.sleep(0.01)
    assert memo.newer("pods", "ns", "p", None) is None


def test_index_keeps_only_metadata_of_secrets_the_operator_did_not_create() -> None:
    user = {
        "metadata": {"name": "creds", "labels": {"team": "a"}, "annotations": {"x": "y"}},
        "data": {"pw": "c2VjcmV0"},
    }
    assert children.index_entry("secrets", user) == {"metadata": {"name": "creds", "labels": {"team": "a"}}}
    ours = {"metadata": {"name": "cfg", "labels": {"app.kubernetes.io/managed-by": "sluice-operator"}}, "data": {}}
    assert children.index_entry("secrets", ours) == ours
    sts = {"metadata": {"name": "s", "managedFields": [{"manager": "kopf"}]}, "spec": {"replicas": 1}, "status": {}}
    assert children.index_entry("statefulsets", sts) == {"metadata": {"name": "s"}, "spec": {"replicas": 1}}
    pod = {"metadata": {"name": "p"}, "status": {"phase": "Running"}}
    assert children.index_entry("pods", pod) == pod


# --- a whole pass against an in-memory apiserver ---------------------------------------------------------------


class _Api:
    """Just enough of an apiserver for a reconcile pass: objects by path, merge patches, resourceVersions."""

    def __init__(self, *objects: tuple[str, JsonObj]) -> None:
        self.store: dict[str, JsonObj] = {}
        self.requests: list[tuple[str, str]] = []
        self.rv = 1
        self.index: dict[str, dict[Any, list[JsonObj]]] = {p: {} for p in children.INDEXED}
        self.watching = True
        for path, obj in objects:
            self._put(path, obj)

    def _put(self, path: str, obj: JsonObj) -> JsonObj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if "stringData" in obj:
            obj.setdefault("data", {}).update(
                {k: base64.b64encode(v.encode()).decode() for k, v in obj.pop("stringData").items()}
            )
        self.store[path] = obj
        plural = path.split("/")[-2]
        if self.watching and plural in self.index:
            meta = obj["metadata"]
            self.index[plural][(meta["namespace"], meta["name"])] = [children.index_entry(plural, obj)]
        return copy.deepcopy(obj)

    def get_or_none(self, path: str) -> JsonObj | None:
        self.requests.append(("GET", path))
        return copy.deepcopy(self.store.get(path))

    def create(self, path: str, body: JsonObj) -> JsonObj:
        self.requests.append(("POST", path))
        return self._put(f"{path}/{body['metadata']['name']}", copy.deepcopy(body))

    def merge_patch(self, path: str, body: JsonObj) -> JsonObj:
        self.requests.append(("PATCH", path))
        if path.endswith("/status"):
            target = self.store[path.removesuffix("/status")]
            target["status"] = _merge(target.get("status") or {}, body["status"])
            return self._put(path.removesuffix("/status"), target)
        return self._put(path, _merge(self.store[path], copy.deepcopy(body)))

    def delete(self, path: str, **_: Any) -> JsonObj | None:
        self.requests.append(("DELETE", path))
        return self.store.pop(path, None)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


CR_PATH = "/apis/sluice.dev/v1alpha1/namespaces/ns/connectors/c"


def _streaming_api() -> _Api:
    cr = _cr()
    cr["status"] = {}
    return _Api((CR_PATH, cr))


def _reconciler(api: _Api, metrics: OperatorMetrics | None = None) -> Reconciler:
    rec = Reconciler(api, OperatorSettings(), metrics)  # type: ignore[arg-type]
    # The slot is measured on the source database, which these tests do not have: a fixed answer.
    rec._slot = lambda cr, **_: SlotInfo("s", exists=False)  # type: ignore[method-assign]
    return rec


def _pass(api: _Api, rec: Reconciler, *, indexed: bool) -> list[tuple[str, str]]:
    api.requests.clear()
    view = children.IndexView(api.index, rec.memo) if indexed else None
    rec.reconcile("ns", "c", view)
    return [r for r in api.requests if not r[1].endswith("/events")]  # Events are posted on transitions


def test_a_pass_reads_children_from_the_index_and_writes_nothing_when_nothing_changed() -> None:
    api = _streaming_api()
    metrics = OperatorMetrics()
    rec = _reconciler(api, metrics)
    first = _pass(api, rec, indexed=True)
    assert [m for m, _ in first].count("POST") >= 5  # SA, Role, RoleBinding, Secret, StatefulSet created
    assert ("PATCH", CR_PATH + "/status") in first
    # the worker's pod appears and it reports; the operator's next pass has something to say (conditions)
    pod_path = "/api/v1/namespaces/ns/pods/c-worker-0"
    api._put(pod_path, {**_pod(), "metadata": {**_pod()["metadata"], "namespace": "ns"}})
    api.merge_patch(CR_PATH + "/status", {"status": {**_report(state="realtime"), "worker_reported_at": _fmt_now()}})
    second = _pass(api, rec, indexed=True)
    assert second == [("GET", CR_PATH), ("PATCH", CR_PATH + "/status")]  # no GET of a child, no child written
    third = _pass(api, rec, indexed=True)
    assert third == [("GET", CR_PATH)]  # nothing changed: nothing written
    sample = metrics.registry.get_sample_value
    assert sample("sluice_operator_writes_total", {"what": "status", "outcome": "skipped"}) == 1
    assert sample("sluice_operator_writes_total", {"what": "statefulsets", "outcome": "skipped"}) == 2
    # without the index: the same decisions, by GET
    fourth = _pass(api, rec, indexed=False)
    assert ("GET", "/apis/apps/v1/namespaces/ns/statefulsets/c-worker") in fourth or any(
        m == "GET" and "statefulsets" in p for m, p in fourth
    )
    assert [m for m, _ in fourth if m != "GET"] == []


def test_a_changed_spec_is_written_to_the_children_and_kept_in_the_status_owned_by_its_writer() -> None:
    api = _streaming_api()
    rec = _reconciler(api)
    _pass(api, rec, indexed=True)
    api.store[CR_PATH]["spec"]["disabled"] = True
    api.watching = False  # the watch lags: the next pass must not be fooled by the StatefulSet it shows
    writes = [r for r in _pass(api, rec, indexed=True) if r[0] != "GET"]
    sts_path = f"/apis/apps/v1/namespaces/ns/statefulsets/{naming.statefulset_name('c')}"
    assert ("PATCH", sts_path) in writes and api.store[sts_path]["spec"]["replicas"] == 0
    assert api.store[CR_PATH]["status"]["state"] == "disabled"
    again = [r for r in _pass(api, rec, indexed=True) if r[0] != "GET"]
    assert ("PATCH", sts_path) not in again  # the memo of our write stands in for the lagging watch


def _fmt_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the worker's side ---------------------------------------------------------------------------------------------


class _StatusSink:
    def __init__(self) -> None:
        self.patches: list[JsonObj] = []

    def merge_patch(self, path: str, body: JsonObj) -> JsonObj:
        self.patches.append(body["status"])
        return {}


def _wait(check: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_worker_sends_a_report_again_only_when_it_changed_or_for_the_heartbeat() -> None:
    sink = _StatusSink()
    reporter = KubernetesStatusReporter("ns", "c", client=sink, min_interval=0.02, heartbeat=60, pod="p")  # type: ignore[arg-type]
    try:
        status = WorkerStatus(connector="c", run_id="r", state="realtime", lag_bytes=1)
        reporter.report(status)
        _wait(lambda: len(sink.patches) == 1)
        for _ in range(5):
            reporter.report(status)
            time.sleep(0.03)
        _wait(lambda: reporter.skipped >= 1)
        assert len(sink.patches) == 1
        status.lag_bytes = 2
        reporter.report(status)
        _wait(lambda: len(sink.patches) == 2)
        assert sink.patches[-1]["lag_bytes"] == 2
        assert worker_violations(sink.patches[-1]) == []
    finally:
        reporter.close()
