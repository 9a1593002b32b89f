"""``sluice generate``: write the Connector CRD and the OpenAPI document from `sluice.models`.

The models are the one source of truth; both files are generated, checked in, and ``sluice generate --check`` (CI)
fails when they drift.

Turning pydantic's JSON schema into a Kubernetes *structural* schema:

- every ``$ref`` is inlined (the apiserver has no ``$defs``); the field's own description wins over the type's;
- ``anyOf: [X, {type: null}]`` becomes X with ``nullable: true`` (``default: null`` is dropped);
- a one-of object (``oneOf: [{required: [a]}, {required: [b]}, ...]``, see `sluice.models.common.OneOf`) keeps all
  keys optional and gains a CEL rule ``[has(self.a), has(self.b)].filter(x, x).size() == 1`` whose message names
  the keys — the apiserver's message is then as clear as pydantic's;
- a secret field and its ``*_secret_ref`` sibling gain a CEL rule that they are not both set;
- ``spec.source`` and ``spec.sink`` gain one CEL rule per kind this version cannot run yet (`sluice.kinds`),
  with the REST API's message for it; the descriptions say which kinds are available (the schema still
  documents every kind: it is the reference);
- identity fields are immutable in the CRD itself (`sluice.models.identity`): a transition rule (``oldSelf``) on
  ``spec.source``/``spec.sink`` keeps the kind, and one on each kind's ``connection`` keeps host, port, database
  (whichever the kind has), each with the REST API's words for that refusal;
- ``title``, ``writeOnly``, ``additionalProperties: false`` are dropped; ``additionalProperties: true`` (status
  parts that accept new fields) becomes ``x-kubernetes-preserve-unknown-fields: true``; ``format`` is kept only
  when the apiserver knows it. Any JSON-schema keyword not handled here is an error, not silently passed through.

Unknown fields: a structural schema *prunes* unknown fields instead of rejecting them, and ``additionalProperties:
false`` is not allowed. Rejection comes from server-side field validation: kubectl ≥ 1.27 sends
``fieldValidation=Strict`` by default (``--validate=strict``), so ``kubectl apply`` of a spec with a typo fails
with ``strict decoding error: unknown field "spec.source.postgres.connection.hots"``. Clients that skip it (older
kubectl with ``--validate=false``, raw API calls) get the field pruned — and the REST API rejects unknown fields
itself (pydantic ``extra="forbid"``).

Printer columns cannot compute which key of ``spec.source`` is set, so the operator writes
``status.source_kind``/``status.sink_kind`` and the Source/Sink columns read those.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from sluice import kinds
from sluice.models import ConnectorBody, ConnectorSpec, identity
from sluice.models.common import DNS_LABEL_MAX_LENGTH, DNS_LABEL_PATTERN
from sluice.models.resource import CATEGORIES, CRD_NAME, GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from sluice.models.status import (
    ConnectorCommand,
    ConnectorList,
    ConnectorResponse,
    ConnectorStatus,
    HistoryEvent,
)

__all__ = [
    "CONNECTOR_LINKS",
    "GeneratedFile",
    "SchemaConversionError",
    "add_arguments",
    "add_links",
    "build_crd",
    "build_openapi",
    "generated_files",
    "identity_rules",
    "run",
    "to_structural",
    "unavailable_kind_rules",
]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = Path("crds/connector.yaml")
#: the Helm chart ships the same CRD (Helm installs a chart's crds/ directory before its templates)
CHART_CRD_PATH = Path("charts/sluice/crds/connector.yaml")
OPENAPI_PATH = Path("openapi/openapi.json")

#: ``format`` values the apiserver validates (k8s.io/kube-openapi strfmt); others are dropped from the CRD.
K8S_FORMATS = frozenset(
    {
        "bsonobjectid", "uri", "email", "hostname", "ipv4", "ipv6", "cidr", "mac", "uuid", "uuid3", "uuid4",
        "uuid5", "isbn", "isbn10", "isbn13", "creditcard", "ssn", "hexcolor", "rgbcolor", "byte", "password",
        "date", "duration", "datetime", "date-time", "int32", "int64", "float", "double",
    }
)  # fmt: skip

#: CEL reserved words: a property with such a name is reached as ``self.__name__``.
_CEL_RESERVED = frozenset(
    {
        "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
        "import", "let", "loop", "package", "namespace", "return", "var", "void", "while",
    }
)  # fmt: skip

# Keywords copied as they are (after the value conversion done below).
_PASS_THROUGH = frozenset(
    {
        "type", "description", "enum", "default", "minimum", "maximum", "minLength", "maxLength", "pattern",
        "minItems", "maxItems", "uniqueItems", "required", "nullable",
    }
)  # fmt: skip
_DROPPED = frozenset({"title", "writeOnly", "readOnly", "examples", "$schema"})

_HEADER = "# Generated by `sluice generate` from src/sluice/models. Do not edit; run `make generate`.\n"


class SchemaConversionError(ValueError):
    """The models use a JSON-schema construct the CRD converter does not know how to express."""


def _describe(text: str) -> str:
    """Docstrings wrap at 120 columns; descriptions should not: join lines, keep blank-line paragraphs."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _cel_field(name: str) -> str:
    if name in _CEL_RESERVED:
        return f"__{name}__"
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise SchemaConversionError(f"property name {name!r} needs CEL escaping, which is not implemented")
    return name


