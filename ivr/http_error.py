"""The error shape of every HTTP answer the server gives that is not a success (the API's,
the softphone's and the live feeds' refusals before a WebSocket upgrade):

{"error": {"status": 422, "message": "invalid body",
           "fields": [{"field": "due_at", "message": "..."}]}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web


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
