"""The browser softphone at /v1/softphone: a WebSocket in the protocol of
`ivr.transports.browser`, answered by the same CallSession as every other call (transport
name "browser"). The console's Softphone tab is its client.

It takes an API token with the calls.read scope, like the live feed (see `ivr.auth`):
a softphone call is a real call, so the server is not open to anonymous callers on the web.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque

from aiohttp import WSMsgType, web

from ivr.appkeys import SERVICES, SETTINGS
from ivr.auth import PROTOCOL, websocket_principal
from ivr.call.session import CallSession
from ivr.http_error import ApiError
from ivr.server.websocket import raise_framing_error
from ivr.transports.browser import BrowserSerializer
from ivr.transports.limits import WEBSOCKET_MAX_MSG_SIZE
from ivr.transports.messages import CallStart, InboundMessage, OutboundMessage

log = logging.getLogger(__name__)


class BrowserLeg:
    name = "browser"

    def __init__(self, ws: web.WebSocketResponse, call_id: str) -> None:
        self._ws = ws
        self._serializer = BrowserSerializer(call_id)
        self._pending: deque[InboundMessage] = deque()

    async def receive(self) -> InboundMessage | None:
        while not self._pending:
            msg = await self._ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                parsed = self._serializer.parse(msg.data)
            else:  # close, closing, closed, error
                raise_framing_error(msg)
                return None
            if any(isinstance(m, CallStart) for m in parsed):
                await self._ws.send_str(self._serializer.started())
            self._pending.extend(parsed)
        return self._pending.popleft()

    async def send(self, message: OutboundMessage) -> None:
        if self._ws.closed or self._serializer.rate is None:
            return  # nothing to play to before the page said which rate it wants
        for frame in self._serializer.render(message):
            if isinstance(frame, bytes):
                await self._ws.send_bytes(frame)
            else:
                await self._ws.send_str(frame)

    async def close(self) -> None:
        if not self._ws.closed:
            await self._ws.close()


async def softphone(request: web.Request) -> web.StreamResponse:
    try:
        who = websocket_principal(request, request.app[SETTINGS].api_tokens, "calls.read")
    except ApiError as exc:
        return exc.response()  # before the upgrade: the page learns the status
    # The live feeds' socket (token subprotocol), with a call leg's message size limit.
    ws = web.WebSocketResponse(
        heartbeat=30, protocols=(PROTOCOL,), max_msg_size=WEBSOCKET_MAX_MSG_SIZE
    )
    await ws.prepare(request)
    call_id = f"browser-{uuid.uuid4().hex}"
    log.info("softphone call %s placed with the token %r", call_id, who.name)
    await CallSession(BrowserLeg(ws, call_id), request.app[SERVICES], call_id).run()
    return ws
