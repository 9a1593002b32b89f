"""Byte sizes written as Kubernetes quantities ("10Gi", "512Mi", "1G"), as in a pod's resource limits.

Why a quantity and not an integer: the sizes users set here (how much WAL a slot may hold) are gigabytes, and a
spec reading ``10Gi`` is reviewed correctly where ``10737418240`` is not. Only the forms that name a whole number of
bytes are accepted: digits with an optional binary (Ki, Mi, Gi, Ti, Pi, Ei) or decimal (k, M, G, T, P, E) suffix.
Fractions ("1.5Gi"), exponents ("1e9") and milli-units ("500m", which Kubernetes reads as half a byte) are refused
with the fix, so a spec never means something other than what it reads as. The CRD carries the same rule as a
``pattern`` (and a CEL rule against zero), so ``kubectl apply`` refuses what the REST API refuses.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

__all__ = ["BYTE_QUANTITY_PATTERN", "ByteQuantity", "parse_byte_quantity"]

_FACTORS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "Pi": 1 << 50,
    "Ei": 1 << 60,
}

BYTE_QUANTITY_PATTERN = r"^[0-9]+(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
_RE = re.compile(BYTE_QUANTITY_PATTERN)

_RULE = (
    "write a whole number of bytes greater than zero as a Kubernetes quantity: digits with an optional suffix Ki, "
    'Mi, Gi, Ti, Pi, Ei (powers of 1024) or k, M, G, T, P, E (powers of 1000), e.g. "10Gi" or "512Mi"'
)


def parse_byte_quantity(value: str) -> int:
    """The number of bytes ``value`` names; ValueError (saying what to write instead) when it is not one."""
    match = _RE.fullmatch(value) if isinstance(value, str) and len(value) <= 24 else None
    if match is None:
        raise ValueError(f"{str(value)[:40]!r} is not a byte size; {_RULE}")
    suffix = match.group(1) or ""
    number = int(value[: len(value) - len(suffix)])
    if number <= 0:
        raise ValueError(f"{value!r} is zero; {_RULE}")
    return number * _FACTORS[suffix]


def _validate(value: str) -> str:
    try:
        parse_byte_quantity(value)
    except ValueError as exc:
        # Formatted here (no context dict): pydantic would otherwise re-interpret braces.
        raise PydanticCustomError("byte_quantity", str(exc)) from None
    return value


#: A size in bytes written as a Kubernetes quantity; kept as written (the spec reads as the user wrote it).
ByteQuantity = Annotated[
    str,
    AfterValidator(_validate),
    Field(
        json_schema_extra={
            "pattern": BYTE_QUANTITY_PATTERN,
            "maxLength": 24,
            "x-kubernetes-validations": [
                {
                    "rule": "!isQuantity(self) || quantity(self).isGreaterThan(quantity('0'))",
                    "message": 'must be greater than zero, e.g. "10Gi"',
                }
            ],
        }
    ),
]


_ANY_QUANTITY = re.compile(
    r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?"
)
_SCALES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("k", 3), ("M", 6), ("G", 9), ("T", 12))},
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
}


def quantity_value(text: str) -> Decimal | None:
    """The value of any Kubernetes quantity (``1.5Gi``, ``1e9``, ``100m``), or None when ``text`` is not one.

    The apiserver stores quantities in a canonical spelling (``1.5Gi`` comes back as ``1536Mi``), so what the operator
    asked for and what it reads back are compared by value, not as text."""
    match = _ANY_QUANTITY.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    number, suffix = Decimal(match.group(1)), match.group(2) or ""
    if suffix[:1] in ("e", "E") and suffix not in _SCALES:
        return number * Decimal(10) ** int(suffix[1:])
    return number * _SCALES.get(suffix, Decimal(1))
