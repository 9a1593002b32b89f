"""``/healthz`` (the process serves requests) and ``/readyz`` (and can reach the Kubernetes API server)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sluice.api.errors import error_response
from sluice.api.state import state_of
from sluice.errors import SluiceError

__all__ = ["router"]

router = APIRouter(tags=["health"])

_READY_CACHE_SECONDS = 2.0


@router.get("/healthz", summary="Liveness: the process answers", response_class=Response)
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: the Kubernetes API server answers", response_class=Response)
async def readyz(request: Request) -> Response:
    st = state_of(request)
    cached: tuple[float, str] | None = getattr(request.app.state, "ready_cache", None)
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return JSONResponse({"status": "ready", "kubernetes": cached[1]})
    try:
        version = await run_in_threadpool(st.kube.reviews.ping)
    except SluiceError as err:
        return error_response(err)
    request.app.state.ready_cache = (now + _READY_CACHE_SECONDS, version)
    return JSONResponse({"status": "ready", "kubernetes": version})
