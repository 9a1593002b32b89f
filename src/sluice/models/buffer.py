"""Object storage: the staging ``buffer`` between source and sink, and the files a ``file_source`` reads."""

from __future__ import annotations

from pydantic import Field, field_validator

from sluice.models.common import NonEmptyStr, NonNegativeInt, Secret, SecretRef, SluiceModel

__all__ = ["Buffer", "ObjectStore", "ObjectStoreOption"]

_SCHEMES = ("s3://", "gs://", "azure://", "file:///")


class ObjectStoreOption(SluiceModel):
    """One store option (e.g. aws_region, aws_access_key_id). Values are treated as secrets because many are."""

    name: NonEmptyStr
    """Option name, e.g. aws_region, aws_access_key_id, aws_secret_access_key, google_service_account_key."""
    value: Secret | None = None
    """Option value. Stored in a Secret by the REST API and redacted in responses; prefer `value_secret_ref` for
    credentials."""
    value_secret_ref: SecretRef | None = None
    """Kubernetes Secret key holding the option value (alternative to `value`)."""


class ObjectStore(SluiceModel):
    """An object store location: S3, Google Cloud Storage, Azure Blob Storage or a local directory."""

    url: NonEmptyStr
    """Location URL: s3://bucket/prefix, gs://bucket/prefix, azure://container/prefix or file:///path."""
    options: list[ObjectStoreOption] = Field(default_factory=list)
    """Store options (region, endpoint, credentials...)."""
    allow_http: bool = False
    """Allow plain-HTTP endpoints (e.g. a local MinIO)."""
    allow_invalid_certificates: bool = False
    """Skip TLS certificate verification of the store endpoint (testing only)."""
    root_certificate_pem: str | None = None
    """Extra CA certificate (PEM) trusted for the store endpoint."""
    max_concurrent_parts: NonNegativeInt | None = None
    """Maximum concurrent parts of one multipart upload; 0 = unlimited."""
    max_concurrent_requests: NonNegativeInt | None = None
    """Maximum concurrent requests to the store; 0 = unlimited."""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(_SCHEMES):
            raise ValueError(
                f"unsupported object store URL {url!r}: use one of the schemes "
                + ", ".join(_SCHEMES)
                + " (e.g. s3://my-bucket/sluice)"
            )
        return url


class Buffer(SluiceModel):
    """Staging area between source and sink (used by sinks that load files, and for large batches)."""

    object_store: ObjectStore
    """Object store that holds the staged files."""
