"""Limits checked before work: a request body is read only after its key was accepted, and
only up to `MBS_MAX_BODY_BYTES` (413 beyond, whatever Content-Length claims); a journey input
must leave the journey-log record room for the replies its steps will keep."""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Request

# The input may take a quarter of MBS_MAX_RECORD_BYTES (replies: see gateway.replies).
INPUT_SHARE = 4


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to be larger than `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, f"Content-Length {declared!r} is not a byte count")
        if int(declared) > limit:
            raise HTTPException(413, _too_large(int(declared), limit))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, _too_large(size, limit, at_least=True))
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int, *, at_least: bool = False) -> str:
    more = "at least " if at_least else ""
    return (
        f"request body of {more}{size} bytes is over the limit of {limit} "
        "(MBS_MAX_BODY_BYTES); send less"
    )


def text_of(body: bytes) -> str:
    """The body as text; 400 when it is not UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"body is not UTF-8 text (byte {exc.start})") from None


def json_object(body: bytes) -> dict[str, Any]:
    """A journey input: a JSON object (400 if not JSON, 422 if JSON but not an object)."""
    try:
        value = json.loads(text_of(body))
    except json.JSONDecodeError as exc:
        raise HTTPException(
            400, f"body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(value, dict):
        raise HTTPException(422, f"the journey input must be a JSON object, not {_kind(value)}")
    return value


def check_input_size(journey_input: dict[str, Any], record_limit: int) -> None:
    """413 when the input would take more than its share of the journey-log record."""
    size = len(json.dumps(journey_input, separators=(",", ":")).encode())
    allowed = record_limit // INPUT_SHARE
    if size > allowed:
        raise HTTPException(
            413,
            f"journey input of {size} bytes is over the {allowed} a run may keep in the "
            "journey log (a quarter of MBS_MAX_RECORD_BYTES); send references, not documents",
        )


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
