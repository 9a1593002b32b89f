"""Reading a JSON request body under the API's rules: 415, 413 and 400 before any validation.

The API reads bodies itself instead of letting FastAPI bind them, so each kind of bad input gets its own status
and message: a wrong ``Content-Type`` is 415 (not a confusing 422), a body over the limit is 413 even when the
client lies about ``Content-Length`` (the stream is counted), and malformed JSON is 400 with the position.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from starlette.requests import Request

from sluice.errors import ErrorDetail, PayloadTooLargeError, RequestError, UnsupportedMediaTypeError

__all__ = ["JSON", "MERGE_PATCH", "media_type", "parse_json", "read_json"]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


def media_type(content_type: str | None) -> str:
    """``application/json; charset=utf-8`` → ``application/json``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """Strict JSON (no NaN/Infinity); ``RequestError`` (400) saying where it broke."""
    if not raw.strip():
        raise RequestError("the request body is empty", fix="Send a JSON object as the body.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            f"the request body is not UTF-8 (byte {exc.start})", fix="Encode the JSON body as UTF-8."
        ) from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RequestError(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            fix="Send well-formed JSON (check quotes, commas and brackets).",
            details=[ErrorDetail(loc=["body"], msg=f"{exc.msg} at character {exc.pos}")],
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}", fix="Send well-formed JSON.") from exc


async def read_json(request: Request, *, max_bytes: int, media_types: Collection[str] = (JSON,)) -> Any:
    """Check the content type, read at most ``max_bytes`` and parse the body as JSON."""
    mtype = media_type(request.headers.get("content-type"))
    if mtype not in media_types:
        allowed = " or ".join(sorted(media_types))
        raise UnsupportedMediaTypeError(
            f"unsupported Content-Type {mtype or '(none)'!r}; this endpoint accepts {allowed}",
            fix=f"Send the JSON body with the header 'Content-Type: {next(iter(media_types))}'.",
        )
    too_large = PayloadTooLargeError(
        f"the request body is larger than the limit of {max_bytes} bytes",
        fix="Send a smaller body; a connector spec is a few kilobytes.",
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise too_large
        except ValueError as exc:
            raise RequestError("the Content-Length header is not a number") from exc
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return parse_json(b"".join(chunks))
