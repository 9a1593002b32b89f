"""``/api/v1/validate/{source,sink,buffer}``: the worker's checks of a source, a sink or a buffer, as a list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sluice.api.access import require
from sluice.api.body import read_json
from sluice.api.routes.catalog import Namespace, check_body_doc, errors, resolve_caller
from sluice.api.schemas import json_response
from sluice.api.services.validation import ValidationResult
from sluice.api.state import state_of

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/validate", tags=["validate"])

_COMMON = (
    "Answers 200 with every check, passed or not, each failed one with its fix; `valid` is false when any failed. "
    'The body is the part alone, e.g. `{"postgres": {"connection": {...}}}`, or `{"connector_id": "<id>"}` '
    "to check an existing connector's. Inline credentials are used for the check and never returned; "
    "`*_secret_ref` are read from the namespace's Secrets, which the caller must be allowed to `get`. "
    "Needs `create` on connectors in the namespace (`get` on the connector with connector_id). Nothing is created."
)


def _result(result: ValidationResult) -> Response:
    return JSONResponse(result.model_dump(mode="json", exclude_none=True))


@router.post(
    "/source",
    summary="Validate a source",
    dependencies=[require("create", "get")],
    description="The same checks the worker runs before it starts: connection (reachability, TLS, "
    "authentication), server version, wal_level, replication slots and WAL senders, the REPLICATION privilege, "
    "the named publication, the catalog's tables and their keys. " + _COMMON,
    response_class=Response,
    responses={200: json_response(ValidationResult, "The checks."), **errors(404)},
    openapi_extra=check_body_doc("Source"),
)
async def validate_source(request: Request, namespace: Namespace = None) -> Response:
    st = state_of(request)
    await st.authenticate(request)
    body: Any = await read_json(request, max_bytes=st.settings.max_body_bytes)
    caller = await resolve_caller(request, body, namespace)
    connector = await run_in_threadpool(st.validation.source_connector, caller, body)
    return _result(await run_in_threadpool(st.validation.validate_source, connector))


@router.post(
    "/sink",
    summary="Validate a sink",
    dependencies=[require("create", "get")],
    description="The same checks the worker runs before it starts: connection (reachability, TLS, "
    "authentication) and the rights to create Sluice's state schema and the target schema and tables. " + _COMMON,
    response_class=Response,
    responses={200: json_response(ValidationResult, "The checks."), **errors(404)},
    openapi_extra=check_body_doc("Sink"),
)
async def validate_sink(request: Request, namespace: Namespace = None) -> Response:
    st = state_of(request)
    await st.authenticate(request)
    body: Any = await read_json(request, max_bytes=st.settings.max_body_bytes)
    caller = await resolve_caller(request, body, namespace)
    connector = await run_in_threadpool(st.validation.sink_connector, caller, body)
    return _result(await run_in_threadpool(st.validation.validate_sink, connector))


@router.post(
    "/buffer",
    summary="Validate a buffer",
    dependencies=[require("create", "get")],
    description="Checks the buffer's fields. No sink of this version of Sluice stages data in an object store "
    "yet, so the store itself is not contacted: its connection check says `skipped`, and why. " + _COMMON,
    response_class=Response,
    responses={200: json_response(ValidationResult, "The checks."), **errors(404)},
    openapi_extra=check_body_doc("Buffer"),
)
async def validate_buffer(request: Request, namespace: Namespace = None) -> Response:
    st = state_of(request)
    await st.authenticate(request)
    body: Any = await read_json(request, max_bytes=st.settings.max_body_bytes)
    caller = await resolve_caller(request, body, namespace)
    return _result(await run_in_threadpool(st.validation.validate_buffer, caller, body))
