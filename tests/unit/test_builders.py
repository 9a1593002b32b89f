"""Golden-file tests of the operator's child objects: what the operator creates is reviewed as YAML.

Regenerate after an intended change with ``SLUICE_UPDATE_GOLDEN=1 pytest tests/unit/test_builders.py`` and
review the diff of ``tests/data/golden/builders/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluice.operator import builders, naming

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "builders"

CONNECTOR: dict[str, Any] = {
    "apiVersion": "sluice.dev/v1alpha1",
    "kind": "Connector",
    "metadata": {"name": "orders", "namespace": "shop", "uid": "0a1b2c3d-0000-4000-8000-000000000001", "generation": 3},
    "spec": {
        "name": "Orders",
        "disabled": False,
        "source": {
            "postgres": {
                "connection": {
                    "host": "db.shop.svc",
                    "user": "replicator",
                    "password_secret_ref": {"name": "orders-db", "key": "source.password"},
                    "database": "orders",
                },
                "replication_type": {"logical_replication": {}},
            }
        },
        "sink": {
            "postgres": {
                "connection": {
                    "host": "dwh.shop.svc",
                    "user": "writer",
                    "password_secret_ref": {"name": "dwh", "key": "password"},
                    "database": "dwh",
                }
            }
        },
    },
}
SETTINGS = builders.WorkerSettings(image="sluice:test")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the rendered config) as literal blocks, so the golden file reads like the config."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _check(name: str, obj: Any) -> None:
    text = yaml.dump(obj, Dumper=_Dumper, sort_keys=False)
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("SLUICE_UPDATE_GOLDEN") or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if not os.environ.get("SLUICE_UPDATE_GOLDEN"):
            pytest.fail(f"golden file {path.name} was missing and has been written; review and commit it")
    assert text == path.read_text(), f"{name} differs from {path}; rerun with SLUICE_UPDATE_GOLDEN=1 if intended"


@pytest.mark.parametrize(
    ("name", "render"),
    [
        ("config-secret", lambda: builders.config_secret(CONNECTOR)),
        ("serviceaccount", lambda: builders.service_account(CONNECTOR)),
        ("role", lambda: builders.role(CONNECTOR)),
        ("rolebinding", lambda: builders.role_binding(CONNECTOR)),
        ("statefulset", lambda: builders.statefulset(CONNECTOR, SETTINGS, replicas=1, run_id="run-1")),
        ("statefulset-disabled", lambda: builders.statefulset(CONNECTOR, SETTINGS, replicas=0, run_id="run-1")),
    ],
)
def test_golden(name: str, render: Any) -> None:
    _check(name, render())


def test_config_holds_no_referenced_secret_and_no_operator_fields() -> None:
    config = builders.worker_config(CONNECTOR)
    assert config["id"] == "orders"
    assert "disabled" not in config and "schedule" not in config
    assert "password" not in config["source"]["postgres"]["connection"]


def test_secret_refs_are_projected_as_files_the_worker_reads() -> None:
    sts = builders.statefulset(CONNECTOR, SETTINGS, replicas=1, run_id="r")
    pod = sts["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["SLUICE_SECRETS_DIR"] == builders.SECRETS_MOUNT
    (credentials,) = [v for v in pod["volumes"] if v["name"] == "credentials"]
    items = {
        (s["secret"]["name"], i["key"], i["path"])
        for s in credentials["projected"]["sources"]
        for i in s["secret"]["items"]
    }
    assert items == {("orders-db", "source.password", "orders-db/source.password"), ("dwh", "password", "dwh/password")}


def test_spec_change_changes_config_hash_but_disable_does_not() -> None:
    before = builders.config_hash(CONNECTOR, SETTINGS)
    edited = yaml.safe_load(yaml.safe_dump(CONNECTOR))
    edited["spec"]["limits"] = {"cdc": {"flush_interval_ms": 100}}
    assert builders.config_hash(edited, SETTINGS) != before
    disabled = yaml.safe_load(yaml.safe_dump(CONNECTOR))
    disabled["spec"]["disabled"] = True
    assert builders.config_hash(disabled, SETTINGS) == before


def test_single_worker_guarantees() -> None:
    sts = builders.statefulset(CONNECTOR, SETTINGS, replicas=1, run_id="r")
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    with pytest.raises(ValueError, match="at most one"):
        builders.statefulset(CONNECTOR, SETTINGS, replicas=2, run_id="r")


def test_role_is_limited_to_its_own_connector() -> None:
    rules = builders.role(CONNECTOR)["rules"]
    named = [r for r in rules if "resourceNames" in r]
    assert {tuple(r["resourceNames"]) for r in named} == {("orders",), ("orders-checkpoint",)}
    assert {v for r in named for v in r["verbs"]} <= {"get", "patch", "update"}
    # Kubernetes cannot limit a create by name: the one unnamed rule creates the checkpoint ConfigMap.
    unnamed = [r for r in rules if "resourceNames" not in r]
    assert unnamed == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]


def test_long_ids_give_valid_child_names() -> None:
    long_id = "a" * 63
    name = naming.statefulset_name(long_id)
    assert len(name) <= 52 and name.endswith("-worker")
    assert naming.statefulset_name("b" * 63) != naming.statefulset_name("a" * 63)


def test_worker_writes_only_to_its_spill_volume() -> None:
    sts = builders.statefulset(CONNECTOR, builders.WorkerSettings(spill_size_limit="3Gi"), replicas=1, run_id="r")
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    (spill,) = [v for v in pod["volumes"] if v["name"] == "spill"]
    assert spill == {"name": "spill", "emptyDir": {"sizeLimit": "3Gi"}}
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    assert writable == [builders.SPILL_MOUNT]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SLUICE_SPILL_DIR"] == env["TMPDIR"] == builders.SPILL_MOUNT


def test_probes_ask_the_worker_on_its_declared_metrics_port() -> None:
    sts = builders.statefulset(CONNECTOR, builders.WorkerSettings(metrics_port=9200), replicas=1, run_id="r")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    assert port == {"name": "metrics", "containerPort": 9200}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SLUICE_METRICS_PORT"] == "9200"
    paths = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths == {
        "startupProbe": {"path": "/healthz", "port": "metrics"},
        "livenessProbe": {"path": "/healthz", "port": "metrics"},
        "readinessProbe": {"path": "/readyz", "port": "metrics"},
    }
    liveness = container["livenessProbe"]
    # A stall must last failureThreshold periods before a restart; the startup probe covers the slow start.
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30
    assert "initialDelaySeconds" not in liveness
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_no_probes_without_the_metrics_port() -> None:
    sts = builders.statefulset(CONNECTOR, builders.WorkerSettings(metrics_port=0), replicas=1, run_id="r")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert not {"ports", "startupProbe", "livenessProbe", "readinessProbe"} & set(container)
