"""The CRD and the pydantic models agree, checked on the real apiserver.

For every source and sink kind this version runs: a minimal connector goes through a server-side dry run (the
apiserver applies the CRD's defaults and CEL rules), and what comes back must be exactly what pydantic makes of the
same input — so the defaults, enums and one-of rules generated into the CRD cannot silently drift from the models.
Every other kind is refused by the apiserver with `sluice.kinds`' message, and for that reason alone. Status
written from `ConnectorStatus` must be accepted and read back unchanged.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from sluice import kinds
from sluice.devstack import ControlPlane
from sluice.models import Connector
from sluice.models.resource import API_VERSION, KIND, connector_from_resource
from sluice.models.status import Condition, ConnectorStatus
from tests.unit.test_models import MINIMAL_SINKS, MINIMAL_SOURCES

pytestmark = pytest.mark.e2e


def resource(object_name: str, source: dict[str, Any], sink: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": object_name},
        "spec": {"source": copy.deepcopy(source), "sink": copy.deepcopy(sink), **spec},
    }


def dry_run(plane: ControlPlane, namespace: str, obj: dict[str, Any]) -> Any:
    return plane.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(obj), check=False
    )


def assert_same_as_pydantic(plane: ControlPlane, namespace: str, obj: dict[str, Any]) -> None:
    result = dry_run(plane, namespace, obj)
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout)
    from_server = connector_from_resource(served)
    from_pydantic = Connector.model_validate({**obj["spec"], "id": obj["metadata"]["name"]})
    assert from_server == from_pydantic
    # Field by field too: the apiserver filled in exactly the defaults pydantic fills in, no more, no less —
    # except empty lists, which the models create (default_factory) and the CRD leaves out to keep CRs short.
    expected = from_pydantic.model_dump(mode="json", exclude_none=True, context={"reveal_secrets": True})
    expected.pop("id")
    assert served["spec"] == without_empty_lists(expected)


def without_empty_lists(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_empty_lists(v) for k, v in value.items() if v != []}
    if isinstance(value, list):
        return [without_empty_lists(v) for v in value]
    return value


def assert_same_as_pydantic_or_unavailable(
    plane: ControlPlane, namespace: str, obj: dict[str, Any], part: kinds.Part, kind: str
) -> None:
    """An available kind defaults like the models; any other is refused with `sluice.kinds`' words (and only
    for that reason: pydantic accepts the same spec, which is valid by the schema)."""
    if kind in kinds.available(part):
        assert_same_as_pydantic(plane, namespace, obj)
        return
    Connector.model_validate({**obj["spec"], "id": obj["metadata"]["name"]})
    result = dry_run(plane, namespace, obj)
    assert result.returncode != 0, f"{part}.{kind} accepted by the apiserver"
    errors = " ".join(result.stderr.split())
    assert f"spec.{part}.{kind}: Forbidden: {kinds.unavailable(part, kind).text}" in errors, errors
    assert errors.count("spec.") == 1, f"refused for more than the kind: {errors}"


@pytest.mark.parametrize("kind", list(MINIMAL_SOURCES))
def test_every_source_kind_defaults_like_the_models(
    control_plane: ControlPlane, crd_installed: str, namespace: str, kind: str
) -> None:
    obj = resource(
        f"src-{kind.replace('_', '-')}", {kind: MINIMAL_SOURCES[kind]}, {"postgres": MINIMAL_SINKS["postgres"]}
    )
    assert_same_as_pydantic_or_unavailable(control_plane, namespace, obj, "source", kind)


@pytest.mark.parametrize("kind", list(MINIMAL_SINKS))
def test_every_sink_kind_defaults_like_the_models(
    control_plane: ControlPlane, crd_installed: str, namespace: str, kind: str
) -> None:
    obj = resource(f"sink-{kind}", {"postgres": MINIMAL_SOURCES["postgres"]}, {kind: MINIMAL_SINKS[kind]})
    assert_same_as_pydantic_or_unavailable(control_plane, namespace, obj, "sink", kind)


def test_optional_parts_default_like_the_models(
    control_plane: ControlPlane, crd_installed: str, namespace: str
) -> None:
    source = copy.deepcopy(MINIMAL_SOURCES["postgres"])
    source["catalog"] = {"schemas": [{"name": "public", "tables": [{"name": "t", "columns": [{"name": "c"}]}]}]}
    sink = copy.deepcopy(MINIMAL_SINKS["postgres"])
    sink["migration_strategy"] = {"allowed": ["Add"]}
    obj = resource(
        "optional-parts",
        {"postgres": source},
        {"postgres": sink},
        buffer={"object_store": {"url": "file:///tmp/x", "options": [{"name": "n"}]}},
        limits={"cdc": {"flush_interval_ms": 5}, "snapshot": {}},
        schedule={"cron": {"expression": "0 3 * * *"}},
        name="Optional parts",
    )
    assert_same_as_pydantic(control_plane, namespace, obj)


@pytest.mark.parametrize(
    ("where", "mutate", "field", "needle"),
    [
        (
            "sqlserver auth with two methods",
            lambda s: s["source"]["sqlserver"]["connection"]["auth"].update(activedirectory={"token": "t"}),
            "spec.source.sqlserver.connection.auth",
            "exactly one of standard, windows, activedirectory must be set",
        ),
        (
            "webhook auth with no method",
            lambda s: s["sink"]["webhook"].update(auth={}),
            "spec.sink.webhook.auth",
            "exactly one of bearer, basic, header must be set",
        ),
        (
            "file format with two formats",
            lambda s: s["source"]["file_source"]["format_details"].update(csv={}),
            "spec.source.file_source.format_details",
            "exactly one of csv, json, parquet must be set",
        ),
        (
            "token and its reference",
            lambda s: s["sink"]["databricks"]["auth"]["pat"].update(
                personal_access_token_secret_ref={"name": "s", "key": "k"}
            ),
            "spec.sink.databricks.auth.pat",
            "give only one of personal_access_token and personal_access_token_secret_ref",
        ),
        (
            "schedule with both kinds",
            lambda s: s.update(schedule={"rate": {"value": 1, "unit": "Day"}, "cron": {"expression": "* * * * *"}}),
            "spec.schedule",
            "exactly one of rate, cron must be set",
        ),
    ],
)
def test_nested_rules_are_enforced_by_the_apiserver_like_pydantic(
    control_plane: ControlPlane,
    crd_installed: str,
    namespace: str,
    where: str,
    mutate: Any,
    field: str,
    needle: str,
) -> None:
    spec: dict[str, Any] = {
        "source": {
            "sqlserver": copy.deepcopy(MINIMAL_SOURCES["sqlserver"]),
            "file_source": copy.deepcopy(MINIMAL_SOURCES["file_source"]),
        },
        "sink": {
            "webhook": copy.deepcopy(MINIMAL_SINKS["webhook"]),
            "databricks": copy.deepcopy(MINIMAL_SINKS["databricks"]),
        },
    }
    mutate(spec)
    # Split the kitchen sink into a valid-kind connector that carries the one mutation under test.
    kind_of = {"source": field.split(".")[2] if field.startswith("spec.source") else "sqlserver"}
    kind_of["sink"] = field.split(".")[2] if field.startswith("spec.sink") else "webhook"
    obj = resource(
        "nested-rule",
        {kind_of["source"]: spec["source"][kind_of["source"]]},
        {kind_of["sink"]: spec["sink"][kind_of["sink"]]},
        **({"schedule": spec["schedule"]} if "schedule" in spec else {}),
    )
    result = dry_run(control_plane, namespace, obj)
    assert result.returncode != 0, f"{where}: accepted by the apiserver"
    assert field in result.stderr, result.stderr
    assert needle in result.stderr, result.stderr
    with pytest.raises(ValueError):  # pydantic refuses the same input
        connector_from_resource(obj)


def test_status_from_the_model_is_accepted_and_read_back(
    control_plane: ControlPlane, crd_installed: str, namespace: str
) -> None:
    obj = resource("with-status", {"postgres": MINIMAL_SOURCES["postgres"]}, {"postgres": MINIMAL_SINKS["postgres"]})
    control_plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(obj))
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    status = ConnectorStatus.model_validate(
        {
            "observedGeneration": 1,
            "conditions": [Condition(type="Ready", status="True", reason="Streaming", last_transition_time=now)],
            "source_kind": "postgres",
            "sink_kind": "postgres",
            "state": "realtime",
            "state_detail": {"name": "public.orders"},
            "status": {"type": "retry", "attempt": 2, "reason": "ConnectionReset"},
            "run_id": "run-1",
            "created_at": now,
            "tables": [{"name": "public.orders", "phase": "streaming", "rows_copied": 7, "chunks_done": 1}],
            "rows_applied": 42,
            "lag_bytes": 128,
            "lag_seconds": 0.5,
            "last_error": {"reason": "Transient", "message": "connection reset", "fix": "none needed", "time": now},
            "worker": {"pod": "with-status-0", "started_at": now},
            "written_by_a_newer_worker": {"anything": [1, 2]},
        }
    )
    patch = json.dumps({"status": status.model_dump(mode="json", exclude_none=True)})
    control_plane.kubectl(
        "patch", "connector", "with-status", "-n", namespace, "--subresource=status", "--type=merge", "-p", patch
    )
    served = json.loads(control_plane.kubectl("get", "connector", "with-status", "-n", namespace, "-o", "json").stdout)
    assert ConnectorStatus.model_validate(served["status"]) == status
    wide = control_plane.kubectl("get", "connector", "with-status", "-n", namespace).stdout.split("\n")
    assert wide[0].split()[:6] == ["NAME", "SOURCE", "SINK", "STATE", "READY", "LAG"]
    assert wide[1].split()[:6] == ["with-status", "postgres", "postgres", "realtime", "True", "0.5"]
