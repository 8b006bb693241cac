"""Call transports over a WebSocket: each connection at a transport's path is one call, its
messages in the transport's wire format (`ivr.server.transports` lists them). (Each call's
event feed is the API's: `ivr.api.live`.)"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aiohttp import WebSocketError, WSCloseCode, WSMessage, WSMsgType, web

from ivr.appkeys import SERVICES
from ivr.call.session import CallSession
from ivr.http_error import ApiError
from ivr.server.leg import SerializerLeg
from ivr.transports.base import Serializer, Wire
from ivr.transports.limits import WEBSOCKET_MAX_MSG_SIZE
from ivr.transports.messages import ProtocolError

log = logging.getLogger(__name__)

HEARTBEAT_S = 30  # a ping this often: a far end gone without a close is noticed


def raise_framing_error(msg: WSMessage) -> None:
    """A frame aiohttp refused (over max_msg_size: it has closed the socket with 1009; bad
    UTF-8, a protocol violation) as the call's ProtocolError: the far end broke the
    protocol, it did not hang up. Anything else (a close, a lost connection) returns."""
    if msg.type != WSMsgType.ERROR or not isinstance(msg.data, WebSocketError):
        return
    if msg.data.code == WSCloseCode.MESSAGE_TOO_BIG:
        raise ProtocolError(f"WebSocket message over {WEBSOCKET_MAX_MSG_SIZE} bytes")
    raise ProtocolError(f"WebSocket frame refused ({msg.data.code}): {msg.data}")


class WebSocketLeg(SerializerLeg):
    """A call over one WebSocket: text messages are str, binary ones bytes, to the
    serializer. The server ends the call by closing the socket."""

    def __init__(self, ws: web.WebSocketResponse, serializer: Serializer, name: str) -> None:
        super().__init__(serializer, name)
        self._ws = ws

    async def _read(self) -> Wire | None:
        msg = await self._ws.receive()
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            data: Wire = msg.data
            return data
        raise_framing_error(msg)  # else a close, closing, closed or lost connection
        return None

    async def _write(self, data: Sequence[Wire]) -> None:
        for wire in data:
            if isinstance(wire, bytes):
                await self._ws.send_bytes(wire)
            else:
                await self._ws.send_str(wire)

    def _closed(self) -> bool:
        return self._ws.closed

    async def close(self) -> None:
        if not self._ws.closed:
            await self._ws.close()


Admit = Callable[[web.Request, str | None], web.StreamResponse | None]
"""Runs before the upgrade, given the call's id (when the serializer names it): None lets
the call in; a response refuses it (a 401 the far end can read)."""


@dataclass(frozen=True)
class WebSocketTransport:
    """Calls at `path`, each a new `serializer()`, named `name` in logs and records."""

    path: str
    name: str
    serializer: Callable[[], Serializer]
    admit: Admit | None = None
    protocols: tuple[str, ...] = ()  # subprotocols offered (the softphone's token one)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        if services is not None and services.shutting_down:  # draining: try another node
            return ApiError(
                503, "this node is shutting down", headers={"Retry-After": "5"}
            ).response()
        serializer = self.serializer()
        if self.admit is not None:
            refused = self.admit(request, serializer.call_id)
            if refused is not None:
                return refused
        ws = web.WebSocketResponse(
            heartbeat=HEARTBEAT_S, protocols=self.protocols, max_msg_size=WEBSOCKET_MAX_MSG_SIZE
        )
        await ws.prepare(request)
        leg = WebSocketLeg(ws, serializer, self.name)
        await CallSession(leg, request.app[SERVICES], serializer.call_id).run()
        return ws
