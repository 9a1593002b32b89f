"""How a ``*_secret_ref`` reaches the worker: as an environment variable with a deterministic name.

The operator never reads credential values. For every ``{name, key}`` reference in a connector it adds an env var
``valueFrom.secretKeyRef`` to the worker pod, named by :func:`secret_env_name`; the kubelet (or the process node)
fills in the value, and the worker resolves each reference with :func:`lookup_from_env`. Both sides import this
module, so the naming rule exists once.

The rule: ``SLUICE_SECRET_<NAME>_<KEY>``, upper-cased, every character outside ``[A-Z0-9]`` replaced by ``_``.
Two references that map to the same name (``a-b``/``a_b``) are refused by :func:`secret_env_vars`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from sluice.errors import ConfigError

__all__ = ["PREFIX", "lookup_from_env", "secret_env_name", "secret_env_vars"]

PREFIX = "SLUICE_SECRET_"


class _Ref(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def key(self) -> str: ...


def _sanitize(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", text.upper())


def secret_env_name(name: str, key: str) -> str:
    """Env var name for key ``key`` of Secret ``name``."""
    return f"{PREFIX}{_sanitize(name)}_{_sanitize(key)}"


def secret_env_vars(refs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Pod ``env`` entries (``valueFrom.secretKeyRef``) for the given (secret name, key) pairs, sorted, unique."""
    by_env: dict[str, tuple[str, str]] = {}
    for name, key in refs:
        env = secret_env_name(name, key)
        if env in by_env and by_env[env] != (name, key):
            other = by_env[env]
            raise ConfigError(
                f"secret references {other[0]}/{other[1]} and {name}/{key} map to the same variable {env}",
                fix="Rename one of the Secrets or keys so that they differ in more than punctuation.",
            )
        by_env[env] = (name, key)
    return [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
        for env, (name, key) in sorted(by_env.items())
    ]


def lookup_from_env(ref: _Ref, environ: Mapping[str, str] | None = None) -> str:
    """The worker side: the value of a reference, from the variable the operator wired in.

    Raises ConfigError (not a KeyError) with the fix when the variable is absent — e.g. a worker started by hand.
    """
    env = os.environ if environ is None else environ
    var = secret_env_name(ref.name, ref.key)
    try:
        return env[var]
    except KeyError:
        raise ConfigError(
            f"the value of secret {ref.name!r} key {ref.key!r} is not available (environment variable {var} unset)",
            fix=f"Outside Kubernetes, export {var}=<value> before starting the worker; inside, check that the "
            f"Secret {ref.name} has the key {ref.key}.",
        ) from None
