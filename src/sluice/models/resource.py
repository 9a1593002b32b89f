"""The Connector custom resource: its coordinates and the conversions between a CR object and a `Connector`.

Every role needs these (the API writes CRs, the operator and worker read them, schemagen names the CRD), so they
live next to the model instead of being re-typed in each package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sluice.models.connector import Connector
from sluice.models.secrets import iter_secrets

__all__ = [
    "API_VERSION",
    "CATEGORIES",
    "CRD_NAME",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "connector_from_resource",
    "connector_to_resource",
]

GROUP = "sluice.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Connector"
PLURAL = "connectors"
SINGULAR = "connector"
SHORT_NAMES = ["sconn"]
CATEGORIES = ["sluice"]
CRD_NAME = f"{PLURAL}.{GROUP}"


def connector_from_resource(obj: Mapping[str, Any]) -> Connector:
    """Validate a Connector CR (as a dict) into a `Connector` whose id is ``metadata.name``.

    Raises `pydantic.ValidationError` (field paths relative to ``spec``) when the spec is invalid, and ValueError
    when ``spec.id`` contradicts the name.
    """
    name = str(obj.get("metadata", {}).get("name", ""))
    spec = dict(obj.get("spec") or {})
    spec_id = spec.get("id")
    if spec_id not in (None, name):
        raise ValueError(
            f"spec.id {spec_id!r} differs from metadata.name {name!r}; the name is the connector id: "
            "remove spec.id or make it equal to metadata.name"
        )
    spec["id"] = name
    return Connector.model_validate(spec)


def connector_to_resource(
    connector: Connector,
    namespace: str | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Render a Connector CR for ``connector``. Inline secrets are refused: move them into a Secret first
    (`sluice.models.secrets.extract_secrets`), so no credential ever lands in a CR spec."""
    inline = [".".join(map(str, path)) for path, value, _ in iter_secrets(connector) if value is not None]
    if inline:
        raise ValueError(
            "refusing to put inline secrets into a Connector resource (" + ", ".join(inline) + "); "
            "call sluice.models.secrets.extract_secrets() first and store the values in a Secret"
        )
    metadata: dict[str, Any] = {"name": connector.id}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    spec = connector.model_dump(mode="json", exclude_none=True)
    spec.pop("id", None)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}
