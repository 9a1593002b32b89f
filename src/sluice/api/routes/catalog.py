"""``/api/v1/catalog/source``: a source's schemas, tables and columns, and what its ``catalog`` would replicate."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sluice.api.access import require
from sluice.api.body import read_json
from sluice.api.ids import DNS_LABEL_RULE, is_dns_label
from sluice.api.schemas import ERRORS, REF, json_response
from sluice.api.services.validation import Caller, CatalogResult
from sluice.api.state import state_of
from sluice.errors import ConfigError, ErrorDetail

__all__ = ["Namespace", "check_body_doc", "errors", "resolve_caller", "router"]

router = APIRouter(prefix="/api/v1/catalog", tags=["catalog"])

Namespace = Annotated[
    str | None,
    Query(
        description="Namespace whose Secrets `*_secret_ref` name (and of the connector, with connector_id); "
        "defaults to the API's SLUICE_NAMESPACE. Kubernetes RBAC is checked in this namespace.",
        max_length=63,
    ),
]


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: ERRORS[code] for code in (400, 401, 403, 413, 415, 422, 503, *codes)}


def check_body_doc(model: str) -> dict[str, Any]:
    """A request body that is the part (``model``) alone, or ``{"connector_id": id}``."""
    by_id = {
        "type": "object",
        "title": "ByConnectorId",
        "properties": {"connector_id": {"type": "string", "description": "Id of an existing connector."}},
        "required": ["connector_id"],
        "additionalProperties": False,
    }
    schema = {"oneOf": [{"$ref": REF.format(model=model)}, by_id]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def resolve_caller(request: Request, body: Any, namespace: str | None) -> Caller:
    """Authorize the request (``get`` on the named connector, else ``create`` on connectors) and say who asks."""
    st = state_of(request)
    ns = st.namespace(namespace)
    cid = body.get("connector_id") if isinstance(body, dict) else None
    if isinstance(cid, str) and cid:
        if not is_dns_label(cid):
            raise ConfigError(
                f"{cid[:80]!r} is not a valid connector id",
                fix=f"Use {DNS_LABEL_RULE}: the id of an existing connector.",
                details=[ErrorDetail(["connector_id"], f"must be {DNS_LABEL_RULE}")],
            )
        user = await st.caller(request, "get", ns, cid)
    else:
        user = await st.caller(request, "create", ns)
    return Caller(user=user, namespace=ns)


@router.post(
    "/source",
    summary="List a source's tables",
    dependencies=[require("create", "get")],
    description="Connects to the source and lists its schemas, tables, columns (the source's type, Sluice's "
    "logical type, nullability), keys, and whether each table and column would be replicated under the "
    "source's `catalog` (and its publication, when `publication_name` is set). The body is a source, e.g. "
    '`{"postgres": {"connection": {...}, "catalog": {...}}}`, or `{"connector_id": "<id>"}` for an existing '
    "connector's. Inline credentials are used and never returned; `*_secret_ref` are read from the namespace's "
    "Secrets, which the caller must be allowed to `get`. A source that cannot be reached is 422 with the fix. "
    "Needs `create` on connectors in the namespace (`get` on the connector with connector_id). Nothing is created.",
    response_class=Response,
    responses={200: json_response(CatalogResult, "The source's tables."), **errors(404)},
    openapi_extra=check_body_doc("Source"),
)
async def catalog_source(request: Request, namespace: Namespace = None) -> Response:
    st = state_of(request)
    await st.authenticate(request)
    body: Any = await read_json(request, max_bytes=st.settings.max_body_bytes)
    caller = await resolve_caller(request, body, namespace)
    connector = await run_in_threadpool(st.validation.source_connector, caller, body)
    result = await run_in_threadpool(st.validation.catalog, connector)
    return JSONResponse(result.model_dump(mode="json", exclude_none=True))
