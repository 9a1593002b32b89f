"""``/api/v1/validate/*`` and ``/api/v1/catalog/source``: the worker's own checks and discovery, run for a caller.

One implementation: the checks are :meth:`Source.checks <sluice.worker.sources.base.Source.checks>` and
:meth:`Sink.checks <sluice.worker.sinks.base.Sink.checks>` of the class :mod:`sluice.worker.registry` names for the
kind (its driver is imported only then), the same code the worker's preflight runs; the catalog is
:meth:`Source.discover` run twice, once with no selection (everything there is) and once with the given ``catalog``
(what would replicate).

The classes take a `Connector`; the API builds one around the given part alone (``model_construct``: the other
part is never read by a source or a sink). Credentials:

- inline values are used for the check and never echoed (responses carry only messages the drivers wrote, which
  never contain a credential);
- ``*_secret_ref`` are read from the namespace's Secrets by the API, after a SubjectAccessReview says the caller
  may ``get`` that Secret (the API's own ``<id>-credentials`` of a connector the caller may ``get`` excepted: they
  are that connector's credentials, not the caller's to read).

Mistakes in the request (not JSON, not a spec, an unavailable kind, a Secret that cannot be read) are 4xx errors
naming the field, the problem and the fix; everything about the server checked is a failed check, with its fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sluice.api.secrets import MANAGED_BY, MANAGED_BY_LABEL, check_no_placeholders, secret_name
from sluice.api.validation import config_error
from sluice.errors import AuthorizationError, ConfigError, ErrorDetail, NotFoundError, SluiceError
from sluice.k8s import Kube, UserInfo
from sluice.kinds import Part, available, schema_kinds, unavailable, unavailable_error
from sluice.models import REDACTED, Buffer, Catalog, Connector, SecretRef
from sluice.models import Sink as SinkModel
from sluice.models import Source as SourceModel
from sluice.models.secrets import iter_secrets, resolve_secrets

__all__ = [
    "VALIDATION_ID",
    "CatalogColumnView",
    "CatalogResult",
    "CatalogSchemaView",
    "CatalogTableView",
    "CheckView",
    "ValidationResult",
    "ValidationService",
]

log = logging.getLogger(__name__)

#: The connector id the checked part is given when no connector is named (slot and publication names derive from
#: it; nothing is created under it).
VALIDATION_ID = "sluice-validate"

Status = Literal["passed", "failed", "skipped"]
M = TypeVar("M", bound=BaseModel)


class _Doc(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


class CheckView(_Doc):
    """One check: what was checked, its outcome, what was found and what to change when it failed."""

    name: str
    """What was checked: connection (reachability, TLS and authentication), wal_level, replication_privilege, ..."""
    status: Status
    """passed, failed, or skipped (not checked, e.g. because the connection failed)."""
    message: str
    """What was found."""
    fix: str | None = None
    """What to change when the check failed."""
    field: str | None = None
    """The spec field the check concerns, dotted (source.postgres.connection.user)."""
    loc: list[str | int] | None = None
    """The same field as a path."""


class ValidationResult(_Doc):
    """Every check of one source, sink or buffer; ``valid`` when none failed."""

    valid: bool
    """True when no check failed."""
    kind: str
    """The source, sink or buffer kind that was checked (postgres, object_store, ...)."""
    checks: list[CheckView] = Field(default_factory=list)
    """The checks in the order they ran, passed ones included."""


class CatalogColumnView(_Doc):
    """One column of a source table."""

    name: str
    """Column name."""
    type: str
    """The source's type, as in its DDL (integer, numeric(12,2), public.mood)."""
    logical_type: str
    """Sluice's neutral type kind (int, decimal, text, timestamp_tz, ...)."""
    nullable: bool
    """Whether the column accepts NULL."""
    key: bool
    """Part of the table's key (primary key or replica identity index)."""
    replicated: bool
    """Whether the column would be replicated under the catalog (false for a column the catalog excludes or a
    column of a table that is not replicated)."""


class CatalogTableView(_Doc):
    """One table of the source."""

    name: str
    """Table name."""
    key: list[str]
    """Key columns in key order; empty for a table without a primary key or replica identity index."""
    replicated: bool
    """Whether the table would be replicated under the catalog (and the publication, when one is named)."""
    columns: list[CatalogColumnView]
    """The columns in table order."""


