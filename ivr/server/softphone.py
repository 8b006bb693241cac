"""The browser softphone at /v1/softphone: a WebSocket in the protocol of
`ivr.transports.browser`, answered by the same CallSession as every other call (transport
name "browser"; its line is in `ivr.server.transports`). The console's Softphone tab is its
client.

It takes an API token with the calls.read scope, like the live feed (see `ivr.auth`):
a softphone call is a real call, so the server is not open to anonymous callers on the web.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ivr.appkeys import SETTINGS
from ivr.auth import websocket_principal
from ivr.http_error import ApiError

log = logging.getLogger(__name__)


def admit(request: web.Request, call_id: str | None) -> web.StreamResponse | None:
    """The token checked before the upgrade: refused, the page learns the status."""
    try:
        who = websocket_principal(request, request.app[SETTINGS].api_tokens, "calls.read")
    except ApiError as exc:
        return exc.response()
    log.info("softphone call %s placed with the token %r", call_id, who.name)
    return None
