"""Settings of ``sluice api``, read from ``SLUICE_*`` environment variables (command-line flags win)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ApiSettings"]


class ApiSettings(BaseSettings):
    """Every knob of the REST API. Environment: ``SLUICE_<FIELD>`` in upper case, e.g. ``SLUICE_NAMESPACE``."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_", extra="ignore", use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Address to listen on. In a pod set ``0.0.0.0``; locally the loopback default keeps the API private."""

    port: int = Field(default=8080, ge=0, le=65535)
    """TCP port to listen on (0 picks a free one)."""

    namespace: str = "default"
    """Namespace of connectors when a request has no ``?namespace=`` query parameter."""

    kubeconfig: str | None = None
    """Kubeconfig the API uses for its own calls; unset means ``$KUBECONFIG``, ``~/.kube/config``, then the pod's
    ServiceAccount."""

    no_auth: bool = False
    """Skip TokenReview/SubjectAccessReview: every request acts with the API's own rights. For local development
    only; logged loudly at startup and every ``no_auth_warning_interval_seconds``."""

    no_auth_warning_interval_seconds: float = Field(default=300.0, gt=0)
    """How often the no-auth warning is repeated while the API runs."""

    auth_cache_seconds: float = Field(default=5.0, ge=0)
    """How long a positive TokenReview/SubjectAccessReview answer is reused for the same token and action
    (0 disables). Denials are never cached, so newly granted rights work at once; revoked rights stop working
    after at most this long."""

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest accepted request body; larger ones get 413. A connector spec is a few kilobytes."""

    kube_timeout_seconds: float = Field(default=10.0, gt=0)
    """Timeout of each call to the Kubernetes API server; past it the request fails with 503."""

    log_level: str = "INFO"
    """Log level of the API process (DEBUG, INFO, WARNING, ERROR)."""
