"""How the operator's kopf logs in: in a pod, with its ServiceAccount; elsewhere, with the kubeconfig.

kopf's own kubeconfig reader takes a user's ``token`` but ignores ``tokenFile``, and then connects as
``system:anonymous``. A token kept in a file is how rotated credentials are handed to a process — the process node
gives each pod such a kubeconfig — so :func:`login` reads the file. kopf calls it again after a 401, which picks up a
rotated token.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import kopf
import yaml

__all__ = ["login", "token_file"]


def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """A kopf login handler: ServiceAccount, else kubeconfig; a kubeconfig user's ``tokenFile`` supplies the token."""
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is None or info.token or info.certificate_path or info.certificate_data or info.username:
        return info
    path = token_file()
    if path is None:
        return info
    return dataclasses.replace(info, token=path.read_text().strip())


def token_file() -> Path | None:
    """The current context's user's ``tokenFile`` in ``$KUBECONFIG`` (default ``~/.kube/config``), read as kopf and
    kubectl merge files: the first file naming the current context, a context or a user wins. A relative path is
    relative to the file that names it."""
    names = [n.strip() for n in os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)]
    current: str | None = None
    contexts: dict[str, dict[str, Any]] = {}
    users: dict[str, tuple[dict[str, Any], Path]] = {}
    for name in names:
        path = Path(name).expanduser()
        if not name or not path.is_file():
            continue
        config = yaml.safe_load(path.read_text()) or {}
        current = current or config.get("current-context")
        for item in config.get("contexts") or []:
            contexts.setdefault(item["name"], item.get("context") or {})
        for item in config.get("users") or []:
            users.setdefault(item["name"], (item.get("user") or {}, path.parent))
    user, base = users.get(contexts.get(current or "", {}).get("user", ""), ({}, Path()))
    found = user.get("tokenFile")
    return base / found if found else None
