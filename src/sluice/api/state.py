"""What every handler needs, hung on ``app.state.sluice`` by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from sluice.api.auth import Authorizer
from sluice.api.ids import check_namespace
from sluice.api.services.connectors import ConnectorService
from sluice.api.services.validation import ValidationService
from sluice.api.settings import ApiSettings
from sluice.k8s import Kube, UserInfo

__all__ = ["ApiState", "state_of"]


@dataclass
class ApiState:
    settings: ApiSettings
    kube: Kube
    service: ConnectorService
    authorizer: Authorizer
    validation: ValidationService

    def namespace(self, requested: str | None) -> str:
        return check_namespace(requested) if requested is not None else self.settings.namespace

    async def authenticate(self, request: Request) -> None:
        """401 unless the request carries a token Kubernetes accepts (no-op in no-auth mode)."""
        if self.authorizer.enabled:
            await run_in_threadpool(self.authorizer.authenticate, request.headers.get("authorization"))

    async def authorize(self, request: Request, verb: str, namespace: str, name: str | None = None) -> None:
        """401/403 unless the caller may ``verb`` connectors in ``namespace`` (no-op in no-auth mode)."""
        if not self.authorizer.enabled:
            return
        await run_in_threadpool(self.authorizer.authorize, request.headers.get("authorization"), verb, namespace, name)

    async def caller(self, request: Request, verb: str, namespace: str, name: str | None = None) -> UserInfo | None:
        """Like :meth:`authorize`, and returns who the caller is (``None`` in no-auth mode)."""
        if not self.authorizer.enabled:
            return None
        header = request.headers.get("authorization")
        return await run_in_threadpool(self.authorizer.authorize, header, verb, namespace, name)


def state_of(request: Request) -> ApiState:
    state: ApiState = request.app.state.sluice
    return state
