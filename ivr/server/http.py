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
"""

from __future__ import annotations

from typing import Any

from ivr.config import Settings

CUT_GRACE_S = 3.0
"""After the drain: how long a call's handler gets to end, then to tear down once cut."""


def server_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `web.run_app` (or `web.AppRunner`)."""
    return {"keepalive_timeout": settings.header_timeout_seconds, "shutdown_timeout": CUT_GRACE_S}
