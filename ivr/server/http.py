"""How the HTTP server treats slow clients: options for aiohttp's `web.run_app`/`AppRunner`.

aiohttp has no request-header timeout as such, but its keep-alive timer is one: it is armed
when a connection opens and again after each response, data arriving does not re-arm it, and
when it fires while the connection is still waiting for a complete request (headers not
finished, or none sent) the connection is closed. A handler at work (a WebSocket, a call)
is never cut by it. So `keepalive_timeout` = the header timeout: a client that sends its
headers a byte at a time, or never finishes them, is gone after `header_timeout_seconds`,
and so is an idle keep-alive connection (75 s by default in aiohttp).

At shutdown, once the drain (`ivr.health.drain`) is over, aiohttp gives each handler still
running `shutdown_timeout` to end, cancels it, and gives it as long again for its teardown.

The access log (aiohttp's, one line a request, its format unchanged) leaves out by default
(IVR_ACCESS_LOG=quiet) the routine requests that would drown the others: console files, the
Prometheus scrape and the health probes, each every few seconds from something that is not a
person. Those still appear when they fail (4xx, 5xx: a console file missing, a probe
refused). IVR_ACCESS_LOG=all logs every request; off, none.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web_log
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from ivr.config import Settings

ROUTINE_PATHS = frozenset({"/metrics", "/livez", "/readyz", "/healthz"})
"""Requests left out of the access log (IVR_ACCESS_LOG=quiet) unless they fail; and..."""
ROUTINE_PREFIXES = ("/console/static/",)
"""...those under these: the console's files (its page, /console/, is logged)."""


def routine(path: str) -> bool:
    """A request the quiet access log leaves out when it succeeds."""
    return path in ROUTINE_PATHS or path.startswith(ROUTINE_PREFIXES)


class QuietAccessLogger(web_log.AccessLogger):
    """aiohttp's access log without the successful routine requests (`routine`)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request is not None and response.status < 400 and routine(request.path):
            return
        super().log(request, response, time)


CUT_GRACE_S = 3.0
"""After the drain: how long a call's handler gets to end, then to tear down once cut."""


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `web.run_app` (or `web.AppRunner`)."""
    access: type[AbstractAccessLogger] = (
        web_log.AccessLogger if settings.access_log == "all" else QuietAccessLogger
    )
    return {
        "keepalive_timeout": settings.header_timeout_seconds,
        "shutdown_timeout": CUT_GRACE_S,
        "access_log_class": access,
        # aiohttp's logger, or none at all (IVR_ACCESS_LOG=off)
        "access_log": None if settings.access_log == "off" else logging.getLogger("aiohttp.access"),
    }