class CatalogSchemaView(_Doc):
    """One schema (namespace) of the source."""

    name: str
    """Schema name."""
    replicated: bool
    """Whether at least one of its tables would be replicated."""
    tables: list[CatalogTableView]
    """Its tables, by name."""


class CatalogResult(_Doc):
    """What the source has, and what the catalog would replicate of it."""

    kind: str
    """The source kind (postgres)."""
    schemas: list[CatalogSchemaView]
    """The source's schemas that hold tables, by name (system schemas left out)."""


@dataclass(frozen=True)
class Caller:
    """Who asks, for Secret access checks; ``user=None`` when the API runs without authentication."""

    user: UserInfo | None
    namespace: str


def _loc(*parts: str | int) -> list[str | int]:
    return list(parts)


def _as_view(check: Any) -> CheckView:
    loc: list[str | int] | None = list(check.field) or None
    dotted = ErrorDetail(loc, "").as_dict()["field"] if loc else None
    return CheckView(
        name=check.name,
        status="passed" if check.ok else "failed",
        message=check.message,
        fix=check.fix or None,
        field=dotted,
        loc=loc,
    )


def _failed(name: str, err: SluiceError, loc: list[str | int]) -> CheckView:
    if err.details and err.details[0].loc:
        loc = list(err.details[0].loc)
    return CheckView(
        name=name,
        status="failed",
        message=err.message,
        fix=err.fix or None,
        field=ErrorDetail(loc, "").as_dict()["field"],
        loc=loc,
    )


def _no_placeholders(model: BaseModel, prefix: str | None) -> None:
    """Refuse a redaction placeholder sent as a credential (a GET response pasted back), as the connector API does."""
    bad = [
        [*([prefix] if prefix else []), *path]
        for path, value, _ in iter_secrets(model)
        if value is not None and value.get_secret_value() in (REDACTED, "**redacted**")
    ]
    if bad:
        raise ConfigError(
            "a secret field holds the redaction placeholder instead of a credential",
            details=[
                ErrorDetail(
                    loc,
                    "this is the placeholder shown in place of a secret, not a credential",
                    f"Send the real value or '{loc[-1]}_secret_ref: {{name, key}}'.",
                )
                for loc in bad
            ],
        )


#: Certificate and key fields that take PEM text or the path of a file the worker reads.
_FILE_FIELDS = frozenset({"ssl_root_cert", "ssl_cert", "ssl_key", "ca_file"})


def _file_paths(value: Any, path: list[str | int]) -> Iterator[list[str | int]]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            field = getattr(value, name)
            if name in _FILE_FIELDS and field is not None:
                text = field.get_secret_value() if hasattr(field, "get_secret_value") else field
                if isinstance(text, str) and "-----BEGIN" not in text:
                    yield [*path, name]
            else:
                yield from _file_paths(field, [*path, name])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _file_paths(item, [*path, i])


def _no_file_paths(model: BaseModel, prefix: str | None) -> None:
    """Refuse a certificate or key given as a file path: the API would read that path inside its own pod (a caller
    could probe which files exist there). The worker reads paths in its pod; through the API, send the PEM text."""
    bad = list(_file_paths(model, [prefix] if prefix else []))
    if bad:
        raise ConfigError(
            "a certificate or key is given as a file path, which the API does not read",
            details=[
                ErrorDetail(
                    loc,
                    "a file path; checks and catalogs through the API take only PEM text",
                    f"Send the PEM text (-----BEGIN ...) in {loc[-1]}; a path is read only by the worker, in its pod.",
                )
                for loc in bad
            ],
        )


def _require_object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ConfigError(
            f"the request body must be a JSON object ({what})",
            details=[ErrorDetail(loc=["body"], msg=f"expected an object, got {type(body).__name__}")],
        )
    return body


def _refuse_unavailable(part: Part, body: dict[str, Any]) -> None:
    given = [str(k) for k, v in body.items() if v is not None]
    if len(given) == 1 and given[0] in schema_kinds(part) and given[0] not in available(part):
        raise unavailable_error([unavailable(part, given[0])])