def _resolve(ref: str, defs: dict[str, Any]) -> dict[str, Any]:
    name = ref.rsplit("/", 1)[-1]
    if name not in defs:
        raise SchemaConversionError(f"unresolvable $ref {ref}")
    target: dict[str, Any] = defs[name]
    return target


def _flatten(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """Resolve ``$ref``, single ``allOf`` and ``anyOf [X, null]`` at the top of ``node`` (children untouched).

    Keys of the referring node win over the referenced type's (a field's description beats its class's).
    """
    node = dict(node)
    if "$ref" in node:
        target = _resolve(node.pop("$ref"), defs)
        node = {**_flatten(target, defs, path), **node}
    if "allOf" in node:
        parts = node.pop("allOf")
        if len(parts) != 1:
            raise SchemaConversionError(f"{path or '<root>'}: allOf with several parts is not supported")
        node = {**_flatten(parts[0], defs, path), **node}
    if "anyOf" in node:
        variants = node.pop("anyOf")
        non_null = [v for v in variants if v != {"type": "null"}]
        if len(non_null) != 1:
            raise SchemaConversionError(f"{path or '<root>'}: a union of several types cannot be structural")
        node = {**_flatten(non_null[0], defs, path), **node}
        if len(non_null) < len(variants):
            node["nullable"] = True
            if node.get("default", ...) is None:
                del node["default"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node


def to_structural(
    node: dict[str, Any], defs: dict[str, Any], *, path: str = "", defaults: bool = True, documented: bool = True
) -> dict[str, Any]:
    """Convert one pydantic JSON-schema node (and its children) into a structural CRD schema node.

    ``documented`` demands a description on the result (on by default: ``kubectl explain`` must say something for
    every field); it is off for list items and map values, which the field around them describes.
    """
    node = _flatten(node, defs, path)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or key == "oneOf":
            continue
        if key == "description":
            out[key] = _describe(value)
        elif key == "default":
            if defaults and value is not None:
                out[key] = value
        elif key == "format":
            if value in K8S_FORMATS:
                out[key] = value
        elif key == "exclusiveMinimum" or key == "exclusiveMaximum":
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "properties":
            out[key] = {
                name: to_structural(prop, defs, path=f"{path}.{name}", defaults=defaults)
                for name, prop in value.items()
            }
        elif key == "items":
            out[key] = to_structural(value, defs, path=f"{path}[]", defaults=defaults, documented=False)
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out[key] = to_structural(value, defs, path=f"{path}{{}}", defaults=defaults, documented=False)
            # False: structural schemas forbid it; unknown fields are pruned / refused by field validation.
        elif key in _PASS_THROUGH or key.startswith("x-kubernetes-"):
            out[key] = value
        else:
            raise SchemaConversionError(f"{path or '<root>'}: JSON-schema keyword {key!r} is not supported in the CRD")

    rules = _cel_rules(node)
    if rules:
        out["x-kubernetes-validations"] = out.get("x-kubernetes-validations", []) + rules
    if documented and "description" not in out:
        raise SchemaConversionError(f"{path or '<root>'}: no description (add a docstring to the field or class)")
    return _ordered(out)


def _cel_rules(node: dict[str, Any]) -> list[dict[str, str]]:
    rules: list[dict[str, str]] = []
    one_of = node.get("oneOf")
    if one_of:
        keys = [entry["required"][0] for entry in one_of if list(entry) == ["required"] and len(entry["required"]) == 1]
        if len(keys) != len(one_of):
            raise SchemaConversionError(f"oneOf {one_of!r} is not a key-named one-of")
        checks = ", ".join(f"has(self.{_cel_field(k)})" for k in keys)
        rules.append(
            {
                "rule": f"[{checks}].filter(x, x).size() == 1",
                "message": "exactly one of " + ", ".join(keys) + " must be set",
            }
        )
    properties = node.get("properties", {})
    for name in properties:
        ref = f"{name}_secret_ref"
        if ref in properties:
            rules.append(
                {
                    "rule": f"!(has(self.{_cel_field(name)}) && has(self.{_cel_field(ref)}))",
                    "message": f"give only one of {name} and {ref} (prefer {ref}: a reference to a Secret key)",
                }
            )
    return rules


_KEY_ORDER = ("description", "type", "format", "enum", "default", "nullable", "minimum", "exclusiveMinimum")


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """Stable, readable key order (description first, children last) so diffs of the CRD stay small."""
    head = [k for k in _KEY_ORDER if k in node]
    tail = [
        k for k in ("properties", "items", "additionalProperties", "required", "x-kubernetes-validations") if k in node
    ]
    middle = sorted(k for k in node if k not in head and k not in tail)
    return {k: node[k] for k in (*head, *middle, *tail)}


def _model_structural(model: type[BaseModel], *, defaults: bool) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    defs = schema.pop("$defs", {})
    return to_structural(schema, defs, path=model.__name__, defaults=defaults)


def unavailable_kind_rules(part: kinds.Part, node: dict[str, Any]) -> list[dict[str, str]]:
    """One CEL rule per kind of ``spec.<part>`` this version cannot run (`sluice.kinds`), each refusing it with
    the same message as the REST API and pointing at ``spec.<part>.<kind>``.

    One rule per kind because a CEL message is a static string: this way it names the kind that was given. With
    validation ratcheting, a Connector stored before a rule existed can still be updated as long as its kind does
    not change; the operator reports it as UnsupportedKind and runs no worker for it.
    """
    return [
        {
            "rule": f"!has(self.{_cel_field(kind)})",
            "message": kinds.unavailable(part, kind).text,
            "fieldPath": f".{kind}",
            "reason": "FieldValueForbidden",
        }
        for kind in node.get("properties", {})
        if kind not in kinds.available(part)
    ]


def identity_rules(part: kinds.Part, node: dict[str, Any]) -> None:
    """Add the transition rules that keep ``spec.<part>``'s identity (`sluice.models.identity`) to ``node`` (the
    structural schema of ``spec.<part>``) and to each kind's ``connection``, in place.

    Transition rules run only on updates and only where the old object had the node: a kind change is one rule on
    ``spec.<part>`` (the new kind's connection has no old self, so its rules do not fire as well); a host change
    is the rule on that kind's ``connection``. Each message is the REST API's `Immutable.text` for that field.
    """
    kind_names = list(node.get("properties", {}))
    same_kind = " && ".join(f"has(self.{_cel_field(k)}) == has(oldSelf.{_cel_field(k)})" for k in kind_names)
    kind_rule = {"rule": same_kind, "message": identity.immutable_kind(part).text, "reason": "FieldValueForbidden"}
    node["x-kubernetes-validations"] = [*node.get("x-kubernetes-validations", []), kind_rule]
    for kind in kind_names:
        connection = node["properties"][kind].get("properties", {}).get("connection")
        if connection is None:
            continue
        rules = []
        for name in identity.IDENTITY_FIELDS:
            if name not in connection.get("properties", {}):
                continue
            f = _cel_field(name)
            rules.append(
                {
                    "rule": f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})",
                    "message": identity.immutable_field(part, kind, name).text,
                    "fieldPath": f".{name}",
                    "reason": "FieldValueForbidden",
                }
            )
        if rules:
            connection["x-kubernetes-validations"] = connection.get("x-kubernetes-validations", []) + rules


