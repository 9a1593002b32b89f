"""Process-node fixture: one :class:`sluice.devstack.processnode.ProcessNode` per session on the control plane.

- ``process_node`` (session): a registered, Ready node that runs pods bound to it as local processes. It uses a
  kubelet's identity (``system:node:<name>``), so the Node authorizer limits it as a real kubelet is limited.
  Pod logs: ``process_node.log_path(namespace, pod, container)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processnode import ProcessNode
from tests.support.cluster import poll

NODE_NAME = "sluice-test-node"


@pytest.fixture(scope="session")
def process_node(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessNode]:
    workdir: Path = tmp_path_factory.mktemp("process-node")
    node = ProcessNode(control_plane.node_kubeconfig(NODE_NAME), workdir, name=NODE_NAME, backoff_base=1.0)
    node.start()

    def ready() -> bool:
        out = control_plane.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        obj = json.loads(out.stdout)
        conditions = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
        taints = [t["key"] for t in obj.get("spec", {}).get("taints", []) or []]
        return conditions.get("Ready") == "True" and not taints

    poll(ready, timeout=60, message=f"node {NODE_NAME} Ready without taints")
    try:
        yield node
    finally:
        node.stop()


__all__ = ["NODE_NAME", "process_node"]
