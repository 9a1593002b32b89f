"""Every error leaves the API as ``{error, message, fix, details: [{loc, field, msg, fix}]}``.

``SluiceError.as_dict()`` is the body and ``http_status`` the status, so the mapping from a failure to an answer
is decided once in ``sluice.errors``. FastAPI's own errors (unknown path, wrong method, bad query parameter) are
rendered in the same shape, and anything unexpected is a logged 500 that reveals nothing.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sluice.api.validation import details_from_errors
from sluice.errors import ConfigError, SluiceError

__all__ = ["error_response", "install_error_handlers"]

log = logging.getLogger(__name__)

_HTTP_REASONS = {
    404: ("NotFound", "Check the URL; the API lives under /api/v1 (see /docs or /openapi.json)."),
    405: ("MethodNotAllowed", "Use one of the methods listed in the Allow header."),
}


def error_response(err: SluiceError) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="sluice"'} if err.http_status == 401 else None
    return JSONResponse(err.as_dict(), status_code=err.http_status, headers=headers)


async def _sluice_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SluiceError)
    if exc.http_status >= 500:
        log.warning("%s: %s", exc.reason, exc.message)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
    details = details_from_errors(errors)
    first = details[0].as_dict() if details else {"field": "request", "msg": "invalid"}
    return error_response(ConfigError(f"invalid request: {first['field']}: {first['msg']}", details=details))


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    reason, fix = _HTTP_REASONS.get(exc.status_code, ("HTTPError", ""))
    body: dict[str, object] = {"error": reason, "message": str(exc.detail)}
    if fix:
        body["fix"] = fix
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error while handling a request", exc_info=exc)
    return JSONResponse(
        {"error": "InternalError", "message": "unexpected error in the Sluice API; the API's log has details"},
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SluiceError, _sluice_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
