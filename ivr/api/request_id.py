"""``X-Request-Id`` on every response of the HTTP server, and in the log lines of its request.

A client's own id (a proxy's, a CRM's correlation id) is echoed when it is a plausible one:
1 to 128 characters of letters, digits and ``-_.:/+=@~``; anything else (or none) gets a
new one (32 hex digits). The id is set for the request's handling (`ivr.logs.REQUEST_ID`:
each log line written meanwhile ends ``request_id=<id>``, aiohttp's access log line of the
request included) and answered on every response: the API's, the console's, health, the
calls' WebSocket handshakes, and errors aiohttp makes itself.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from ivr.logs import REQUEST_ID

HEADER = "X-Request-Id"
_PLAUSIBLE = re.compile(r"[A-Za-z0-9._:/+=@~-]{1,128}", re.ASCII)


def new_id() -> str:
    return uuid.uuid4().hex


def accepted(value: str | None) -> str | None:
    """A client's id, when it may be echoed and logged as it is."""
    return value if value is not None and _PLAUSIBLE.fullmatch(value) else None


def incoming(request: web.BaseRequest) -> str:
    """The id `request` is handled under: its client's, or a new one."""
    return accepted(request.headers.get(HEADER)) or new_id()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def assign_request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: the request's id for everything that handles it. Not reset
    after: aiohttp runs each request in a task of its own, and writes its access log line
    there after the handler returns."""
    REQUEST_ID.set(incoming(request))
    return await handler(request)


async def answer_request_id(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """on_response_prepare (in the request's task, so its context): every response carries
    its request's id; one aiohttp refused before the middleware ran gets one here."""
    rid = REQUEST_ID.get()
    if rid is None:
        rid = incoming(request)
        REQUEST_ID.set(rid)  # for the access log line
    response.headers[HEADER] = rid


def add_request_ids(app: web.Application) -> None:
    app.middlewares.insert(0, assign_request_id)
    app.on_response_prepare.append(answer_request_id)
