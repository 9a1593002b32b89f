"""Where a connector's inline credentials go, and how a connector is shown without them.

Inline secret values from a request move into ONE Secret per connector, ``<id>-credentials``, with the dotted
field path as key (``source.postgres.connection.password``); the Connector spec keeps only
``<field>_secret_ref: {name, key}``. The Secret is owned by the Connector (ownerReference), so Kubernetes deletes
it after the Connector is gone.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from sluice.errors import ConfigError, ErrorDetail
from sluice.models import REDACTED, Connector
from sluice.models.secrets import iter_secrets

__all__ = [
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "check_no_placeholders",
    "connector_view",
    "redact_raw",
    "referenced_keys",
    "secret_labels",
    "secret_name",
]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "sluice-api"
CONNECTOR_LABEL = "sluice.dev/connector"

#: Placeholders that mean "a redacted value", never a real credential: the models' JSON redaction and the logs'.
_PLACEHOLDERS = frozenset({REDACTED, "**redacted**"})

#: Last-resort redaction for specs that do not validate (e.g. written with kubectl against an older schema).
_SECRETISH = re.compile(r"(password|passwd|secret|token|private_key|ssl_key|client_key|_pem$|credential)", re.I)


def secret_name(connector_id: str) -> str:
    return f"{connector_id}-credentials"


def secret_labels(connector_id: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, CONNECTOR_LABEL: connector_id}


def check_no_placeholders(connector: Connector) -> None:
    """Refuse a redaction placeholder sent back as if it were a credential (a GET response re-posted)."""
    bad = [
        list(path)
        for path, value, _ in iter_secrets(connector)
        if value is not None and value.get_secret_value() in _PLACEHOLDERS
    ]
    if bad:
        raise ConfigError(
            "a secret field holds the redaction placeholder instead of a credential",
            details=[
                ErrorDetail(
                    loc=loc,
                    msg="this is the placeholder shown in place of a secret, not a credential",
                    fix=f"Send the real value, or '{loc[-1]}_secret_ref: {{name, key}}', or leave the field out.",
                )
                for loc in bad
            ],
        )


def referenced_keys(connector: Connector, name: str) -> set[str]:
    """Keys of Secret ``name`` that ``connector`` refers to."""
    return {ref.key for _, _, ref in iter_secrets(connector) if ref is not None and ref.name == name}


def redact_raw(obj: Any) -> Any:
    """A copy of a raw spec with every secret-looking value replaced (used only when the spec fails validation)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if (
                isinstance(key, str)
                and not key.endswith("_secret_ref")
                and _SECRETISH.search(key)
                and not isinstance(value, dict | list)
                and value is not None
            ):
                out[key] = REDACTED
            else:
                out[key] = redact_raw(value)
        return out
    if isinstance(obj, list):
        return [redact_raw(item) for item in obj]
    return obj


def connector_view(cr: dict[str, Any]) -> dict[str, Any]:
    """The connector of a CR as the API returns it: id = name, secrets as references or redacted, no nulls."""
    name = str(cr.get("metadata", {}).get("name", ""))
    spec = dict(cr.get("spec") or {})
    spec["id"] = name
    try:
        connector = Connector.model_validate(spec)
    except (ValidationError, ValueError):
        return redact_raw(spec)  # type: ignore[no-any-return]
    return connector.model_dump(mode="json", exclude_none=True)
