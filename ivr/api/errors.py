"""Errors of the /v1 API, in the one error shape of `ivr.http_error` (RFC 9457 problem
details with a stable `code`, and the deprecated `error` member beside them):

{"type": "tag:ivr,2025:problems/invalid_body", "title": "Invalid request body",
 "status": 422, "detail": "invalid body", "code": "invalid_body",
 "fields": [{"field": "due_at", "message": "..."}], "error": {...}}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from aiohttp import web
from pydantic import ValidationError

from ivr.http_error import ApiError

__all__ = ["API_PREFIX", "ApiError", "invalid", "json_errors"]

API_PREFIX = "/v1/"


def _message(err: Mapping[str, Any], unknown: str) -> str:
    if err["type"] == "extra_forbidden":
        return unknown
    if err["type"] == "missing":
        return "required"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def invalid(
    exc: ValidationError, where: Literal["body", "query"], unknown: str = "unknown field"
) -> ApiError:
    """422 naming each offending field once. The models are flat, so a field is the first
    element of pydantic's location; the rest (a list position, the member of an optional's
    union) is dropped, and "not null" is no news for a parameter that cannot be null."""
    messages: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        name = str(err["loc"][0]) if err["loc"] else where
        messages.setdefault(name, [])
        if err["type"] != "none_required":
            message = _message(err, unknown)
            if message not in messages[name]:
                messages[name].append(message)
    fields = [(name, "; ".join(msgs) or "invalid") for name, msgs in messages.items()]
    return ApiError(422, f"invalid {where}", fields, code=f"invalid_{where}")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors under /v1 (no such route, method not allowed, body too large)
    in the API's error shape, so clients parse one format; other paths are left alone."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith(API_PREFIX):
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        text = exc.text or ""
        custom = text and not text.startswith(f"{exc.status}:")  # aiohttp's default text
        return ApiError(exc.status, text if custom else exc.reason.lower(), (), headers).response()
