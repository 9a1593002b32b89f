"""Finding, moving and resolving the credentials inside a connector.

A secret field ``<f>`` and its ``<f>_secret_ref`` sibling are recognised by name alone (the pair exists on the
model), so a new sink with a new credential needs no change here. The REST API uses `extract_secrets` to move
inline values into a Kubernetes Secret; the operator/worker use `resolve_secrets` to fill them back in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr

from sluice.models.common import SecretRef, wire_name

__all__ = ["SecretPath", "extract_secrets", "iter_secrets", "resolve_secrets", "secret_key_for"]

SecretPath = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


def iter_secrets(model: BaseModel) -> Iterator[tuple[SecretPath, SecretStr | None, SecretRef | None]]:
    """Yield ``(path, inline value, reference)`` for every secret slot of every object present in ``model``.

    ``path`` ends with the inline field's name, e.g. ``("source", "postgres", "connection", "password")``.
    Slots whose object is absent are not yielded; slots with neither value nor reference are.
    """
    yield from _walk(model, ())


def _walk(obj: Any, path: SecretPath) -> Iterator[tuple[SecretPath, SecretStr | None, SecretRef | None]]:
    if isinstance(obj, BaseModel):
        fields = type(obj).model_fields
        for name in fields:
            value = getattr(obj, name)
            if f"{name}_secret_ref" in fields:
                yield (*path, name), value, getattr(obj, f"{name}_secret_ref")
            elif not name.endswith("_secret_ref"):
                # Paths use wire names: they index the JSON/dict form and name Secret keys.
                yield from _walk(value, (*path, wire_name(obj, name)))
    elif isinstance(obj, list | tuple):
        for index, item in enumerate(obj):
            yield from _walk(item, (*path, index))


def secret_key_for(path: SecretPath) -> str:
    """Key under which `extract_secrets` stores a value: the dotted path (valid as a Secret data key)."""
    return ".".join(str(part) for part in path)


def _set(data: Any, path: SecretPath, value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _dump(model: BaseModel) -> dict[str, Any]:
    # Python mode keeps SecretStr objects, so re-validating the dict keeps every value intact.
    return model.model_dump(mode="python", round_trip=True, by_alias=True)


def extract_secrets(model: M, secret_name: str) -> tuple[M, dict[str, str]]:
    """Move every inline secret into a reference to ``secret_name``.

    Returns the model holding only references and the Secret's data (key → plain value). References already
    present are kept as they are.
    """
    data = _dump(model)
    moved: dict[str, str] = {}
    for path, value, _ref in iter_secrets(model):
        if value is None:
            continue
        key = secret_key_for(path)
        moved[key] = value.get_secret_value()
        _set(data, path, None)
        _set(data, (*path[:-1], f"{path[-1]}_secret_ref"), {"name": secret_name, "key": key})
    return type(model).model_validate(data), moved


def resolve_secrets(model: M, lookup: Callable[[SecretRef], str]) -> M:
    """Return a copy with every referenced secret read through ``lookup`` and filled in inline (refs cleared).

    ``lookup`` raises (e.g. `sluice.errors.ConfigError`) when the Secret or key does not exist.
    """
    data = _dump(model)
    for path, _value, ref in iter_secrets(model):
        if ref is None:
            continue
        _set(data, path, SecretStr(lookup(ref)))
        _set(data, (*path[:-1], f"{path[-1]}_secret_ref"), None)
    return type(model).model_validate(data)
