"""The generated Connector CRD, checked against the real apiserver.

What a user of ``kubectl`` sees: the CRD is Established, every shipped sample applies (also as a server-side dry
run), ``kubectl explain`` documents the fields, defaults are filled in, and invalid connectors are refused by the
apiserver itself with a message naming the offending field.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice import kinds
from sluice.devstack import ControlPlane
from tests.support.cluster import CRD_NAME, REPO_ROOT, get_json, poll

pytestmark = pytest.mark.e2e

SAMPLES_DIR = REPO_ROOT / "manifests" / "samples"
API_VERSION = "sluice.dev/v1alpha1"


def _samples() -> list[Any]:
    files = sorted(p for p in SAMPLES_DIR.glob("*.y*ml") if p.name != "kustomization.yaml")
    if not files:
        # Parametrize with a marker that fails, so "no samples" can never pass silently.
        return [pytest.param(None, id="no-samples-found")]
    return [pytest.param(p, id=p.stem) for p in files]


def _connector(name: str = "valid") -> dict[str, Any]:
    """A small valid Connector: PostgreSQL to PostgreSQL, passwords by Secret reference."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Connector",
        "metadata": {"name": name},
        "spec": {
            "source": {
                "postgres": {
                    "connection": {
                        "host": "source.example.svc",
                        "user": "replicator",
                        "password_secret_ref": {"name": "creds", "key": "source"},
                        "database": "app",
                    },
                    "replication_type": {"logical_replication": {}},
                }
            },
            "sink": {
                "postgres": {
                    "connection": {
                        "host": "sink.example.svc",
                        "user": "writer",
                        "password_secret_ref": {"name": "creds", "key": "sink"},
                        "database": "warehouse",
                    }
                }
            },
        },
    }


def test_crd_is_established_with_status_and_printer_columns(control_plane: ControlPlane, crd_installed: str) -> None:
    crd = get_json(control_plane, "crd", CRD_NAME)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions.get("Established") == "True", conditions
    assert conditions.get("NamesAccepted") == "True", conditions
    assert crd["spec"]["group"] == "sluice.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["kind"] == "Connector"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    assert version["served"] and version["storage"]
    assert "status" in version.get("subresources", {})
    columns = {c["name"].lower() for c in version.get("additionalPrinterColumns", [])}
    for wanted in ("source", "sink", "state", "ready", "lag", "age"):
        assert any(wanted in c for c in columns), f"no printer column for {wanted!r} in {sorted(columns)}"


@pytest.mark.parametrize("sample", _samples())
def test_sample_applies(control_plane: ControlPlane, crd_installed: str, namespace: str, sample: Path | None) -> None:
    assert sample is not None, f"no samples under {SAMPLES_DIR.relative_to(REPO_ROOT)}"
    dry = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(sample), check=False)
    assert dry.returncode == 0, dry.stderr
    assert "(server dry run)" in dry.stdout
    # A dry run persists nothing.
    assert control_plane.kubectl("get", "-n", namespace, "-f", str(sample), check=False).returncode != 0

    applied = control_plane.kubectl("apply", "-n", namespace, "-f", str(sample), check=False)
    assert applied.returncode == 0, applied.stderr
    objects = json.loads(control_plane.kubectl("get", "-n", namespace, "-f", str(sample), "-o", "json").stdout)
    items = objects.get("items", [objects])
    documents = [d for d in yaml.safe_load_all(sample.read_text()) if d]
    assert len(items) == len(documents)
    for doc, obj in zip(documents, items, strict=True):
        assert (obj["kind"], obj["metadata"]["name"]) == (doc["kind"], doc["metadata"]["name"])
        if doc["kind"] == "Connector":
            # What the user wrote survives the round trip through the schema (no field was pruned).
            _assert_contains(obj["spec"], doc["spec"], "spec")


def _assert_contains(actual: Any, expected: Any, path: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}.{key} was dropped by the apiserver (pruned: not in the schema?)"
            _assert_contains(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{path}: {actual!r} != {expected!r}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_contains(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def test_defaults_are_filled_in_by_the_apiserver(
    control_plane: ControlPlane, crd_installed: str, namespace: str
) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_connector("defaults")))
    spec = get_json(control_plane, "connector", "defaults", "-n", namespace)["spec"]
    source = spec["source"]["postgres"]
    conn = source["connection"]
    assert conn["port"] == 5432
    assert conn["ssl_mode"] == "Prefer"
    assert source["parallel_snapshots_enabled"] is True
    assert source["partitions_as_root"] is False
    logical = source["replication_type"]["logical_replication"]
    assert logical["retry_window_seconds"] == 300
    assert logical["skip_snapshots"] is False
    assert spec["sink"]["postgres"]["connection"]["port"] == 5432
    assert spec.get("disabled") is False


