"""Local development and test infrastructure: a real Kubernetes control plane on loopback (and, later, a process
node and sample databases).

Not product code: nothing under ``sluice.devstack`` runs in a cluster. Tests use the same code through
``tests/support/cluster.py``, and ``make cluster-up`` through ``python -m sluice.devstack.controlplane``.
"""

from __future__ import annotations

from sluice.devstack.binaries import K8S_VERSION, BinariesMissingError, bin_dir, find_binaries, missing_binaries
from sluice.devstack.controlplane import ControlPlane, ControlPlaneError, KubectlError, free_port

__all__ = [
    "K8S_VERSION",
    "BinariesMissingError",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "bin_dir",
    "find_binaries",
    "free_port",
    "missing_binaries",
]
