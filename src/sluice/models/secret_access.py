"""Which Secrets a connector may use, and THE words that refuse one.

A Connector names Secrets by ``*_secret_ref``; its worker then gets their values. Without a rule, anyone who may
create a Connector could read any Secret of the namespace through a worker. So:

- REST API: the caller must be allowed ``get`` on each referenced Secret (a SubjectAccessReview for the caller;
  403 with the fix otherwise), and the Secret must carry the label below (422 with the fix) — the same rule
  the operator applies, so a connector the API accepts also runs. Secrets the API creates for inline
  credentials carry the label.
- ``kubectl apply``: the operator cannot know who wrote the Connector, so a referenced Secret must carry the label
  ``sluice.dev/usable-by-connectors: "true"``, set by someone allowed to label that Secret. Otherwise Ready is
  False with reason ``SecretNotAllowed`` and the fix, and no worker runs.
- Inline credentials in a kubectl-applied spec are stored in the Connector itself, readable by anyone who may read
  Connectors: the operator posts a Warning event and a ``CredentialsInline`` condition suggesting
  ``*_secret_ref``.

Pure functions over raw specs (dicts), so the operator can judge a spec that does not validate.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "INLINE_REASON",
    "REASON",
    "USABLE_LABEL",
    "USABLE_VALUE",
    "inline_credential_message",
    "inline_credentials",
    "is_usable",
    "not_allowed_fix",
    "not_allowed_message",
    "referenced_secrets",
]

#: The label that marks a Secret as one connectors may reference.
USABLE_LABEL = "sluice.dev/usable-by-connectors"
USABLE_VALUE = "true"

#: Reason of the operator's Ready condition and the API's 422 for a Secret without the label.
REASON = "SecretNotAllowed"
#: Reason of the condition/event about inline credentials in a Connector.
INLINE_REASON = "InlineCredentials"

_REF = "_secret_ref"


def is_usable(labels: Mapping[str, str] | None) -> bool:
    return (labels or {}).get(USABLE_LABEL) == USABLE_VALUE


def _walk(obj: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            yield (*path, str(key)), value
            yield from _walk(value, (*path, str(key)))
    elif isinstance(obj, list):
        for index, item in enumerate(obj):
            yield from _walk(item, (*path, str(index)))


def referenced_secrets(spec: Mapping[str, Any]) -> dict[str, list[str]]:
    """Secret name → the dotted fields that reference it, for every ``*_secret_ref`` in a raw spec."""
    out: dict[str, list[str]] = {}
    for path, value in _walk(spec, ()):
        if path[-1].endswith(_REF) and isinstance(value, Mapping) and isinstance(value.get("name"), str):
            out.setdefault(value["name"], []).append(".".join(path))
    return out


def inline_credentials(spec: Mapping[str, Any]) -> list[str]:
    """Dotted fields of a raw spec that hold a credential inline: a set ``<f>`` whose ``<f>_secret_ref`` sibling
    exists in the schema. Only names are returned, never values."""
    from sluice.models.connector import ConnectorSpec  # the models import nothing from here
    from sluice.models.secrets import iter_secrets

    fields: list[str] = []
    try:
        connector = ConnectorSpec.model_validate(dict(spec))
    except ValueError:
        return fields
    for path, value, _ref in iter_secrets(connector):
        if value is not None:
            fields.append(".".join(str(p) for p in path))
    return fields


def not_allowed_message(name: str, fields: list[str]) -> str:
    return (
        f'Secret "{name}" (referenced by {", ".join(fields)}) is not marked for use by connectors: it lacks the '
        f'label {USABLE_LABEL}="{USABLE_VALUE}"'
    )


def not_allowed_fix(name: str) -> str:
    return (
        f"If connectors may read this Secret, label it: kubectl label secret {name} {USABLE_LABEL}={USABLE_VALUE} "
        "(needs the right to update that Secret); otherwise reference another Secret, or send the credentials "
        "inline through the REST API, which stores them in a Secret of its own."
    )


def inline_credential_message(fields: list[str]) -> str:
    refs = ", ".join(f"{f}{_REF}" for f in fields)
    return (
        f"{', '.join(fields)} hold(s) a credential inline in the Connector, readable by anyone who may read "
        f"Connectors. Fix: put it in a Secret labelled {USABLE_LABEL}={USABLE_VALUE} and use {refs} instead."
    )