def build_crd() -> dict[str, Any]:
    """The Connector CustomResourceDefinition as a dict."""
    spec = _model_structural(ConnectorSpec, defaults=True)
    parts: tuple[kinds.Part, kinds.Part] = ("source", "sink")
    for part in parts:
        node = spec["properties"][part]
        node["x-kubernetes-validations"] = node.get("x-kubernetes-validations", []) + unavailable_kind_rules(part, node)
        identity_rules(part, node)
    # Status is written by Sluice, not users: no defaults (they would hide what was really reported), and room
    # for fields a newer worker adds.
    status = _model_structural(ConnectorStatus, defaults=False)
    status["x-kubernetes-preserve-unknown-fields"] = True
    status = _ordered(status)
    root: dict[str, Any] = {
        "description": (
            "A Sluice connector: replicate from one source into one sink. metadata.name is the connector id; "
            "spec has the same fields as the REST API's connector body."
        ),
        "type": "object",
        "properties": {
            "apiVersion": {"description": "API version of this object (sluice.dev/v1alpha1).", "type": "string"},
            "kind": {"description": "Kind of this object (Connector).", "type": "string"},
            # Declared only so root rules can name .metadata.name as their fieldPath.
            "metadata": {
                "type": "object",
                "properties": {"name": {"type": "string", "description": "The connector id (a DNS-1123 label)."}},
            },
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.matches('{DNS_LABEL_PATTERN}') "
                f"&& size(self.metadata.name) <= {DNS_LABEL_MAX_LENGTH}",
                "message": "metadata.name is the connector id and must be a DNS-1123 label: at most 63 characters, "
                "lowercase letters, digits and '-', starting and ending with a letter or digit",
                # Without fieldPath a root rule's error names no field ("<nil>: Invalid value").
                "fieldPath": ".metadata.name",
            },
            {
                "rule": "!has(self.spec.id) || self.spec.id == self.metadata.name",
                "message": "spec.id must equal metadata.name (the connector id) or be omitted",
                "fieldPath": ".spec.id",
            },
        ],
    }
    columns = [
        {"name": "Source", "type": "string", "jsonPath": ".status.source_kind", "description": "Source kind."},
        {"name": "Sink", "type": "string", "jsonPath": ".status.sink_kind", "description": "Sink kind."},
        {"name": "State", "type": "string", "jsonPath": ".status.state", "description": "Lifecycle state."},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
            "description": "Whether the connector replicates without a known problem.",
        },
        {
            "name": "Lag",
            "type": "number",
            "jsonPath": ".status.lag_seconds",
            "description": "Seconds the sink is behind the source.",
        },
        {
            "name": "Rows",
            "type": "integer",
            "jsonPath": ".status.rows_applied",
            "description": "Changes applied since streaming started.",
            "priority": 1,
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "sluice"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Shared sub-schemas must be written out in full: anchors and aliases would only confuse readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _dump_yaml(data: Any) -> str:
    return _HEADER + yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False, width=120, allow_unicode=True)