class ValidationService:
    """Checks and catalogs for the REST API. Sync: FastAPI runs these in its thread pool."""

    def __init__(self, kube: Kube, *, can_read_secret: Callable[[UserInfo, str, str], bool] | None = None) -> None:
        self.kube = kube
        self._can_read_secret = can_read_secret

    # -- parsing ----------------------------------------------------------------------------------------------

    def _connector_by_id(self, caller: Caller, connector_id: Any) -> Connector:
        if not isinstance(connector_id, str) or not connector_id:
            raise ConfigError(
                "connector_id must be the id of an existing connector",
                details=[ErrorDetail(["connector_id"], "expected a non-empty string", "Send the connector's id.")],
            )
        cr = self.kube.connectors.get(caller.namespace, connector_id)
        spec = dict(cr.get("spec") or {})
        try:
            connector = Connector.model_validate({**spec, "id": connector_id})
        except ValidationError as exc:
            raise config_error(exc, what=f'the stored connector "{connector_id}"') from exc
        own = secret_name(connector_id)
        return self._resolve(connector, caller, trusted=own)

    def source_connector(self, caller: Caller, body: Any) -> Connector:
        """A `Connector` around the source given as ``{"postgres": {...}}`` or ``{"connector_id": id}``."""
        body = _require_object(body, 'a source such as {"postgres": {...}}, or {"connector_id": "<id>"}')
        if "connector_id" in body:
            return self._connector_by_id(caller, body["connector_id"])
        _refuse_unavailable("source", body)
        try:
            source = SourceModel.model_validate(body)
        except ValidationError as exc:
            raise config_error(exc, what="the source", prefix=["source"]) from exc
        source = self._resolve(source, caller, prefix="source")
        return _around(source=source)

    def sink_connector(self, caller: Caller, body: Any) -> Connector:
        """A `Connector` around the sink given as ``{"postgres": {...}}`` or ``{"connector_id": id}``."""
        body = _require_object(body, 'a sink such as {"postgres": {...}}, or {"connector_id": "<id>"}')
        if "connector_id" in body:
            return self._connector_by_id(caller, body["connector_id"])
        _refuse_unavailable("sink", body)
        try:
            sink = SinkModel.model_validate(body)
        except ValidationError as exc:
            raise config_error(exc, what="the sink", prefix=["sink"]) from exc
        sink = self._resolve(sink, caller, prefix="sink")
        return _around(sink=sink)

    def _resolve(self, model: M, caller: Caller, *, trusted: str | None = None, prefix: str | None = None) -> M:
        """``model`` with every ``*_secret_ref`` replaced by the Secret's value (placeholders refused first)."""
        if isinstance(model, Connector):
            check_no_placeholders(model)
        else:
            _no_placeholders(model, prefix)
        _no_file_paths(model, prefix)
        refs = [(path, ref) for path, _, ref in iter_secrets(model) if ref is not None]
        if not refs:
            return model
        where = {id(ref): path for path, ref in refs}

        def lookup(ref: SecretRef) -> str:
            path: list[str | int] = [*([prefix] if prefix else []), *where.get(id(ref), ())]
            loc: list[str | int] = [*path[:-1], f"{path[-1]}_secret_ref"] if path else ["body"]
            return self._read_secret(caller, ref, loc, trusted=trusted)

        return resolve_secrets(model, lookup)

    def _read_secret(self, caller: Caller, ref: SecretRef, loc: list[str | int], *, trusted: str | None) -> str:
        ns = caller.namespace
        where = f'Secret "{ref.name}" in namespace "{ns}"'
        if caller.user is not None and ref.name != trusted and not self._may_read(caller.user, ns, ref.name):
            raise AuthorizationError(
                f'user "{caller.user.username}" may not get {where}, which the spec refers to',
                fix=f"Refer only to Secrets you may read, or ask for 'get' on secrets/{ref.name} in {ns}.",
                details=[ErrorDetail(loc, f"the caller may not read {where}")],
            )
        try:
            secret = self.kube.secrets.get(ns, ref.name)
        except NotFoundError as exc:
            raise ConfigError(
                f"{where} does not exist",
                fix=f"Create the Secret in namespace {ns}, or correct the name.",
                details=[ErrorDetail([*loc, "name"], f"{where} does not exist")],
            ) from exc
        if ref.name == trusted and secret.labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
            # Same name as the connector's own, but not written by Sluice: the caller's rights decide.
            return self._read_secret(caller, ref, loc, trusted=None)
        if ref.key not in secret.data:
            raise ConfigError(
                f'{where} has no key "{ref.key}"',
                fix=f"Use one of its keys ({', '.join(sorted(secret.data)) or 'it has none'}) or add the key.",
                details=[ErrorDetail([*loc, "key"], f'no key "{ref.key}" in {where}')],
            )
        return secret.data[ref.key]

    def _may_read(self, user: UserInfo, namespace: str, name: str) -> bool:
        return self._can_read_secret is None or self._can_read_secret(user, namespace, name)

    # -- checks -----------------------------------------------------------------------------------------------

    def validate_source(self, connector: Connector) -> ValidationResult:
        from sluice.worker.registry import source_for

        return _run_checks("source", connector.source.kind, lambda: source_for(connector))

    def validate_sink(self, connector: Connector) -> ValidationResult:
        from sluice.worker.registry import sink_for

        return _run_checks("sink", connector.sink.kind, lambda: sink_for(connector))

    def validate_buffer(self, caller: Caller, body: Any) -> ValidationResult:
        """The fields of a buffer; no sink of this version stages through an object store, so nothing is dialled."""
        body = _require_object(body, 'a buffer such as {"object_store": {"url": "s3://bucket/prefix"}}')
        if "connector_id" in body:
            connector = self._connector_by_id(caller, body["connector_id"])
            if connector.buffer is None:
                raise ConfigError(
                    f'connector "{connector.id}" has no buffer',
                    details=[ErrorDetail(["connector_id"], "the connector sets no buffer", "Send a buffer instead.")],
                )
            buffer = connector.buffer
        else:
            try:
                buffer = Buffer.model_validate(body)
            except ValidationError as exc:
                raise config_error(exc, what="the buffer", prefix=["buffer"]) from exc
            buffer = self._resolve(buffer, caller, prefix="buffer")
        store = buffer.object_store
        scheme = store.url.split("://", 1)[0]
        checks = [
            CheckView(
                name="fields",
                status="passed",
                message=f"the buffer is well-formed ({scheme} object store at {store.url})",
                field="buffer.object_store",
                loc=["buffer", "object_store"],
            ),
            CheckView(
                name="connection",
                status="skipped",
                message="not checked: no sink of this version of Sluice stages data in an object store yet, so the "
                "buffer is accepted but not used",
                fix="Nothing to do; leave the buffer out if you do not need it.",
                field="buffer.object_store.url",
                loc=["buffer", "object_store", "url"],
            ),
        ]
        return ValidationResult(valid=True, kind="object_store", checks=checks)

    # -- catalog ----------------------------------------------------------------------------------------------

    def catalog(self, connector: Connector) -> CatalogResult:
        """Every table of the source with its columns, types and key, and what the catalog would replicate."""
        from sluice.worker.registry import source_for

        kind = connector.source.kind
        everything = _without_selection(connector)
        with _source(source_for, everything, kind) as src:
            tables = src.discover()
        with _source(source_for, connector, kind) as src:
            selected = {t.table: t for t in src.discover()}
        schemas: dict[str, list[CatalogTableView]] = {}
        for table in sorted(tables, key=lambda t: (t.table.namespace, t.table.name)):
            chosen = selected.get(table.table)
            kept = {c.name for c in chosen.columns} if chosen is not None else set()
            key = list(chosen.key if chosen is not None else table.key)
            schemas.setdefault(table.table.namespace, []).append(
                CatalogTableView(
                    name=table.table.name,
                    key=key,
                    replicated=chosen is not None,
                    columns=[
                        CatalogColumnView(
                            name=c.name,
                            type=c.type.native or str(c.type.kind),
                            logical_type=str(c.type.kind),
                            nullable=c.nullable,
                            key=c.name in key,
                            replicated=c.name in kept,
                        )
                        for c in table.columns
                    ],
                )
            )
        return CatalogResult(
            kind=kind,
            schemas=[
                CatalogSchemaView(name=name, replicated=any(t.replicated for t in views), tables=views)
                for name, views in sorted(schemas.items())
            ],
        )


