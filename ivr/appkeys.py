"""Every key of the aiohttp application, in one place: what the app factory
(`ivr.app.create_app` and its start-up) puts there, and who reads it.

The types are imported for the type checker only, so this module imports nothing of the
server at run time and any part may use it: the API reads `API` and `FEEDS` (its narrow
context), the call endpoints `SERVICES`, the health endpoints the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ivr.api.context import ApiContext
    from ivr.api.conversations import TextChannels
    from ivr.api.live import FeedSlots
    from ivr.call.session import CallServices
    from ivr.callbacks.dispatcher import Dispatcher
    from ivr.config import Settings
    from ivr.flows_watch import FlowWatcher
    from ivr.metrics import Metrics
    from ivr.server.chat import OpenChats
    from ivr.server.stream import StreamServer
    from ivr.store.health import StoreProbe
    from ivr.token_guard import TokenGuard
    from ivr.webhooks import WebhookDeliverer

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
"""One registry per app: tests run several apps in one process."""
SERVICES: web.AppKey[CallServices] = web.AppKey("call_services")
"""What every call uses; only the call endpoints (`ivr.server`) and health read it."""
SERVED_FLOWS: web.AppKey[dict[str, FlowWatcher]] = web.AppKey("served_flows")
AUDIOSOCKET_PORT: web.AppKey[int] = web.AppKey("audiosocket_port")
CALL_LISTENERS: web.AppKey[list[StreamServer]] = web.AppKey("call_listeners")
"""The call listeners besides HTTP (AudioSocket's): a shutdown stops them taking calls."""
LISTENING: web.AppKey[list[str]] = web.AppKey("listening")
"""What the call listeners besides HTTP listen on ("audiosocket tcp 127.0.0.1:9092", "sip
udp+tcp …"), for the start-up line that names every address (`ivr.app`)."""
WEBHOOKS: web.AppKey[WebhookDeliverer] = web.AppKey("webhooks")
DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher")
STORE_PROBE: web.AppKey[StoreProbe] = web.AppKey("store_probe")
API: web.AppKey[ApiContext] = web.AppKey("api")
"""All the API handlers reach: the store, callbacks, the call event bus, the flows..."""
FEEDS: web.AppKey[FeedSlots] = web.AppKey("feed_slots")
"""The live feeds' open sockets, against their cap."""
TOKEN_GUARD: web.AppKey[TokenGuard] = web.AppKey("token_guard")
"""Failed token attempts per client and the revoked tokens: every token check applies it
(`ivr.auth.request_principal`)."""
CONVERSATIONS: web.AppKey[TextChannels] = web.AppKey("conversations")
"""The text channels' conversations (REST chat, SMS) and the SMS webhook's settings."""
CHATS: web.AppKey[OpenChats] = web.AppKey("chat_sockets")
"""The web chats' open sockets (`ivr.server.chat`): closed, their conversations ended, at
shutdown."""