# --- OpenAPI ---------------------------------------------------------------------------------------------------

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error response: what went wrong, where, and how to fix it.",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "CamelCase error reason, e.g. InvalidSpec."},
        "message": {"type": "string", "description": "What went wrong."},
        "fix": {"type": "string", "description": "What to do about it."},
        "details": {
            "type": "array",
            "description": "One entry per problem, with the field path.",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                        "description": "Field path as a list.",
                    },
                    "field": {"type": "string", "description": "Field path, dotted."},
                    "msg": {"type": "string", "description": "The problem at that field."},
                    "fix": {"type": "string", "description": "How to fix it."},
                },
            },
        },
    },
}

_OPENAPI_MODELS: list[tuple[type[BaseModel], Any]] = [
    (ConnectorBody, "validation"),
    (ConnectorResponse, "serialization"),
    (ConnectorList, "serialization"),
    (ConnectorCommand, "validation"),
    (HistoryEvent, "serialization"),
]


def _clean_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (_describe(v) if k == "description" and isinstance(v, str) else _clean_descriptions(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(v) for v in node]
    return node


def component_schemas() -> dict[str, Any]:
    """JSON schemas of the REST models under ``#/components/schemas/`` (one-ofs as ``oneOf``)."""
    _, top = models_json_schema(_OPENAPI_MODELS, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["Error"] = _ERROR_SCHEMA
    return {name: _clean_descriptions(schemas[name]) for name in sorted(schemas)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str | None = None, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"application/json": {"schema": schema if schema is not None else _ref(name or "")}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON.",
        401: "No or invalid bearer token.",
        403: "Kubernetes RBAC refused the request.",
        404: "No such connector.",
        409: "Conflict (already exists or changed concurrently).",
        413: "Body too large.",
        415: "Wrong Content-Type.",
        422: "Validation failed; details name each field.",
        503: "The Kubernetes API server is unreachable.",
    }
    return {str(c): {"description": text[c], "content": _json("Error")} for c in codes}


def _paths() -> dict[str, Any]:
    id_param = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "Connector id (a DNS-1123 label).",
        "schema": {"type": "string", "pattern": DNS_LABEL_PATTERN, "maxLength": DNS_LABEL_MAX_LENGTH},
    }
    body = {"required": True, "content": _json("ConnectorBody")}
    common = (400, 401, 403, 413, 415, 422, 503)
    return {
        "/api/v1/connectors": {
            "get": {
                "operationId": "listConnectors",
                "summary": "List connectors",
                "responses": {"200": {"description": "The connectors.", "content": _json("ConnectorList")}}
                | _errors(401, 403, 503),
            },
            "post": {
                "operationId": "createConnector",
                "summary": "Create a new connector",
                "description": "The server generates a unique identifier, ignoring any id in the request body; the "
                "id field is still required in the body: use a placeholder.",
                "requestBody": body,
                "responses": {"201": {"description": "Created.", "content": _json("ConnectorResponse")}}
                | _errors(*common),
            },
        },
        "/api/v1/connectors/{id}": {
            "parameters": [id_param],
            "get": {
                "operationId": "getConnector",
                "summary": "Get a connector",
                "responses": {"200": {"description": "The connector.", "content": _json("ConnectorResponse")}}
                | _errors(401, 403, 404, 503),
            },
            "post": {
                "operationId": "putConnector",
                "summary": "Create or replace a connector; the path id wins over the body's id",
                "requestBody": body,
                "responses": {
                    "200": {"description": "Replaced.", "content": _json("ConnectorResponse")},
                    "201": {"description": "Created.", "content": _json("ConnectorResponse")},
                }
                | _errors(*common),
            },
            "patch": {
                "operationId": "patchConnector",
                "summary": "Change a connector with an RFC 7396 merge patch",
                "description": "The source/sink kind and the host, port and database cannot change (422).",
                "requestBody": {
                    "required": True,
                    "content": {"application/merge-patch+json": {"schema": {"type": "object"}}},
                },
                "responses": {"200": {"description": "Patched.", "content": _json("ConnectorResponse")}}
                | _errors(*common, 404, 409),
            },
            "delete": {
                "operationId": "deleteConnector",
                "summary": "Delete a connector",
                "responses": {"204": {"description": "Deleted."}} | _errors(401, 403, 404, 503),
            },
        },
        "/api/v1/connector/command/{id}": {
            "parameters": [id_param],
            "post": {
                "operationId": "commandConnector",
                "summary": "Send a command (Start, Stop, Restart, Delete, ForceDelete, ReIntialize)",
                "requestBody": {"required": True, "content": _json("ConnectorCommand")},
                "responses": {"202": {"description": "Accepted.", "content": _json("ConnectorResponse")}}
                | _errors(*common, 404),
            },
        },
        "/api/v1/connector/history/{id}": {
            "parameters": [id_param],
            "get": {
                "operationId": "connectorHistory",
                "summary": "Status events of a connector",
                "responses": {
                    "200": {
                        "description": "Events, oldest first.",
                        "content": _json(schema={"type": "array", "items": _ref("HistoryEvent")}),
                    }
                }
                | _errors(401, 403, 404, 503),
            },
        },
    }


# --- OpenAPI links ---------------------------------------------------------------------------------------------

_CONNECTOR = "/api/v1/connectors/{id}"

#: Responses that name one connector, and where its id is in them (an OpenAPI runtime expression).
_LINK_SOURCES: tuple[tuple[str, str, str, str], ...] = (
    ("post", "/api/v1/connectors", "201", "$response.body#/connector/id"),
    ("post", _CONNECTOR, "201", "$response.body#/connector/id"),
    ("post", _CONNECTOR, "200", "$response.body#/connector/id"),
    ("get", _CONNECTOR, "200", "$response.body#/connector/id"),
    ("patch", _CONNECTOR, "200", "$response.body#/connector/id"),
    ("post", "/api/v1/connector/command/{id}", "202", "$response.body#/id"),
)

#: Link name -> (method, path, where the id goes): what can be done with a connector once its id is known.
CONNECTOR_LINKS: dict[str, tuple[str, str, str]] = {
    "GetConnector": ("get", _CONNECTOR, "path"),
    "ReplaceConnector": ("post", _CONNECTOR, "path"),
    "PatchConnector": ("patch", _CONNECTOR, "path"),
    "DeleteConnector": ("delete", _CONNECTOR, "path"),
    "CommandConnector": ("post", "/api/v1/connector/command/{id}", "path"),
    "ConnectorHistory": ("get", "/api/v1/connector/history/{id}", "path"),
    "ValidateSource": ("post", "/api/v1/validate/source", "body"),
    "ValidateSink": ("post", "/api/v1/validate/sink", "body"),
    "CatalogSource": ("post", "/api/v1/catalog/source", "body"),
}


def add_links(doc: dict[str, Any]) -> dict[str, Any]:
    """Add OpenAPI ``links`` from every response that names a connector to what can be done with it; in place.

    Why: links tell clients (and stateful fuzzers such as schemathesis) how operations chain — create, then get,
    patch, command, validate by ``connector_id``, delete that same connector — instead of each operation being
    tried with ids that exist nowhere. The id comes from the response body (the server generates it on create);
    the namespace is the request's own, since a connector lives where it was created. Links whose operations
    the document does not have are left out (the fallback document has fewer operations). Idempotent.
    """
    paths: dict[str, Any] = doc.get("paths", {})

    def operation(method: str, path: str) -> dict[str, Any] | None:
        op: dict[str, Any] | None = paths.get(path, {}).get(method)
        return op

    for method, path, status, id_expression in _LINK_SOURCES:
        source = operation(method, path)
        response = (source or {}).get("responses", {}).get(status)
        if response is None:
            continue
        links: dict[str, Any] = {}
        for name, (target_method, target_path, where) in CONNECTOR_LINKS.items():
            target = operation(target_method, target_path)
            if target is None or "operationId" not in target:
                continue
            link: dict[str, Any] = {"operationId": target["operationId"], "parameters": {}}
            if where == "path":
                link["parameters"]["path.id"] = id_expression
            else:
                link["requestBody"] = {"connector_id": id_expression}
            if any(p.get("name") == "namespace" and p.get("in") == "query" for p in target.get("parameters", [])):
                link["parameters"]["query.namespace"] = "$request.query.namespace"
            link["description"] = f"{target_method.upper()} {target_path} on the connector this response names."
            links[name] = link
        if links:
            response["links"] = links
    return doc


def _app_factory() -> Callable[[], Any] | None:
    """``sluice.api.app:create_app`` when the API package has it; None when the module does not exist yet."""
    try:
        module = importlib.import_module("sluice.api.app")
    except ModuleNotFoundError as exc:
        if exc.name not in ("sluice.api.app", "sluice.api"):
            raise
        return None
    factory: Callable[[], Any] = module.create_app
    return factory


def build_openapi() -> dict[str, Any]:
    """The REST API's OpenAPI document.

    When the FastAPI app exists (``sluice.api.app:create_app``) its own document is the truth: it describes the
    routes as they are served, with component schemas generated from these same models. Until then the document
    is built here from the models and the endpoint table of the reference API, so clients and fuzzers have one.
    """
    factory = _app_factory()
    if factory is not None:
        return add_links(dict(factory().openapi()))
    log.info("sluice.api.app not found: the OpenAPI paths come from schemagen's own table")
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Sluice API",
            "version": "v1",
            "description": "Create and manage Sluice connectors (stored as Connector resources in Kubernetes).",
        },
        "paths": _paths(),
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A Kubernetes bearer token."}
            },
        },
        "security": [{"bearer": []}],
    }
    return add_links(document)


