"""Building blocks shared by every connector model.

Three rules live here once, so that every source and sink model gets them by inheriting from `SluiceModel`:

- unknown fields are refused (``extra="forbid"``): a typo in a spec must fail loudly, not be silently ignored;
- attribute docstrings become field descriptions, which `sluice generate` carries into the CRD (``kubectl explain``)
  and the OpenAPI document — so the docs cannot drift from the code;
- a secret field ``<f>`` and its ``<f>_secret_ref`` sibling are never both given.

`OneOf` is the key-named union of the REST schema (``"source": {"postgres": {...}}``): exactly one attribute set.
Its JSON schema carries ``oneOf: [{required: [k]}, ...]``, which the OpenAPI document keeps and the CRD generator
turns into a CEL rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sluice.kinds import Part, availability_note, available, unavailable

__all__ = [
    "DNS_LABEL_MAX_LENGTH",
    "DNS_LABEL_PATTERN",
    "REDACTED",
    "DnsLabel",
    "NonEmptyStr",
    "NonNegativeInt",
    "OneOf",
    "Port",
    "PositiveInt",
    "Secret",
    "SecretRef",
    "SluiceModel",
    "kind_one_of_json_schema",
    "validate_dns_label",
    "wire_name",
]

#: What a secret looks like in any JSON output (responses, status, logs) unless explicitly revealed.
REDACTED = "**********"

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL_MAX_LENGTH = 63
DNS_LABEL_RULE = (
    "a DNS-1123 label: at most 63 characters, only lowercase letters a-z, digits 0-9 and '-', "
    "starting and ending with a letter or digit (e.g. 'orders-to-warehouse')"
)
# fullmatch, not match: "$" would accept a trailing newline.
_DNS_LABEL_RE = re.compile(DNS_LABEL_PATTERN)


def validate_dns_label(value: str) -> str:
    """Check that ``value`` can be a Kubernetes object name; the error states the rule and a valid example."""
    if not value or len(value) > DNS_LABEL_MAX_LENGTH or not _DNS_LABEL_RE.fullmatch(value):
        # Messages are formatted here (no context dict): pydantic would otherwise re-interpret braces.
        raise PydanticCustomError(
            "dns_label", f"{value[:80]!r} is not a valid connector id: it must be {DNS_LABEL_RULE}"
        )
    return value


def _serialize_secret(value: SecretStr, info: SerializationInfo) -> str | SecretStr:
    """Secrets stay `SecretStr` in Python dumps and become ``**********`` in JSON dumps.

    Only code that must hand the value on (the API writing a Kubernetes Secret, the worker's config) asks for
    it with ``context={"reveal_secrets": True}``; nothing that ends in a response or a log does.
    """
    context = info.context if isinstance(info.context, dict) else {}
    if context.get("reveal_secrets"):
        return value.get_secret_value()
    if info.mode_is_json():
        return REDACTED
    return value


#: A secret value: hidden in ``repr``, redacted in JSON, revealed only on request (see `_serialize_secret`).
Secret = Annotated[SecretStr, PlainSerializer(_serialize_secret, when_used="always")]

#: A TCP port.
Port = Annotated[int, Field(ge=1, le=65535)]
#: A count or size where 0 has a documented meaning ("default", "off", "unlimited").
NonNegativeInt = Annotated[int, Field(ge=0)]
#: A count or size that must be at least 1.
PositiveInt = Annotated[int, Field(ge=1)]
#: A non-empty string.
NonEmptyStr = Annotated[str, Field(min_length=1)]

#: A Kubernetes object name usable as a connector id.
DnsLabel = Annotated[
    str,
    AfterValidator(validate_dns_label),
    Field(json_schema_extra={"pattern": DNS_LABEL_PATTERN, "minLength": 1, "maxLength": DNS_LABEL_MAX_LENGTH}),
]


def wire_name(model: BaseModel | type[BaseModel], attribute: str) -> str:
    """The JSON name of a field (its alias where it has one)."""
    cls = model if isinstance(model, type) else type(model)
    return cls.model_fields[attribute].alias or attribute


def _secret_pairs(model: type[BaseModel]) -> list[tuple[str, str]]:
    fields = model.model_fields
    return [(name, f"{name}_secret_ref") for name in fields if f"{name}_secret_ref" in fields]


class SluiceModel(BaseModel):
    """Base of every connector model: strict about unknown fields, documented by attribute docstrings."""

    # Aliases exist only where a schema name would shadow a BaseModel attribute (``json``, ``dict``): the wire name
    # is the alias, in both directions.
    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    @model_validator(mode="after")
    def _secret_and_ref_exclusive(self) -> SluiceModel:
        for field, ref in _secret_pairs(type(self)):
            if getattr(self, field) is not None and getattr(self, ref) is not None:
                raise PydanticCustomError(
                    "secret_and_ref",
                    f"both '{field}' and '{ref}' are given; give only one: the value inline, or a reference "
                    f"{{name, key}} to a Kubernetes Secret holding it (preferred)",
                )
        return self


class SecretRef(SluiceModel):
    """A key of a Kubernetes Secret in the connector's namespace that holds a credential."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the Secret (in the same namespace as the Connector)."""
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
    """Key inside the Secret's data whose value is the credential."""


def _one_of_json_schema(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """Publish the exactly-one rule in the JSON schema; the properties themselves are not nullable here."""
    keys = [wire_name(cls, key) for key in cls.model_fields]
    properties = schema.get("properties", {})
    for key in keys:
        prop = properties.get(key)
        if prop is None or "anyOf" not in prop:
            continue
        variants = [v for v in prop["anyOf"] if v != {"type": "null"}]
        if len(variants) == 1:
            rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
            properties[key] = {**variants[0], **rest}
    schema["oneOf"] = [{"required": [key]} for key in keys]


def kind_one_of_json_schema(part: Part) -> Callable[[dict[str, Any], type[BaseModel]], None]:
    """The JSON schema hook of the ``source``/``sink`` one-of: the exactly-one rule, plus which kinds this
    version runs (`sluice.kinds`), in the object's description and in each kind's."""

    def hook(schema: dict[str, Any], cls: type[BaseModel]) -> None:
        _one_of_json_schema(schema, cls)
        schema["description"] = f"{schema.get('description', '').rstrip()} {availability_note(part)}".strip()
        for key, prop in schema.get("properties", {}).items():
            if key not in available(part) and isinstance(prop, dict):
                note = unavailable(part, key).message + "."
                prop["description"] = f"{prop.get('description', '').rstrip()} {note}".strip()

    return hook


class OneOf(SluiceModel):
    """Key-named union: exactly one attribute is set; its name is the `kind` and its value the `config`."""

    model_config = ConfigDict(json_schema_extra=_one_of_json_schema)

    #: What the thing is called in error messages ("source kind", "authentication method", ...).
    one_of_label: ClassVar[str] = "kind"

    @model_validator(mode="after")
    def _exactly_one(self) -> OneOf:
        given = [wire_name(self, key) for key in type(self).model_fields if getattr(self, key) is not None]
        if len(given) != 1:
            keys = ", ".join(wire_name(self, key) for key in type(self).model_fields)
            problem = "none is given" if not given else "several are given (" + ", ".join(given) + ")"
            raise PydanticCustomError(
                "one_of",
                f"exactly one {self.one_of_label} must be given as a key of this object, but {problem}; "
                f"choose exactly one of: {keys}",
            )
        return self

    @property
    def kind(self) -> str:
        """The name of the key that is set (e.g. ``"postgres"``)."""
        return wire_name(self, self._attribute())

    @property
    def config(self) -> Any:
        """The value under the key that is set."""
        return getattr(self, self._attribute())

    def _attribute(self) -> str:
        for key in type(self).model_fields:
            if getattr(self, key) is not None:
                return key
        raise AssertionError("validated OneOf without a value")  # pragma: no cover
