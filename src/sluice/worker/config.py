"""Loading the worker's connector spec, and the worker's own tunables derived from it.

The file is either a bare connector body (``id: ..., source: ..., sink: ...``) or a Connector resource
(``apiVersion``/``kind``/``metadata``/``spec``), YAML or JSON. Secret references are read from files mounted at
``$SLUICE_SECRETS_DIR/<secret name>/<key>`` (default ``/var/run/secrets/sluice``), which is how the operator hands
Kubernetes Secrets to the pod. Every problem is a :class:`ConfigError` naming the field and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sluice.errors import ConfigError, ErrorDetail
from sluice.kinds import Part, available, unavailable, unavailable_error
from sluice.models import Connector, SecretRef
from sluice.models.resource import connector_from_resource
from sluice.models.secrets import resolve_secrets

__all__ = ["WorkerSettings", "load_connector", "settings_for"]

DEFAULT_SECRETS_DIR = "/var/run/secrets/sluice"

#: Defaults when ``limits`` leaves them open; chosen so a batch stays well under the memory bound.
DEFAULT_CDC_MAX_BUFFER_ROWS = 25_000
DEFAULT_CDC_FLUSH_INTERVAL_MS = 1_000
DEFAULT_SNAPSHOT_MAX_BUFFER_ROWS = 200_000


@dataclass(frozen=True)
class WorkerSettings:
    cdc_max_buffer_rows: int
    cdc_flush_interval_ms: int
    snapshot_max_buffer_rows: int


def settings_for(connector: Connector) -> WorkerSettings:
    limits = connector.limits
    cdc = limits.cdc if limits else None
    snap = limits.snapshot if limits else None
    return WorkerSettings(
        cdc_max_buffer_rows=(cdc.max_buffer_rows if cdc and cdc.max_buffer_rows else DEFAULT_CDC_MAX_BUFFER_ROWS),
        cdc_flush_interval_ms=(
            cdc.flush_interval_ms if cdc and cdc.flush_interval_ms else DEFAULT_CDC_FLUSH_INTERVAL_MS
        ),
        snapshot_max_buffer_rows=(
            snap.max_buffer_rows if snap and snap.max_buffer_rows else DEFAULT_SNAPSHOT_MAX_BUFFER_ROWS
        ),
    )


def _secret_lookup(ref: SecretRef) -> str:
    base = Path(os.environ.get("SLUICE_SECRETS_DIR", DEFAULT_SECRETS_DIR))
    path = base / ref.name / ref.key
    try:
        return path.read_text(encoding="utf-8").rstrip("\n")
    except OSError as exc:
        raise ConfigError(
            f"secret {ref.name!r} key {ref.key!r} is not available to the worker ({path}: {exc.strerror})",
            fix=f"Create the Secret {ref.name!r} with key {ref.key!r} in the connector's namespace, or mount it "
            "under SLUICE_SECRETS_DIR.",
        ) from exc


def _validation_error(exc: ValidationError, prefix: list[str | int]) -> ConfigError:
    details = [
        ErrorDetail([*prefix, *[p for p in err["loc"] if isinstance(p, str | int)]], err["msg"]) for err in exc.errors()
    ]
    summary = "; ".join(f"{d.as_dict()['field']}: {d.msg}" for d in details[:5])
    return ConfigError(f"invalid connector spec: {summary}", details=details)


def load_connector(path: str | Path) -> Connector:
    """Read, validate and resolve secrets; then check the worker can run this combination."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read connector config {str(p)!r}: {exc.strerror}", fix="Pass an existing file to --config."
        ) from exc
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"connector config {str(p)!r} is not valid YAML/JSON: {exc}", fix="Fix the syntax of the file."
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"connector config {str(p)!r} must hold a mapping (a connector or a Connector resource)",
            fix="Write the connector as a YAML mapping with id, source and sink.",
        )
    try:
        if data.get("kind") == "Connector" and "spec" in data:
            connector = connector_from_resource(data)
        else:
            connector = Connector.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, ["spec"] if "spec" in data else []) from exc
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    connector = resolve_secrets(connector, _secret_lookup)
    check_supported(connector)
    return connector


def check_supported(connector: Connector) -> None:
    """Refuse what this worker cannot run, naming the field and the fix.

    Which kinds run is `sluice.kinds` (the list the API, the CRD and the operator refuse with too, in the same
    words); the rest are limits of the PostgreSQL worker itself.
    """
    given: tuple[tuple[Part, str], ...] = (("source", connector.source.kind), ("sink", connector.sink.kind))
    refused = [unavailable(part, kind) for part, kind in given if kind not in available(part)]
    problems: list[ErrorDetail] = [r.detail() for r in refused]
    for side in ("source", "sink"):
        cfg = getattr(connector, side).config
        conn = getattr(cfg, "connection", None)
        if conn is not None and getattr(conn, "tunnel", None) is not None:
            problems.append(
                ErrorDetail(
                    [side, "postgres", "connection", "tunnel"],
                    "SSH tunnels are not supported by this worker yet",
                    "Make the database reachable directly and remove the tunnel.",
                )
            )
    if connector.buffer is not None:
        problems.append(
            ErrorDetail(
                ["buffer"],
                "a buffer (object store staging) is not used by the PostgreSQL→PostgreSQL worker",
                "Remove buffer from the spec.",
            )
        )
    if refused and len(problems) == len(refused):
        raise unavailable_error(refused)
    if problems:
        raise ConfigError(
            "connector cannot run: " + "; ".join(p.msg for p in problems),
            fix=" ".join(p.fix for p in problems),
            details=problems,
        )
