"""Writing kubeconfig files.

Certificates are embedded (``*-data`` fields) rather than referenced by path, so a kubeconfig stays valid when it
is copied out of the cluster's work directory (``.sluice/kubeconfig``) or read by a process in another working
directory. Files are created 0600: they hold private keys or bearer tokens.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ["write_kubeconfig"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    user: str,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    token: str | None = None,
    namespace: str | None = None,
    cluster: str = "sluice",
) -> Path:
    """Write a one-context kubeconfig for ``user`` with either a client certificate or a bearer token."""
    if (client_cert_pem is None) == (token is None):
        raise ValueError("give exactly one of a client certificate or a token")
    creds: dict[str, Any] = {}
    if token is not None:
        creds["token"] = token
    else:
        assert client_key_pem is not None
        creds["client-certificate-data"] = _b64(client_cert_pem or b"")
        creds["client-key-data"] = _b64(client_key_pem)
    context: dict[str, Any] = {"cluster": cluster, "user": user}
    if namespace:
        context["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": cluster, "context": context}],
        "current-context": cluster,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    path.chmod(0o600)
    return path
