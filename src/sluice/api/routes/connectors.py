"""``/api/v1/connectors`` and ``/api/v1/connector/{command,history}``: thin handlers over `ConnectorService`."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from sluice.api.access import require
from sluice.api.body import JSON, MERGE_PATCH, read_json
from sluice.api.dryrun import DryRunKube
from sluice.api.ids import DNS_LABEL_RULE, check_id
from sluice.api.schemas import (
    ERRORS,
    CommandResult,
    DryRunResult,
    HistoryList,
    body_doc,
    json_response,
    one_of_response,
)
from sluice.api.services.connectors import ConnectorService, SecretCheck
from sluice.api.state import ApiState, state_of
from sluice.api.validation import config_error
from sluice.models import ConnectorBody
from sluice.models.status import ConnectorCommand, ConnectorList, ConnectorResponse

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["connectors"])

Namespace = Annotated[
    str | None,
    Query(
        description="Namespace of the connector; defaults to the API's SLUICE_NAMESPACE. Kubernetes RBAC is "
        "checked in this namespace.",
        max_length=63,
    ),
]
ConnectorId = Annotated[
    str,
    Path(
        description=f"Connector id: {DNS_LABEL_RULE}.",
        json_schema_extra={"pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
    ),
]

DryRun = Annotated[
    bool,
    Query(
        description="Validate completely, including the Kubernetes apiserver's own validation and admission "
        "(a server-side dry run, dryRun=All), and write nothing: no Connector, no Secret. The answer is 200 "
        "with the connector as it would be and dry_run: true.",
    ),
]


def _secret_check(st: ApiState, request: Request) -> SecretCheck | None:
    """A connector may reference only Secrets its writer may read: a SubjectAccessReview per referenced Secret."""
    if not st.authorizer.enabled:
        return None
    return partial(st.authorizer.may_read_secret, request.headers.get("authorization"))


def _service(st: ApiState, dry_run: bool) -> ConnectorService:
    return ConnectorService(DryRunKube.of(st.kube)) if dry_run else st.service


def _dry(out: dict[str, Any], *, created: bool) -> JSONResponse:
    return JSONResponse({**out, "dry_run": True, "created": created})


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: ERRORS[code] for code in (400, 401, 403, 413, 415, 422, 503, *codes)}


@router.post(
    "/connectors",
    status_code=201,
    summary="Create a new connector",
    dependencies=[require("create")],
    description="The server generates the id (a DNS-1123 label such as c-k3v9x0q2ab), ignoring the body's id, "
    "which the schema still requires: send any placeholder, e.g. an empty string. Inline credentials are stored "
    "in the Secret <id>-credentials and the connector refers to them by *_secret_ref. A source or sink kind this "
    "version of Sluice does not run yet is refused with 422 UnsupportedKind.",
    response_class=Response,
    responses={
        200: json_response(DryRunResult, "dry_run=true: the connector as it would be created; nothing written."),
        201: json_response(ConnectorResponse, "The connector, created."),
        **_errors(409),
    },
    openapi_extra=body_doc(ConnectorBody),
)
async def create_connector(request: Request, namespace: Namespace = None, dry_run: DryRun = False) -> Response:
    st = state_of(request)
    ns = st.namespace(namespace)
    await st.authorize(request, "create", ns)
    body = await read_json(request, max_bytes=st.settings.max_body_bytes)
    out = await run_in_threadpool(
        partial(_service(st, dry_run).create, ns, body, check_secret=_secret_check(st, request))
    )
    if dry_run:
        return _dry(out, created=True)
    cid = out["connector"].get("id", "")
    return JSONResponse(out, status_code=201, headers={"Location": f"/api/v1/connectors/{cid}"})


@router.get(
    "/connectors",
    summary="List connectors",
    dependencies=[require("list")],
    response_class=Response,
    responses={200: json_response(ConnectorList, "The connectors of the namespace."), **_errors()},
)
async def list_connectors(request: Request, namespace: Namespace = None) -> Response:
    st = state_of(request)
    ns = st.namespace(namespace)
    await st.authorize(request, "list", ns)
    items = await run_in_threadpool(st.service.list_all, ns)
    return JSONResponse({"connectors": items})


@router.post(
    "/connectors/{id}",
    summary="Create or replace a connector",
    dependencies=[require("create", "update", named=True)],
    description="The path id wins over the body's id. 201 when created, 200 when replaced (or dry_run=true).",
    response_class=Response,
    responses={
        200: one_of_response(
            [ConnectorResponse, DryRunResult],
            "The connector, replaced (dry_run=true: as it would be; nothing written).",
        ),
        201: json_response(ConnectorResponse, "The connector, created."),
        **_errors(409),
    },
    openapi_extra=body_doc(ConnectorBody),
)
async def put_connector(
    request: Request, id: ConnectorId, namespace: Namespace = None, dry_run: DryRun = False
) -> Response:
    st = state_of(request)
    ns = st.namespace(namespace)
    cid = check_id(id)
    exists = await run_in_threadpool(st.service.exists, ns, cid) if st.authorizer.enabled else False
    await st.authorize(request, "update" if exists else "create", ns, cid if exists else None)
    body = await read_json(request, max_bytes=st.settings.max_body_bytes)
    out, created = await run_in_threadpool(
        partial(_service(st, dry_run).put, ns, cid, body, check_secret=_secret_check(st, request))
    )
    if dry_run:
        return _dry(out, created=created)
    if created:
        return JSONResponse(out, status_code=201, headers={"Location": f"/api/v1/connectors/{cid}"})
    return JSONResponse(out)


@router.get(
    "/connectors/{id}",
    summary="Get a connector",
    dependencies=[require("get", named=True)],
    response_class=Response,
    responses={200: json_response(ConnectorResponse, "The connector."), **_errors(404)},
)
async def get_connector(request: Request, id: ConnectorId, namespace: Namespace = None) -> Response:
    st = state_of(request)
    ns = st.namespace(namespace)
    cid = check_id(id)
    await st.authorize(request, "get", ns, cid)
    return JSONResponse(await run_in_threadpool(st.service.get, ns, cid))


@router.patch(
    "/connectors/{id}",
    summary="Update a connector with a JSON merge patch",
    dependencies=[require("patch", named=True)],
    description="RFC 7396 merge patch (application/merge-patch+json or application/json). Changing the "
    "source/sink kind or the connection's host, port or database is refused with 422.",
    response_class=Response,
    responses={
        200: one_of_response(
            [ConnectorResponse, DryRunResult], "The connector, updated (dry_run=true: as it would be; nothing written)."
        ),
        **_errors(404, 409),
    },
    openapi_extra=body_doc(None, (MERGE_PATCH, JSON)),
)
async def patch_connector(
    request: Request, id: ConnectorId, namespace: Namespace = None, dry_run: DryRun = False
) -> Response:
    st = state_of(request)
    ns = st.namespace(namespace)
    cid = check_id(id)
    await st.authorize(request, "patch", ns, cid)
    patch = await read_json(request, max_bytes=st.settings.max_body_bytes, media_types=(MERGE_PATCH, JSON))
    out = await run_in_threadpool(
        partial(_service(st, dry_run).patch, ns, cid, patch, check_secret=_secret_check(st, request))
    )
    return _dry(out, created=False) if dry_run else JSONResponse(out)


@router.delete(
    "/connectors/{id}",
    status_code=204,
    summary="Delete a connector",
    dependencies=[require("delete", named=True)],
    description="Same as the Delete command. The credentials Secret is removed by Kubernetes after the connector.",
    response_class=Response,
    responses={204: {"description": "Deletion started."}, **_errors(404)},
)
async def delete_connector(request: Request, id: ConnectorId, namespace: Namespace = None) -> Response:
    st = state_of(request)
    ns = st.namespace(namespace)
    cid = check_id(id)
    await st.authorize(request, "delete", ns, cid)
    await run_in_threadpool(st.service.delete, ns, cid)
    return Response(status_code=204)


@router.post(
    "/connector/command/{id}",
    status_code=202,
    summary="Send a command to a connector",
    dependencies=[require("patch", "delete", named=True)],
    description=(
        "Start / Stop: set spec.disabled false / true, nothing else (Stop keeps the replication slot, so the source "
        "retains WAL). Restart: the operator restarts the worker. ReIntialize (sic, as in the reference API): the "
        "operator drops progress and snapshots again. These two are recorded as annotations "
        "sluice.dev/command, sluice.dev/command-id and sluice.dev/command-requested-at for the operator to act "
        "on. Delete: delete the connector (the operator drops the slot/publication Sluice created). "
        "ForceDelete: annotate sluice.dev/force-delete=true, then delete: the operator does not wait for an "
        "unreachable source, so a slot may be left behind."
    ),
    response_class=Response,
    responses={202: json_response(CommandResult, "The command was recorded."), **_errors(404, 409)},
    openapi_extra=body_doc(ConnectorCommand),
)
async def command_connector(request: Request, id: ConnectorId, namespace: Namespace = None) -> Response:
    st = state_of(request)
    ns = st.namespace(namespace)
    cid = check_id(id)
    await st.authenticate(request)
    body = await read_json(request, max_bytes=st.settings.max_body_bytes)
    try:
        command = ConnectorCommand.model_validate(body).command
    except ValidationError as exc:
        raise config_error(exc, what="the command") from exc
    verb = "delete" if command.value in ("Delete", "ForceDelete") else "patch"
    await st.authorize(request, verb, ns, cid)
    return JSONResponse(await run_in_threadpool(st.service.command, ns, cid, command), status_code=202)


@router.get(
    "/connector/history/{id}",
    summary="Status events of a connector",
    dependencies=[require("get", named=True)],
    response_class=Response,
    responses={
        200: json_response(HistoryList, "Events, oldest first; [] until the operator records any."),
        **_errors(404),
    },
)
async def connector_history(request: Request, id: ConnectorId, namespace: Namespace = None) -> Response:
    st = state_of(request)
    ns = st.namespace(namespace)
    cid = check_id(id)
    await st.authorize(request, "get", ns, cid)
    return JSONResponse({"events": await run_in_threadpool(st.service.history, ns, cid)})
