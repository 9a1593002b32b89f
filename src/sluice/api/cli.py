"""``sluice api``: serve the REST API with uvicorn.

Flags override the ``SLUICE_*`` environment variables of `ApiSettings`.
"""

from __future__ import annotations

import argparse
import logging

from sluice.api.settings import ApiSettings

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (SLUICE_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (SLUICE_PORT, default 8080)")
    parser.add_argument("--kubeconfig", help="kubeconfig for the API's own calls (SLUICE_KUBECONFIG; else in-cluster)")
    parser.add_argument("--namespace", help="default namespace of connectors (SLUICE_NAMESPACE, default 'default')")
    parser.add_argument(
        "--no-auth",
        action="store_true",
        default=None,
        help="LOCAL DEVELOPMENT ONLY: skip token and RBAC checks; every caller gets the API's rights",
    )
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (SLUICE_LOG_LEVEL)")


def settings_from_args(args: argparse.Namespace) -> ApiSettings:
    overrides = {
        key: getattr(args, key)
        for key in ("host", "port", "kubeconfig", "namespace", "no_auth", "log_level")
        if getattr(args, key, None) is not None
    }
    return ApiSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from sluice.api.app import create_app
    from sluice.logs import configure

    settings = settings_from_args(args)
    configure(level=settings.log_level)
    app = create_app(settings)
    log.info(
        "serving the Sluice API on http://%s:%d (default namespace %s, auth %s)",
        settings.host,
        settings.port,
        settings.namespace,
        "OFF" if settings.no_auth else "Kubernetes TokenReview + SubjectAccessReview",
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=True)
    return 0
