"""Operator fixtures: ``sluice operator`` as a subprocess on the session's control plane and process node.

- ``sluice_operator`` (session): the operator running with the admin kubeconfig, Lease leader election in
  ``default``, a 2 s status refresh, worker metrics and probes on (the process node gives each worker pod's
  declared port a host port of its own, so workers do not collide on the shared host network).
  ``sluice_operator.log_tail()`` for failure messages.
- :func:`operator_namespace`: the operator only watches namespaces matching ``op-*`` (so API tests elsewhere in
  the session never see its finalizer); operator test modules override ``namespace`` with it.
- :func:`connector_resource` builds a Connector CR whose passwords come from a Secret (``*_secret_ref``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sluice.devstack import ControlPlane
from sluice.devstack.processes import tail
from sluice.devstack.processnode import ProcessNode
from tests.support.cluster import own_namespace, poll
from tests.support.pg import PgDatabase, connector_spec

NAMESPACE_GLOB = "op-*"


def operator_namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """Body of the ``namespace`` override in operator test modules: like the session-wide fixture, but named
    ``op-...`` so that the test operator (``--namespace op-*``) watches it."""
    yield from own_namespace(control_plane, request, "op")


@dataclass
class OperatorProcess:
    popen: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_operator(
    control_plane: ControlPlane, workdir: Path, *extra: str, namespace: str = NAMESPACE_GLOB
) -> OperatorProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"operator-{len(list(workdir.glob('operator-*.log')))}.log"
    port = _free_port()
    argv = [
        sys.executable, "-m", "sluice", "operator",
        "--kubeconfig", str(control_plane.kubeconfig_path),
        "--metrics-port", str(port), "--health-port", "0",
        "--refresh-seconds", "2",
        "--lease-namespace", "default", "--worker-image", "sluice:test",
        "--namespace", namespace,
        *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    with log_path.open("ab") as log:
        popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return OperatorProcess(popen, log_path, port)


def stop_operator(proc: OperatorProcess) -> None:
    if proc.popen.poll() is None:
        os.killpg(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(5)


@pytest.fixture(scope="session")
def sluice_operator(
    control_plane: ControlPlane,
    crd_installed: str,
    process_node: ProcessNode,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    proc = start_operator(control_plane, tmp_path_factory.mktemp("operator"))

    def leading() -> bool:
        if proc.popen.poll() is not None:
            pytest.fail(f"operator exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        return "operator started" in proc.log_path.read_text(errors="replace")

    poll(leading, timeout=60, message="the operator to lead and start")
    try:
        yield proc
    finally:
        stop_operator(proc)


def connector_resource(
    name: str,
    source: PgDatabase,
    sink: PgDatabase,
    secret: str,
    **options: Any,
) -> dict[str, Any]:
    """A Connector CR from ``source`` to ``sink``; passwords referenced from Secret ``secret`` (keys source/sink)."""
    spec = connector_spec(source, sink, connector_id=name, **options)
    spec.pop("id")
    for part, key in (("source", "source"), ("sink", "sink")):
        conn = spec[part]["postgres"]["connection"]
        conn.pop("password")
        conn["password_secret_ref"] = {"name": secret, "key": key}
    return {"apiVersion": "sluice.dev/v1alpha1", "kind": "Connector", "metadata": {"name": name}, "spec": spec}


def secret_resource(name: str, source: PgDatabase, sink: PgDatabase) -> dict[str, Any]:
    """The Secret ``connector_resource`` refers to, labelled for use by connectors (without the label the operator
    refuses the connector: ``SecretNotAllowed``)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"sluice.dev/usable-by-connectors": "true"}},
        "stringData": {
            "source": source.instance.superuser.password,
            "sink": sink.instance.superuser.password,
        },
    }


def apply(control_plane: ControlPlane, namespace: str, *objects: dict[str, Any]) -> None:
    body = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


__all__ = [
    "OperatorProcess",
    "apply",
    "connector_resource",
    "operator_namespace",
    "secret_resource",
    "sluice_operator",
    "start_operator",
    "stop_operator",
]
