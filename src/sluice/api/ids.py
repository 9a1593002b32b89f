"""Connector ids: generated ones for ``POST /api/v1/connectors`` and the rule path ids must follow.

An id is the Connector's Kubernetes object name, so it must be a DNS-1123 label. Generated ids are ``c-`` plus
ten random lowercase letters and digits: 36**10 (about 3.6e15) values make a collision in one namespace
negligible, and the create path retries on the rare ``AlreadyExists`` anyway.
"""

from __future__ import annotations

import re
import secrets
import string

from sluice.errors import ConfigError, ErrorDetail

__all__ = ["DNS_LABEL_RULE", "check_id", "is_dns_label", "new_connector_id"]

_ALPHABET = string.ascii_lowercase + string.digits
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL_RULE = (
    "a DNS-1123 label: at most 63 characters, only lowercase letters a-z, digits 0-9 and '-', "
    "starting and ending with a letter or digit (e.g. 'orders-to-warehouse')"
)


def new_connector_id() -> str:
    return "c-" + "".join(secrets.choice(_ALPHABET) for _ in range(10))


def is_dns_label(value: str) -> bool:
    return 0 < len(value) <= 63 and _DNS_LABEL.match(value) is not None


def check_id(value: str, *, where: str = "path") -> str:
    """Return ``value`` if it can name a Kubernetes object; else a 422 saying the rule."""
    if is_dns_label(value):
        return value
    shown = value if len(value) <= 80 else value[:77] + "..."
    raise ConfigError(
        f"{shown!r} is not a valid connector id",
        fix=f"Use {DNS_LABEL_RULE}.",
        details=[
            ErrorDetail(loc=[where, "id"], msg=f"must be {DNS_LABEL_RULE}", fix="Use e.g. 'orders-to-warehouse'.")
        ],
    )


def check_namespace(value: str) -> str:
    """Namespaces are DNS-1123 labels too; refuse anything else before it reaches a URL path."""
    if is_dns_label(value):
        return value
    raise ConfigError(
        f"{value[:80]!r} is not a valid namespace",
        fix=f"Use {DNS_LABEL_RULE}.",
        details=[ErrorDetail(loc=["query", "namespace"], msg=f"must be {DNS_LABEL_RULE}")],
    )