def test_status_subresource_is_served(control_plane: ControlPlane, crd_installed: str, namespace: str) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(_connector("with-status")))
    raw = control_plane.kubectl(
        "get", "--raw", f"/apis/{API_VERSION}/namespaces/{namespace}/connectors/with-status/status"
    ).stdout
    assert json.loads(raw)["metadata"]["name"] == "with-status"
    listing = control_plane.kubectl("get", "connectors", "-n", namespace).stdout
    assert "with-status" in listing


def test_explain_documents_the_connection_fields(control_plane: ControlPlane, crd_installed: str) -> None:
    out = control_plane.kubectl("explain", "connectors.spec.source.postgres.connection").stdout
    assert "DESCRIPTION:" in out
    fields = _explained_fields(out)
    for wanted in ("host", "port", "user", "password", "password_secret_ref", "database", "ssl_mode"):
        assert wanted in fields, f"{wanted} not listed by kubectl explain:\n{out}"
    undocumented = sorted(name for name, doc in fields.items() if not doc)
    assert not undocumented, f"fields without a description: {undocumented}\n{out}"

    ssl_mode = control_plane.kubectl("explain", "connectors.spec.source.postgres.connection.ssl_mode").stdout
    for value in ("Prefer", "Require", "Disable", "VerifyCa", "VerifyFull"):
        assert value in ssl_mode, f"enum value {value} not shown:\n{ssl_mode}"


def _explained_fields(out: str) -> dict[str, str]:
    """Field name -> description text from kubectl explain's FIELDS section."""
    fields: dict[str, str] = {}
    lines = out.split("FIELDS:", 1)[1].splitlines() if "FIELDS:" in out else []
    current: str | None = None
    for line in lines:
        match = re.match(r"^  (\w+)\t?\s*<", line)
        if match:
            current = match.group(1)
            fields[current] = ""
        elif current and line.startswith("    ") and line.strip():
            fields[current] += line.strip() + " "
    return fields


def _invalid(mutate: str) -> dict[str, Any]:
    doc = _connector(f"bad-{mutate.replace('_', '-')}")
    spec = doc["spec"]
    conn = spec["source"]["postgres"]["connection"]
    if mutate == "two_source_kinds":
        spec["source"]["mysql"] = {
            "connection": {"host": "m", "user": "u", "database": "d", "password_secret_ref": {"name": "c", "key": "k"}}
        }
    elif mutate == "no_source_kind":
        spec["source"] = {}
    elif mutate == "no_sink":
        del spec["sink"]
    elif mutate == "port_70000":
        conn["port"] = 70000
    elif mutate == "unknown_ssl_mode":
        conn["ssl_mode"] = "Sometimes"
    elif mutate == "unknown_field":
        conn["bogus_field"] = True
    elif mutate == "two_replication_types":
        spec["source"]["postgres"]["replication_type"]["snapshot"] = {}
    else:  # pragma: no cover - a typo in the parametrization below
        raise AssertionError(mutate)
    return copy.deepcopy(doc)


# (mutation, the field path the apiserver's message must name, another word the message must contain)
INVALID_CASES = [
    ("two_source_kinds", "spec.source", "exactly one"),
    ("no_source_kind", "spec.source", "exactly one"),
    ("no_sink", "spec.sink", "Required value"),
    ("port_70000", "spec.source.postgres.connection.port", "65535"),
    ("unknown_ssl_mode", "spec.source.postgres.connection.ssl_mode", "Unsupported value"),
    ("unknown_field", "spec.source.postgres.connection.bogus_field", "unknown field"),
    ("two_replication_types", "spec.source.postgres.replication_type", "exactly one"),
]