# --- files and CLI ---------------------------------------------------------------------------------------------


class GeneratedFile:
    """A path relative to the repository root and the text it must hold."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text


def generated_files() -> list[GeneratedFile]:
    """Everything ``sluice generate`` writes, rendered in memory."""
    crd = _dump_yaml(build_crd())
    return [
        GeneratedFile(CRD_PATH, crd),
        GeneratedFile(CHART_CRD_PATH, crd),
        GeneratedFile(OPENAPI_PATH, json.dumps(build_openapi(), indent=2, ensure_ascii=False) + "\n"),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and show a diff when a checked-in file differs from what the models generate",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=REPO_ROOT,
        help="repository root the files are written under (default: this checkout)",
    )


def run(args: argparse.Namespace) -> int:
    root: Path = args.root
    drifted: list[str] = []
    for item in generated_files():
        target = root / item.path
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current == item.text:
            continue
        if args.check:
            drifted.append(str(item.path))
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                item.text.splitlines(keepends=True),
                fromfile=f"{item.path} (checked in)",
                tofile=f"{item.path} (generated)",
                n=2,
            )
            sys.stdout.writelines(list(diff)[:200])
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(item.text, encoding="utf-8")
            print(f"wrote {item.path}")
    if drifted:
        print(
            "generated files are out of date: " + ", ".join(drifted) + "\nrun `make generate` (sluice generate) "
            "and commit the result",
            file=sys.stderr,
        )
        return 1
    return 0