def _around(*, source: SourceModel | None = None, sink: SinkModel | None = None) -> Connector:
    """A `Connector` holding one part; the other is absent (a source never reads the sink, nor a sink the source).

    Built without validation, since a `Connector` requires both parts; the part given was validated already.
    """
    parts: dict[str, Any] = {"source": source, "sink": sink}
    return Connector.model_construct(id=VALIDATION_ID, **parts)


def _unexpected(part: str, kind: str, exc: BaseException) -> SluiceError:
    """A driver failure no class of its own covers (a bug, or input the driver cannot take): said, never a 500."""
    log.warning("checking a %s %s failed unexpectedly", kind, part, exc_info=exc)
    return SluiceError(
        f"the {kind} {part} could not be checked: its driver failed with {type(exc).__name__} (the API's log has "
        "the details)",
        fix=f"Check {part}.{kind}.connection (host name, port, database); if it is right, report this as a bug.",
    )


def _run_checks(part: str, kind: str, factory: Callable[[], Any]) -> ValidationResult:
    """The checks of the source or sink ``factory`` builds, each as a view; a failure to check is a failed check."""
    conn_loc = _loc(part, kind, "connection")
    try:
        target = factory()
    except SluiceError as exc:
        return ValidationResult(valid=False, kind=kind, checks=[_failed("configuration", exc, conn_loc)])
    except Exception as exc:
        err = _unexpected(part, kind, exc)
        return ValidationResult(valid=False, kind=kind, checks=[_failed("configuration", err, conn_loc)])
    try:
        checks = [_as_view(c) for c in target.checks()]
    except SluiceError as exc:
        checks = [_failed("connection", exc, conn_loc)]
    except Exception as exc:
        checks = [_failed("connection", _unexpected(part, kind, exc), conn_loc)]
    finally:
        try:
            target.close()
        except Exception as exc:
            log.debug("closing the %s %s failed: %s", kind, part, type(exc).__name__)
    return ValidationResult(valid=all(c.status != "failed" for c in checks), kind=kind, checks=checks)