@pytest.mark.parametrize(("mutation", "field", "word"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "apply"])
def test_apiserver_rejects_invalid_connector(
    control_plane: ControlPlane,
    crd_installed: str,
    namespace: str,
    mutation: str,
    field: str,
    word: str,
    dry_run: bool,
) -> None:
    doc = _invalid(mutation)
    args = ["apply", "--validate=strict", "-n", namespace, "-f", "-"]
    if dry_run:
        args.insert(1, "--dry-run=server")
    result = control_plane.kubectl(*args, input=json.dumps(doc), check=False)
    assert result.returncode != 0, f"accepted: {result.stdout}"
    message = result.stderr
    # The apiserver, not kubectl's client side, refused it...
    assert "is invalid" in message or "strict decoding error" in message or "BadRequest" in message, message
    # ...naming the field and the problem.
    assert field in message, f"message does not name {field}: {message}"
    assert word.lower() in message.lower(), f"message does not say {word!r}: {message}"
    name = doc["metadata"]["name"]
    assert control_plane.kubectl("get", "connector", name, "-n", namespace, check=False).returncode != 0


def test_valid_base_connector_is_accepted(control_plane: ControlPlane, crd_installed: str, namespace: str) -> None:
    """The base the invalid cases mutate is itself valid, so each rejection is down to its one mutation."""
    result = control_plane.kubectl(
        "apply", "--validate=strict", "-n", namespace, "-f", "-", input=json.dumps(_connector()), check=False
    )
    assert result.returncode == 0, result.stderr
    poll(lambda: get_json(control_plane, "connector", "valid", "-n", namespace), message="the valid connector")


def test_install_manifests_pass_server_side_validation(control_plane: ControlPlane, crd_installed: str) -> None:
    """``kubectl apply -k manifests/`` (the documented install) is accepted by the apiserver, as a server dry run.

    Client-side apply, as users run it: it stores the whole object in an annotation, which fails once the CRD
    outgrows 256 KiB. The namespace is created for real first (a dry-run namespace cannot hold dry-run objects),
    so PodSecurity admission judges the Deployments against the namespace's `restricted` label.
    """
    control_plane.kubectl("apply", "-f", str(REPO_ROOT / "manifests" / "namespace.yaml"))
    result = control_plane.kubectl("apply", "-k", str(REPO_ROOT / "manifests"), "--dry-run=server", check=False)
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/sluice-operator" in result.stdout
    assert "would violate PodSecurity" not in result.stderr, result.stderr


# A sink and a source valid by the schema whose kinds this version does not run: only availability is refused.
CLICKHOUSE_SINK: dict[str, Any] = {
    "connection": {
        "http_url": "https://clickhouse.example.svc:8443",
        "user": "u",
        "password_secret_ref": {"name": "c", "key": "k"},
    },
    "target_database": "dw",
}


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "apply"])
def test_apiserver_refuses_an_unavailable_kind_with_the_rest_api_message(
    control_plane: ControlPlane, crd_installed: str, namespace: str, dry_run: bool
) -> None:
    doc = _connector("with-clickhouse")
    doc["spec"]["sink"] = {"clickhouse": copy.deepcopy(CLICKHOUSE_SINK)}
    args = ["apply", "--validate=strict", "-n", namespace, "-f", "-"]
    if dry_run:
        args.insert(1, "--dry-run=server")
    result = control_plane.kubectl(*args, input=json.dumps(doc), check=False)
    assert result.returncode != 0, f"accepted: {result.stdout}"
    refusal = kinds.unavailable("sink", "clickhouse")
    message = " ".join(result.stderr.split())
    assert "spec.sink.clickhouse: Forbidden" in message, message
    # Word for word what POST /api/v1/connectors answers (message and fix; see tests/e2e/test_api.py).
    assert refusal.message in message, message
    assert refusal.fix in message, message
    available = ", ".join(kinds.AVAILABLE_SINKS)
    assert f"sink.clickhouse is not available in this version of Sluice yet; available sinks: {available}" in message
    assert control_plane.kubectl("get", "connector", "with-clickhouse", "-n", namespace, check=False).returncode != 0


def test_apiserver_refuses_an_unavailable_source_kind(
    control_plane: ControlPlane, crd_installed: str, namespace: str
) -> None:
    doc = _connector("with-oracle")
    doc["spec"]["source"] = {
        "oracle": {
            "connection": {
                "connect_string": "oracle.example.svc:1521/app",
                "user": "u",
                "password_secret_ref": {"name": "c", "key": "k"},
            },
            "replication_type": {"log_miner": {}},
        }
    }
    result = control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc), check=False)
    assert result.returncode != 0, f"accepted: {result.stdout}"
    message = " ".join(result.stderr.split())
    assert "spec.source.oracle: Forbidden" in message, message
    assert kinds.unavailable("source", "oracle").text in message, message
