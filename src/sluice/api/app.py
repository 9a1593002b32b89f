"""The FastAPI application of ``sluice api``.

``create_app()`` needs no cluster: the Kubernetes client is built on the first request, so ``sluice generate``
can import this module to write the OpenAPI document, and tests can hand in their own `Kube`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from sluice import __version__
from sluice.api.auth import Authorizer
from sluice.api.errors import install_error_handlers
from sluice.api.routes import catalog, connectors, health, validate
from sluice.api.schemas import component_schemas
from sluice.api.services.connectors import ConnectorService
from sluice.api.services.validation import ValidationService
from sluice.api.settings import ApiSettings
from sluice.api.state import ApiState
from sluice.k8s import Kube, UserInfo
from sluice.schemagen import add_links

__all__ = ["NO_AUTH_WARNING", "create_app"]

log = logging.getLogger(__name__)

NO_AUTH_WARNING = (
    "AUTHENTICATION IS OFF (--no-auth): every request acts with the API's own Kubernetes rights, whoever sends it. "
    "For local development only; never expose this API."
)

DESCRIPTION = """\
Create and manage Sluice connectors. Each connector is a `Connector` resource (group `sluice.dev`) in a
namespace; inline credentials are moved into a Secret owned by it.

Authentication: send a Kubernetes bearer token (`Authorization: Bearer <token>`). Each action is authorized by
Kubernetes RBAC as the verb (create, get, list, update, patch, delete) on `connectors.sluice.dev` in the
namespace.

Errors are JSON: `{error, message, fix, details: [{loc, field, msg, fix}]}`.
"""


async def _warn_no_auth(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        log.warning(NO_AUTH_WARNING)


def _secret_reader(kube: Kube) -> Callable[[UserInfo, str, str], bool]:
    """Whether a caller may ``get`` one Secret (a SubjectAccessReview; the API reads it with its own rights)."""

    def may_read(user: UserInfo, namespace: str, name: str) -> bool:
        decision = kube.reviews.review_access(
            user, verb="get", group="", resource="secrets", namespace=namespace, name=name
        )
        return decision.allowed

    return may_read


def create_app(settings: ApiSettings | None = None, k8s: Kube | None = None) -> FastAPI:
    """Build the app; ``k8s`` defaults to a client from ``settings.kubeconfig`` (built lazily)."""
    settings = settings or ApiSettings()
    kube = k8s or Kube.from_kubeconfig(settings.kubeconfig, timeout_seconds=settings.kube_timeout_seconds)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = None
        if settings.no_auth:
            log.warning(NO_AUTH_WARNING)
            task = asyncio.create_task(_warn_no_auth(settings.no_auth_warning_interval_seconds))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            kube.close()

    app = FastAPI(
        title="Sluice API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        separate_input_output_schemas=False,
    )
    app.state.sluice = ApiState(
        settings=settings,
        kube=kube,
        service=ConnectorService(kube),
        authorizer=Authorizer(kube.reviews, enabled=not settings.no_auth, cache_seconds=settings.auth_cache_seconds),
        validation=ValidationService(kube, can_read_secret=_secret_reader(kube)),
    )
    install_error_handlers(app)
    app.include_router(connectors.router)
    app.include_router(catalog.router)
    app.include_router(validate.router)
    app.include_router(health.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(component_schemas())
            doc["components"]["securitySchemes"] = {
                "kubernetesBearer": {"type": "http", "scheme": "bearer", "description": "A Kubernetes bearer token."}
            }
            doc["security"] = [{"kubernetesBearer": []}]
            # How operations chain (create, then get/patch/command/delete that connector): see add_links.
            app.openapi_schema = add_links(doc)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
