"""Pydantic validation errors as the API's 422: field path, problem and fix for each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from sluice.errors import ConfigError, ErrorDetail

__all__ = ["config_error", "details_from_errors"]

_FIXES: dict[str, str] = {
    "missing": "Add this field.",
    "extra_forbidden": "Remove this field (check its spelling against the schema).",
    "enum": "Use one of the allowed values.",
    "literal_error": "Use one of the allowed values.",
    "string_type": "Send a string.",
    "int_type": "Send an integer.",
    "int_parsing": "Send an integer.",
    "int_from_float": "Send a whole number.",
    "bool_type": "Send true or false.",
    "bool_parsing": "Send true or false.",
    "model_type": "Send a JSON object.",
    "dict_type": "Send a JSON object.",
    "list_type": "Send a JSON array.",
    "string_too_short": "Send a longer (non-empty) value.",
    "string_too_long": "Send a shorter value.",
    "greater_than_equal": "Send a larger value.",
    "less_than_equal": "Send a smaller value.",
    "dns_label": "Use lowercase letters, digits and '-' only, at most 63 characters.",
}


def details_from_errors(errors: Iterable[Mapping[str, Any]], prefix: Iterable[str | int] = ()) -> list[ErrorDetail]:
    out: list[ErrorDetail] = []
    for err in errors:
        loc: list[str | int] = [*prefix, *(p if isinstance(p, int) else str(p) for p in err.get("loc", ()))]
        msg = str(err.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        out.append(ErrorDetail(loc=loc, msg=msg, fix=_FIXES.get(str(err.get("type", "")), "")))
    return out


def config_error(exc: ValidationError, *, what: str = "the connector", prefix: Iterable[str | int] = ()) -> ConfigError:
    """One ``ConfigError`` listing every problem pydantic found. Input values are never echoed (secrets)."""
    details = details_from_errors(exc.errors(include_url=False, include_input=False), prefix)
    first = details[0] if details else None
    headline = f"{what} is invalid"
    if first is not None:
        where = ErrorDetail(loc=first.loc, msg="").as_dict()["field"] or "body"
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        headline = f"{what} is invalid: {where}: {first.msg}{more}"
    return ConfigError(headline, details=details)
