"""Where the worker writes spill files: streamed transactions too large to hold in memory.

In a pod the root filesystem is read-only, so the operator mounts an ``emptyDir`` volume (``spill``) and points
``SLUICE_SPILL_DIR`` (and ``TMPDIR``) at it. Outside a pod the variable is usually unset and Python's default
temporary directory is used.
"""

from __future__ import annotations

import os

__all__ = ["SPILL_DIR_ENV", "spill_dir"]

SPILL_DIR_ENV = "SLUICE_SPILL_DIR"


def spill_dir() -> str | None:
    """The directory for spill files (``$SLUICE_SPILL_DIR``), or None for Python's temporary directory.

    Meant as ``tempfile.TemporaryFile(prefix="sluice-tx-", dir=spill_dir())``: an empty value counts as unset.
    """
    return os.environ.get(SPILL_DIR_ENV) or None
