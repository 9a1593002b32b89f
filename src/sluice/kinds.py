"""Which source and sink kinds this version of Sluice can run: THE switch to flip when a kind lands.

The models (`sluice.models`) describe every kind of the reference schema — postgres, mysql, kafka, webhook, ... —
so the OpenAPI document and ``kubectl explain`` stay the full reference. The worker, though, runs only the kinds
listed here; anything else would get a worker pod that can never start. So every place where a user acts refuses
the other kinds up front, with the same words, built once by `unavailable`:

- REST API: 422 ``UnsupportedKind`` naming ``source.<kind>`` / ``sink.<kind>`` (``sluice.api.services``);
- ``kubectl apply``: a CEL rule per unavailable kind on ``spec.source`` / ``spec.sink``, generated into the CRD
  by ``sluice generate`` (``sluice.schemagen``), whose message is `Unavailable.text`;
- operator: a Connector stored before the rule existed gets Ready=False reason ``UnsupportedKind`` and no worker
  (``sluice.operator.reconcile`` / ``conditions``);
- worker: ``sluice.worker.config.check_supported`` refuses to start.

The models themselves accept every kind on purpose: the operator's clean-up on delete and the API's reads parse
stored Connectors, and a stored connector of an unavailable kind must still be readable and deletable.

When a kind lands: implement it in the worker (the worker keeps its own registry of Source/Sink classes; a unit
test ties that registry to these tuples), add its name below, run ``sluice generate`` and commit ``crds/`` and
``openapi/``. Nothing else changes.

This module imports nothing from the models (the models import it for their descriptions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sluice.errors import ConfigError, ErrorDetail

__all__ = [
    "AVAILABLE_SINKS",
    "AVAILABLE_SOURCES",
    "REASON",
    "Part",
    "Unavailable",
    "UnsupportedKindError",
    "availability_note",
    "available",
    "schema_kinds",
    "unavailable",
    "unavailable_error",
    "unavailable_kinds",
]

#: Source kinds the worker runs. Add a kind here (and nowhere else) when its worker code lands.
AVAILABLE_SOURCES: tuple[str, ...] = ("postgres", "mysql")
#: Sink kinds the worker runs. Add a kind here (and nowhere else) when its worker code lands.
AVAILABLE_SINKS: tuple[str, ...] = ("postgres", "kafka", "webhook")

#: CamelCase reason of the API error, the operator's Ready condition and the worker's error.
REASON = "UnsupportedKind"

Part = Literal["source", "sink"]


def available(part: Part) -> tuple[str, ...]:
    """The kinds of ``part`` this version runs."""
    return AVAILABLE_SOURCES if part == "source" else AVAILABLE_SINKS


@dataclass(frozen=True)
class Unavailable:
    """A ``source``/``sink`` kind that the schema knows but this version cannot run, and what to say about it."""

    part: Part
    kind: str
    message: str
    """What is wrong: names the field path, the kind and the kinds that are available."""
    fix: str
    """What to do about it."""

    @property
    def loc(self) -> list[str | int]:
        return [self.part, self.kind]

    @property
    def text(self) -> str:
        """Message and fix in one line: the CEL rule's message, the operator's condition message."""
        return f"{self.message}. Fix: {self.fix}"

    def detail(self) -> ErrorDetail:
        return ErrorDetail(self.loc, self.message, self.fix)


def unavailable(part: Part, kind: str) -> Unavailable:
    """THE refusal for ``<part>.<kind>``; every place that refuses an unavailable kind uses these words."""
    names = ", ".join(available(part))
    return Unavailable(
        part=part,
        kind=kind,
        message=f"{part}.{kind} is not available in this version of Sluice yet; available {part}s: {names}",
        fix=f"Use one of the available {part}s, or upgrade Sluice once {kind} support lands.",
    )


def availability_note(part: Part) -> str:
    """One sentence for schema descriptions (OpenAPI, ``kubectl explain``)."""
    return f"Available in this version of Sluice: {', '.join(available(part))}; the other {part} kinds are refused."


def _given_keys(value: Any) -> list[str]:
    if not isinstance(value, Mapping):
        return []
    return [str(k) for k, v in value.items() if v is not None]


def schema_kinds(part: Part) -> tuple[str, ...]:
    """Every kind of ``part`` the schema (the models) knows, available or not."""
    # Imported here: the models import this module for their descriptions.
    from sluice.models.common import wire_name
    from sluice.models.sinks import Sink
    from sluice.models.sources import Source

    model = Source if part == "source" else Sink
    return tuple(wire_name(model, name) for name in model.model_fields)


def unavailable_kinds(spec: Mapping[str, Any]) -> list[Unavailable]:
    """Unavailable kinds in a raw connector body or CR spec (a dict), source first.

    Only kinds the schema knows are refused here, and only when exactly one key is given: a typo or two kinds at
    once is a schema error, which validation reports in its own words.
    """
    out: list[Unavailable] = []
    parts: tuple[Part, Part] = ("source", "sink")
    for part in parts:
        given = _given_keys(spec.get(part))
        if len(given) == 1 and given[0] in schema_kinds(part) and given[0] not in available(part):
            out.append(unavailable(part, given[0]))
    return out


class UnsupportedKindError(ConfigError):
    """A connector names a source or sink kind this version of Sluice cannot run (422 in the API)."""

    reason = REASON
    default_fix = "Use one of the available kinds, or upgrade Sluice once that kind's support lands."


def unavailable_error(problems: list[Unavailable]) -> UnsupportedKindError:
    """One error for one or two refused kinds: each is a detail with its field path, problem and fix."""
    return UnsupportedKindError(
        "; ".join(p.message for p in problems),
        fix=" ".join(p.fix for p in problems),
        details=[p.detail() for p in problems],
    )
