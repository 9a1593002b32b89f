"""Where the Kubernetes control-plane binaries built by ``hack/build-k8s.sh`` live.

The script and this module must agree on one path, so the rule is written down twice on purpose and a unit
test compares ``K8S_VERSION`` with the script's default: ``$SLUICE_CACHE`` (default ``~/.cache/sluice``)
``/k8s/<version>/bin``. ``SLUICE_K8S_BIN_DIR`` points somewhere else entirely (e.g. binaries from a release
tarball).
"""

from __future__ import annotations

import os
from pathlib import Path

from sluice.errors import SluiceError

__all__ = ["BINARIES", "K8S_VERSION", "BinariesMissingError", "bin_dir", "find_binaries", "missing_binaries"]

#: The pinned Kubernetes release; keep equal to ``K8S_VERSION`` in ``hack/build-k8s.sh``.
K8S_VERSION = "v1.37.2"

BINARIES: tuple[str, ...] = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


class BinariesMissingError(SluiceError):
    """The control-plane binaries have not been built (yet)."""

    reason = "KubernetesBinariesMissing"
    default_fix = "Run 'bash hack/build-k8s.sh' (about 12 minutes cold on 2 cores; a no-op once built)."


def bin_dir() -> Path:
    """The directory the binaries are (or will be) in."""
    override = os.environ.get("SLUICE_K8S_BIN_DIR")
    if override:
        return Path(override).expanduser()
    cache = Path(os.environ.get("SLUICE_CACHE") or Path.home() / ".cache" / "sluice").expanduser()
    version = os.environ.get("K8S_VERSION") or K8S_VERSION
    return cache / "k8s" / version / "bin"


def missing_binaries(directory: Path | None = None) -> list[str]:
    """Names of the binaries that are not present and executable."""
    d = directory or bin_dir()
    return [b for b in BINARIES if not os.access(d / b, os.X_OK)]


def find_binaries(directory: Path | None = None) -> dict[str, Path]:
    """Map each binary name to its path, or raise :class:`BinariesMissingError` naming what is missing."""
    d = directory or bin_dir()
    missing = missing_binaries(d)
    if missing:
        raise BinariesMissingError(f"Kubernetes binaries missing from {d}: {', '.join(missing)}")
    return {b: d / b for b in BINARIES}
