"""Who may ask is decided before what was asked is looked at: 401/403 come ahead of any 400/422.

FastAPI validates query and path parameters before a handler runs, and handlers check ids and read the body
before their one precise authorization (whose verb can depend on the body, or on whether the connector exists).
Without a check ahead of all that, a caller with no token, a bad token or no rights was told which ids,
namespaces and bodies are well-formed (400/422) instead of being refused; Kubernetes' own order is authenticate,
authorize, then validate. `require` is that check, as a route dependency (FastAPI calls dependencies before it
validates the route's own parameters): it authenticates, then lets the request through when the caller may do
*one* of the verbs the operation can need, on the named connector, in the namespace. The handler's precise check
still follows (positive answers are cached, so it costs no second round trip when they match).

Parameters are read raw here. A namespace or id that is not a DNS-1123 label names nothing, so the check asks
about all namespaces / all names instead: only a caller with cluster-wide (or every-name) rights passes, and that
caller then gets the 422 that says what is wrong.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from sluice.api.auth import Authorizer
from sluice.api.ids import is_dns_label
from sluice.api.state import state_of
from sluice.errors import AuthorizationError

__all__ = ["require"]


def _may_do_one_of(
    authorizer: Authorizer, authorization: str | None, verbs: tuple[str, ...], namespace: str, name: str | None
) -> None:
    denied: AuthorizationError | None = None
    for verb in verbs:
        try:
            authorizer.authorize(authorization, verb, namespace, name)
        except AuthorizationError as err:
            denied = err
        else:
            return
    assert denied is not None, "require() needs at least one verb"
    raise denied


def require(*verbs: str, named: bool = False) -> Any:
    """A route dependency: 401 without valid credentials, 403 unless the caller may do one of ``verbs`` on
    connectors in the request's namespace (on the path's ``{id}`` when ``named``). No-op in no-auth mode."""

    async def check(request: Request) -> None:
        st = state_of(request)
        if not st.authorizer.enabled:
            return
        raw_namespace = request.query_params.get("namespace")
        if raw_namespace is None:
            namespace = st.settings.namespace
        else:
            namespace = raw_namespace if is_dns_label(raw_namespace) else ""
        raw_id = request.path_params.get("id") if named else None
        name = raw_id if isinstance(raw_id, str) and is_dns_label(raw_id) else None
        header = request.headers.get("authorization")
        await run_in_threadpool(_may_do_one_of, st.authorizer, header, verbs, namespace, name)

    return Depends(check)
