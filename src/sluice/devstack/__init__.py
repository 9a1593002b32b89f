"""Local development and test infrastructure: a real Kubernetes control plane on loopback, a process node and
sample databases.

Not product code: nothing under ``sluice.devstack`` runs in a cluster. Tests use the same code through
``tests/support/``, and ``make cluster-up`` through ``python -m sluice.devstack.controlplane``.

The names below are imported lazily (PEP 562): importing the package must not import ``controlplane`` itself,
or ``python -m sluice.devstack.controlplane`` would run a module that is already in ``sys.modules``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.devstack.binaries import (
        K8S_VERSION,
        BinariesMissingError,
        bin_dir,
        find_binaries,
        missing_binaries,
    )
    from sluice.devstack.controlplane import ControlPlane, ControlPlaneError, KubectlError, free_port

_EXPORTS = {
    "K8S_VERSION": "sluice.devstack.binaries",
    "BinariesMissingError": "sluice.devstack.binaries",
    "bin_dir": "sluice.devstack.binaries",
    "find_binaries": "sluice.devstack.binaries",
    "missing_binaries": "sluice.devstack.binaries",
    "ControlPlane": "sluice.devstack.controlplane",
    "ControlPlaneError": "sluice.devstack.controlplane",
    "KubectlError": "sluice.devstack.controlplane",
    "free_port": "sluice.devstack.controlplane",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
