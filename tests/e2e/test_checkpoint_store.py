"""The ConfigMap checkpoint store against the real apiserver, as the worker's own ServiceAccount.

Each test creates a Connector and the worker's ServiceAccount, Role and RoleBinding exactly as the operator renders
them (``sluice.operator.builders``), so the store is also a check that the Role grants what it needs and no more.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.errors import ConflictError
from sluice.k8s.jsonclient import JsonClient, KubeError, api_path
from sluice.operator import builders, naming
from sluice.worker.checkpoints import Checkpoint
from sluice.worker.checkpoints.store import CHECKPOINT_KEY, ConfigMapCheckpointStore
from tests.support.cluster import poll

pytestmark = pytest.mark.e2e

CONNECTOR_ID = "orders"
CM_NAME = f"{CONNECTOR_ID}-checkpoint"

CONNECTOR: dict[str, Any] = {
    "apiVersion": "sluice.dev/v1alpha1",
    "kind": "Connector",
    "metadata": {"name": CONNECTOR_ID},
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


@dataclass
class Worker:
    namespace: str
    connector: dict[str, Any]
    admin: JsonClient
    #: authenticated as the worker's ServiceAccount, with only the Role the operator renders
    client: JsonClient
    kubeconfig: Path

    def store(self, writer: str = "") -> ConfigMapCheckpointStore:
        return ConfigMapCheckpointStore(self.client, self.namespace, CONNECTOR_ID, writer=writer)

    def configmap(self) -> dict[str, Any] | None:
        return self.admin.get_or_none(api_path("configmaps", self.namespace, CM_NAME))


@pytest.fixture
def worker(control_plane: ControlPlane, crd_installed: str, namespace: str) -> Iterator[Worker]:
    admin = JsonClient(control_plane.kubeconfig_path)
    body = copy.deepcopy(CONNECTOR)
    body["metadata"]["namespace"] = namespace
    cr = admin.create(api_path("connectors", namespace), body)
    for child in (builders.service_account(cr), builders.role(cr), builders.role_binding(cr)):
        plural = {"ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings"}[child["kind"]]
        admin.create(api_path(plural, namespace), child)
    kubeconfig = control_plane.user_kubeconfig(
        namespace=namespace, serviceaccount=naming.service_account_name(CONNECTOR_ID)
    )
    client = JsonClient(kubeconfig)
    # RBAC caches refresh asynchronously: wait until the Role is in force.
    poll(
        lambda: client.get_or_none(api_path("configmaps", namespace, CM_NAME)) is None,
        message="the worker Role to allow reading its checkpoint ConfigMap",
    )
    yield Worker(namespace, cr, admin, client, kubeconfig)


def test_save_load_clear_with_the_worker_role(worker: Worker) -> None:
    store = worker.store(writer="orders-worker-0")
    assert store.load() is None
    snapshot = Checkpoint(phase="snapshot", snapshot_position="0/16B3748", done_chunks=["public.orders#0"])
    store.save(snapshot)
    assert worker.store().load() == snapshot  # a new worker (a rescheduled pod) reads it back

    cm = worker.configmap()
    assert cm is not None
    assert Checkpoint.from_json(cm["data"][CHECKPOINT_KEY]) == snapshot
    assert cm["metadata"]["labels"] == naming.child_labels(CONNECTOR_ID)
    assert cm["metadata"]["annotations"]["sluice.dev/checkpoint-writer"] == "orders-worker-0"
    (owner,) = cm["metadata"]["ownerReferences"]
    assert owner["kind"] == "Connector" and owner["name"] == CONNECTOR_ID
    assert owner["uid"] == worker.connector["metadata"]["uid"]

    streaming = Checkpoint(phase="streaming", position="0/17000A0", snapshot_position="0/16B3748")
    store.save(streaming)
    assert worker.store().load() == streaming

    store.clear()
    assert worker.store().load() is None
    assert worker.configmap() is not None, "clear is an update: the ConfigMap (and its owner) stays"
    store.save(snapshot)  # starting over after a clear
    assert worker.store().load() == snapshot


def test_the_worker_role_reaches_no_other_configmap(worker: Worker) -> None:
    with pytest.raises(KubeError) as info:
        worker.client.get(api_path("configmaps", worker.namespace, "kube-root-ca.crt"))
    assert info.value.status == 403
    with pytest.raises(KubeError) as info:
        worker.client.list(api_path("configmaps", worker.namespace))
    assert info.value.status == 403


def test_two_workers_cannot_both_win(worker: Worker) -> None:
    a, b = worker.store(writer="pod-a"), worker.store(writer="pod-b")
    # Both start on an empty connector: the first create wins, the second learns it lost.
    assert a.load() is None and b.load() is None
    a.save(Checkpoint(phase="snapshot", snapshot_position="0/1"))
    with pytest.raises(ConflictError) as info:
        b.save(Checkpoint(phase="snapshot", snapshot_position="0/2"))
    assert "pod-a" in info.value.message and "only one worker" in info.value.fix
    # The loser cannot win by retrying, however often; the winner keeps going.
    a.save(Checkpoint(phase="streaming", position="0/10", snapshot_position="0/1"))
    for _ in range(2):
        with pytest.raises(ConflictError):
            b.save(Checkpoint(phase="streaming", position="0/20", snapshot_position="0/2"))
    with pytest.raises(ConflictError):
        b.clear()
    assert worker.store().load() == Checkpoint(phase="streaming", position="0/10", snapshot_position="0/1")

    # Both read the same stored checkpoint, then both write: again exactly one succeeds.
    c, d = worker.store(writer="pod-c"), worker.store(writer="pod-d")
    assert c.load() == d.load()
    c.save(Checkpoint(phase="streaming", position="0/30", snapshot_position="0/1"))
    with pytest.raises(ConflictError):
        d.save(Checkpoint(phase="streaming", position="0/31", snapshot_position="0/1"))
    assert worker.store().load() == Checkpoint(phase="streaming", position="0/30", snapshot_position="0/1")


def test_a_metadata_change_by_someone_else_is_no_conflict(worker: Worker) -> None:
    store = worker.store()
    store.save(Checkpoint(phase="snapshot", snapshot_position="0/1"))
    # e.g. a user labels it: the resourceVersion moves on, the checkpoint does not.
    worker.admin.merge_patch(api_path("configmaps", worker.namespace, CM_NAME), {"metadata": {"labels": {"x": "y"}}})
    later = Checkpoint(phase="streaming", position="0/10", snapshot_position="0/1")
    store.save(later)
    assert worker.store().load() == later
    cm = worker.configmap()
    assert cm is not None and cm["metadata"]["labels"]["x"] == "y"


def test_the_checkpoint_is_deleted_with_its_connector(worker: Worker) -> None:
    worker.store().save(Checkpoint(phase="snapshot", snapshot_position="0/1"))
    assert worker.configmap() is not None
    worker.admin.delete(api_path("connectors", worker.namespace, CONNECTOR_ID))
    poll(lambda: worker.configmap() is None, timeout=60, message="the garbage collector to delete the ConfigMap")


_IN_POD = """
import sys
from sluice.worker.checkpoints import Checkpoint
from sluice.worker.checkpoints.store import ConfigMapCheckpointStore, default_store
store = default_store("orders")
assert isinstance(store, ConfigMapCheckpointStore), type(store)
store.save(Checkpoint(phase="complete", position="0/99"))
"""


def test_default_store_in_a_pod_is_the_configmap_store(worker: Worker) -> None:
    # What the operator's pod template sets; the kubeconfig stands in for the pod's service-account token (the
    # kubernetes package reads KUBECONFIG when imported, hence a process of its own).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUICE_", "KUBERNETES_"))}
    env.update(
        SLUICE_STATUS_REPORTER="kubernetes",
        SLUICE_CONNECTOR_NAMESPACE=worker.namespace,
        SLUICE_CONNECTOR_NAME=CONNECTOR_ID,
        KUBECONFIG=str(worker.kubeconfig),
    )
    done = subprocess.run([sys.executable, "-c", _IN_POD], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert worker.store().load() == Checkpoint(phase="complete", position="0/99")
