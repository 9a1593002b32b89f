"""Resolve a container's environment the way the kubelet does, for the process node.

Kept apart from process handling so the rules (precedence, ``$(VAR)`` expansion, optional refs) are plain functions
over dicts. Lookups of Secrets and ConfigMaps go through a callable, so a missing object or key can be reported as
the kubelet reports it: the container does not start (``CreateContainerConfigError``) and the pod says why.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ConfigLookup", "EnvError", "expand", "resolve_env"]

JsonObj = dict[str, Any]
#: (kind "secrets"|"configmaps", namespace, name) -> the object, or None when it does not exist.
ConfigLookup = Callable[[str, str, str], JsonObj | None]

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


class EnvError(Exception):
    """A referenced Secret/ConfigMap/key is missing and the reference is not optional."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, unknown ones kept verbatim, ``$$`` escapes."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR.sub(repl, text)


def _data(kind: str, obj: JsonObj) -> dict[str, str]:
    """Decoded key→value data of a Secret (base64) or ConfigMap (plain)."""
    if kind == "secrets":
        out = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
        out.update(obj.get("stringData") or {})
        return out
    return dict(obj.get("data") or {})


def _field(pod: JsonObj, path: str) -> str:
    meta = pod.get("metadata", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod.get("spec", {}).get("nodeName", ""),
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", ""),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path])
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise EnvError(f"fieldRef {path!r} is not supported by the process node")


def resolve_env(pod: JsonObj, container: JsonObj, lookup: ConfigLookup) -> dict[str, str]:
    """The container's environment: ``envFrom`` first, then ``env`` in order (later entries win, as in Kubernetes).

    Raises :class:`EnvError` naming the missing object or key.
    """
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    cache: dict[tuple[str, str], JsonObj | None] = {}

    def fetch(kind: str, name: str) -> JsonObj | None:
        if (kind, name) not in cache:
            cache[(kind, name)] = lookup(kind, namespace, name)
        return cache[(kind, name)]

    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for key, kind in (("secretRef", "secrets"), ("configMapRef", "configmaps")):
            ref = source.get(key)
            if not ref:
                continue
            obj = fetch(kind, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f"{kind[:-1]} {ref['name']!r} named in envFrom does not exist")
            for k, v in _data(kind, obj).items():
                env[prefix + k] = v

    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        value_from = var["valueFrom"]
        for key, kind in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
            ref = value_from.get(key)
            if not ref:
                continue
            obj = fetch(kind, ref["name"])
            data = _data(kind, obj) if obj is not None else None
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    break
                what = f"{kind[:-1]} {ref['name']!r}" if data is None else f"key {ref['key']!r} of {ref['name']!r}"
                raise EnvError(f"env {name}: {what} does not exist")
            env[name] = data[ref["key"]]
            break
        else:
            if "fieldRef" in value_from:
                env[name] = _field(pod, value_from["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in value_from:
                env[name] = "0"
    return env