@contextmanager
def _source(factory: Callable[[Connector], Any], connector: Connector, kind: str) -> Iterator[Any]:
    """A source for discovery; a failure to reach it is the caller's input problem (422), with the driver's fix."""
    loc: list[str | int] = ["source", kind, "connection"]

    def refused(exc: SluiceError) -> ConfigError:
        return ConfigError(
            f"cannot read the source's catalog: {exc.message}",
            fix=exc.fix or "Check the source with POST /api/v1/validate/source.",
            details=[ErrorDetail(loc, exc.message, exc.fix)],
        )

    try:
        src = factory(connector)
    except ConfigError:
        raise
    except SluiceError as exc:
        raise refused(exc) from exc
    except Exception as exc:
        raise refused(_unexpected("source", kind, exc)) from exc
    try:
        yield src
    except ConfigError:
        raise
    except SluiceError as exc:
        raise refused(exc) from exc
    except Exception as exc:
        raise refused(_unexpected("source", kind, exc)) from exc
    finally:
        try:
            src.close()
        except Exception as exc:
            log.debug("closing the %s source failed: %s", kind, type(exc).__name__)


def _without_selection(connector: Connector) -> Connector:
    """The same connector with no catalog rules and no user publication: discovery then lists every table."""
    source = connector.source
    data = source.model_dump(mode="python", round_trip=True, by_alias=True)
    config = data.get(source.kind)
    if isinstance(config, dict):
        if "catalog" in config:
            config["catalog"] = Catalog().model_dump(mode="python", by_alias=True)
        logical = (config.get("replication_type") or {}).get("logical_replication")
        if isinstance(logical, dict) and logical.get("publication_name"):
            logical["publication_name"] = None
    return Connector.model_construct(
        id=connector.id, source=SourceModel.model_validate(data), sink=connector.sink, **_rest(connector)
    )


def _rest(connector: Connector) -> dict[str, Any]:
    return {k: getattr(connector, k) for k in ("buffer", "limits", "disabled", "schedule", "name")}
