"""Every call transport the server answers, one line each: a WebSocket path or a TCP
listener, the transport's name (in logs and call records), and its serializer (the wire
format, `ivr.transports`). `ivr.app` adds the routes and starts the listener. SIP calls are
not on it: each is a dialog with an RTP socket of its own, no byte stream (`ivr.sip`)."""

from __future__ import annotations

from aiohttp import web

from ivr.auth import PROTOCOL
from ivr.server import softphone
from ivr.server.stream import StreamTransport
from ivr.server.websocket import WebSocketTransport
from ivr.transports.audiosocket import AudioSocketSerializer
from ivr.transports.browser import BrowserSerializer
from ivr.transports.twilio import TwilioSerializer

WEBSOCKETS: tuple[WebSocketTransport, ...] = (
    WebSocketTransport("/v1/media-stream", "websocket", TwilioSerializer),
    WebSocketTransport("/v1/softphone", "browser", BrowserSerializer, softphone.admit, (PROTOCOL,)),
)

AUDIOSOCKET = StreamTransport("audiosocket", AudioSocketSerializer)  # settings.audiosocket_port


def add_call_routes(app: web.Application) -> None:
    """A GET route for each WebSocket transport."""
    for transport in WEBSOCKETS:
        app.router.add_get(transport.path, transport.handle)
