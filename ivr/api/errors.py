"""One error shape for every /v1 answer that is not a success:

{"error": {"status": 422, "message": "invalid body",
           "fields": [{"field": "due_at", "message": "..."}]}}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from pydantic import ValidationError

API_PREFIX = "/v1/"


class ApiError(Exception):
    """An error answer; `fields` are (field, message) pairs naming the offending input."""

    def __init__(
        self,
        status: int,
        message: str,
        fields: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = list(fields)
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "status": self.status,
                "message": self.message,
                "fields": [{"field": f, "message": m} for f, m in self.fields],
            }
        }

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


def _message(err: Mapping[str, Any], unknown: str) -> str:
    if err["type"] == "extra_forbidden":
        return unknown
    if err["type"] == "missing":
        return "required"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def invalid(exc: ValidationError, where: str, unknown: str = "unknown field") -> ApiError:
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
    return ApiError(422, f"invalid {where}", fields)


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
