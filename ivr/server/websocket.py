"""WebSocket media streams (Twilio Media Streams format) at /v1/media-stream. (Each call's
event feed is the API's: `ivr.api.live`.)"""

from __future__ import annotations

import logging
from collections import deque

from aiohttp import WebSocketError, WSCloseCode, WSMessage, WSMsgType, web

from ivr.appkeys import SERVICES
from ivr.call.session import CallSession
from ivr.transports.limits import WEBSOCKET_MAX_MSG_SIZE
from ivr.transports.messages import EndCall, InboundMessage, OutboundMessage, ProtocolError
from ivr.transports.twilio import TwilioSerializer

log = logging.getLogger(__name__)


def raise_framing_error(msg: WSMessage) -> None:
    """A frame aiohttp refused (over max_msg_size: it has closed the socket with 1009; bad
    UTF-8, a protocol violation) as the call's ProtocolError: the far end broke the
    protocol, it did not hang up. Anything else (a close, a lost connection) returns."""
    if msg.type != WSMsgType.ERROR or not isinstance(msg.data, WebSocketError):
        return
    if msg.data.code == WSCloseCode.MESSAGE_TOO_BIG:
        raise ProtocolError(f"WebSocket message over {WEBSOCKET_MAX_MSG_SIZE} bytes")
    raise ProtocolError(f"WebSocket frame refused ({msg.data.code}): {msg.data}")


class WebSocketLeg:
    name = "websocket"

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        self._serializer = TwilioSerializer()
        self._pending: deque[InboundMessage] = deque()

    async def receive(self) -> InboundMessage | None:
        while not self._pending:
            msg = await self._ws.receive()
            if msg.type == WSMsgType.TEXT:
                self._pending.extend(self._serializer.parse(msg.data))
            elif msg.type == WSMsgType.BINARY:
                raise ProtocolError("binary WebSocket message: media streams send JSON text")
            else:  # close, closing, closed, error
                raise_framing_error(msg)
                return None
        return self._pending.popleft()

    async def send(self, message: OutboundMessage) -> None:
        if self._ws.closed or isinstance(message, EndCall):
            return  # the server ends a media stream by closing the socket
        if self._serializer.stream_sid is None:
            return  # nothing can be addressed before the stream started
        for text in self._serializer.render(message):
            await self._ws.send_str(text)

    async def close(self) -> None:
        if not self._ws.closed:
            await self._ws.close()


async def media_stream(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=WEBSOCKET_MAX_MSG_SIZE)
    await ws.prepare(request)
    session = CallSession(WebSocketLeg(ws), request.app[SERVICES])
    await session.run()
    return ws
