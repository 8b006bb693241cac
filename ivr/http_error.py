"""The error shape of every HTTP answer the server gives that is not a success (the API's,
the softphone's and the live feeds' refusals before a WebSocket upgrade): an RFC 9457
problem, ``Content-Type: application/problem+json``:

{"type": "tag:ivr,2025:problems/invalid_body", "title": "Invalid request body",
 "status": 422, "detail": "invalid body", "code": "invalid_body",
 "fields": [{"field": "due_at", "message": "..."}],
 "error": {"status": 422, "message": "invalid body", "fields": [...]}}

`code` is the stable machine-readable identifier (one of `PROBLEMS`), `type` the same as a
URI, as RFC 9457 wants one (a tag URI: it names, it does not link); `title` is the code's
fixed summary and `detail` this occurrence's explanation. `error` is the shape answered
before problem details, kept beside them for one release so that clients reading
``body["error"]["message"]`` keep working; it goes in the release after (deprecated in the
OpenAPI document).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from aiohttp import web

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "tag:ivr,2025:problems/"

PROBLEMS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "Bad request"),
    "invalid_json": (400, "The request body is not valid JSON"),
    "invalid_cursor": (400, "Not a cursor this list returned"),
    "unauthorized": (401, "Missing or unknown bearer token"),
    "forbidden": (403, "The token lacks the scope"),
    "invalid_signature": (403, "The webhook's signature does not match"),
    "not_found": (404, "No such resource"),
    "method_not_allowed": (405, "Method not allowed"),
    "conflict": (409, "The record's current state does not allow this"),
    "callback_open": (409, "The number already has an open callback"),
    "conversation_ended": (409, "The conversation has ended"),
    "payload_too_large": (413, "Request body too large"),
    "unsupported_media_type": (415, "The request body is not application/json"),
    "invalid_query": (422, "Invalid query parameters"),
    "invalid_body": (422, "Invalid request body"),
    "invalid_input": (422, "Invalid input"),
    "too_many_requests": (429, "Too many requests"),
    "too_many_attempts": (429, "Too many failed token attempts"),
    "internal_error": (500, "Internal server error"),
    "unavailable": (503, "Service unavailable"),
    "store_unavailable": (503, "The database is unavailable"),
}
"""Every problem code: its status and title. Codes are stable: new ones may be added, none
is renamed or removed."""

DEFAULT_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}
"""The code of an error raised without one, by status."""


def default_code(status: int) -> str:
    """The code of a `status` raised without one (``http_<status>`` for one not listed)."""
    return DEFAULT_CODES.get(status, f"http_{status}")


def title_of(code: str, status: int) -> str:
    if code in PROBLEMS:
        return PROBLEMS[code][1]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ApiError(Exception):
    """An error answer; `fields` are (field, message) pairs naming the offending input.
    `code` (see `PROBLEMS`) defaults to the status's (`DEFAULT_CODES`)."""

    def __init__(
        self,
        status: int,
        message: str,
        fields: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = list(fields)
        self.headers = dict(headers or {})
        self.code = code or default_code(status)

    def body(self) -> dict[str, Any]:
        fields = [{"field": f, "message": m} for f, m in self.fields]
        return {
            "type": TYPE_PREFIX + self.code,
            "title": title_of(self.code, self.status),
            "status": self.status,
            "detail": self.message,
            "code": self.code,
            "fields": fields,
            # deprecated: the shape before problem details, for one release
            "error": {"status": self.status, "message": self.message, "fields": fields},
        }

    def response(self) -> web.Response:
        return web.json_response(
            self.body(), status=self.status, headers=self.headers, content_type=PROBLEM_JSON
        )
