"""The web chat: the widget's page at /chat (with /chat/embed.js, the script a site includes
to open it) and its WebSocket at /v1/chat, in the protocol of `ivr.transports.chat`. Each
socket is one conversation on the "web" channel of the text runtime every text channel
shares (`ivr.chat.Conversations`): the same flow, lookups and callbacks as the REST chat,
SMS and calls.

The widget is for customers, so the socket takes no API token. What bounds it instead:
- Origins: a browser's socket is let in from this server's own pages (the widget, also
  when another site frames it) and from IVR_CHAT_ORIGINS (sites with their own chat page);
  any other Origin is a 403. A client without an Origin is no browser: let in (the
  per-address cap on connections without a token, `ivr.api.limits`, counts it).
- A number: a chat names its customer's number only when vouched for, either signed by the
  embedding site (IVR_CHAT_IDENTITY_SECRET, `ivr.chat.identity`) or from a client holding
  a token with conversations.write (an app's back end); else the flow asks for the account,
  as on a call with a withheld number.
- Each message: at most MAX_CHAT_MESSAGE bytes of JSON (32 levels deep), its text MAX_TEXT
  characters, RATE_BURST at once and RATE_PER_S after; a socket that goes quiet for
  IVR_CONVERSATION_IDLE_MINUTES (START_TIMEOUT_S before a start) is closed.

Anything malformed or out of bounds gets an `error` message naming it, then a close (1003
unknown data, 1008 a policy, 1009 too big); the conversation is ended whenever its socket
closes (customer_left, idle, protocol_error, connection_lost, server_shutdown), so none
stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from ivr.appkeys import CHATS, CONVERSATIONS, SERVICES, SETTINGS
from ivr.auth import PROTOCOL, websocket_principal, websocket_token
from ivr.callerid import caller_number
from ivr.chat import BotMessage, ConversationEnded, Conversations
from ivr.chat.identity import check_identity
from ivr.config import Settings
from ivr.http_error import ApiError
from ivr.transports import chat as wire
from ivr.transports.messages import ProtocolError

log = logging.getLogger(__name__)

SOCKET_PATH = "/v1/chat"
PAGE_PATH = "/chat"
STATIC = Path(__file__).resolve().parent.parent / "chat" / "static"
CHANNEL = "web"
SOCKET_MAX_MSG_SIZE = 4 * wire.MAX_CHAT_MESSAGE
"""aiohttp's own limit, above the protocol's: a message somewhat over that still gets an
error saying so; a larger one aiohttp refuses from its frame header (close 1009)."""
RATE_BURST = 10  # messages at once (quick replies tapped in a row)
RATE_PER_S = 0.5  # and then one every 2 s: a person typing, not a script
START_TIMEOUT_S = 60.0
HEARTBEAT_S = 30
SHUTDOWN_WAIT_S = 3.0


class ChatClosed(Exception):
    """The socket is to close now: the error (`code`, `message`) the client is told first
    (none: it closed itself), the WebSocket close code and the conversation's end reason."""

    def __init__(self, code: str | None, message: str, close: int, reason: str) -> None:
        super().__init__(message)
        self.code, self.close, self.reason = code, close, reason


def _refused(code: str, message: str, close: int = WSCloseCode.POLICY_VIOLATION) -> ChatClosed:
    return ChatClosed(code, message, close, "protocol_error")


class Bucket:
    """Messages a connection may send: `burst` at once, refilled at `per_s`."""

    def __init__(self, burst: float = RATE_BURST, per_s: float = RATE_PER_S) -> None:
        self.burst, self.per_s = burst, per_s
        self.tokens, self.at = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_s)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class ChatSocket:
    """One chat: the client's messages to the conversation, the bot's back."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        conversations: Conversations,
        settings: Settings,
        trusted: bool,
    ) -> None:
        self.ws = ws
        self.conversations = conversations
        self.settings = settings
        self.trusted = trusted  # a token's holder: its number needs no identity
        self.idle_s = settings.conversation_idle_minutes * 60
        self.bucket = Bucket()
        self.conversation_id: str | None = None
        self.offered: tuple[str, ...] = ()  # the quick replies a choice may be
        self.over = False  # the conversation has ended
        self.shutdown = False
        self.done = asyncio.Event()

    async def run(self) -> None:
        """Until the chat ends: an error told to the client, the conversation ended, then
        the socket closed (so a closed socket's conversation has ended)."""
        reason, close, text = "customer_left", None, ""
        try:
            await self._serve()
        except ChatClosed as exc:
            reason, close, text = exc.reason, exc.close, str(exc)
            if exc.code is not None:
                log.info("chat %s: %s (%s)", self.conversation_id, exc, exc.code)
                await self._send(wire.error(exc.code, str(exc)))
        except Exception:  # the store is down, a flow bug: the customer is told
            log.exception("chat %s failed", self.conversation_id)
            reason, close, text = "error", WSCloseCode.INTERNAL_ERROR, "server error"
            await self._send(wire.error("internal", "the chat failed on the server: try again"))
        finally:
            await self._end("server_shutdown" if self.shutdown else reason)
            if close is not None:
                with contextlib.suppress(Exception):
                    await self.ws.close(code=close, message=text.encode("ascii", "replace")[:120])
            self.done.set()

    async def _serve(self) -> None:
        while not self.ws.closed:
            timeout = self.idle_s if self.conversation_id else START_TIMEOUT_S
            try:
                msg = await self.ws.receive(timeout=timeout)
            except TimeoutError:
                if self.conversation_id is not None:
                    await self._send(wire.ended("idle"))
                raise ChatClosed(None, "idle", WSCloseCode.OK, "idle") from None
            if msg.type == WSMsgType.TEXT:
                await self._take(msg.data)
            elif msg.type == WSMsgType.BINARY:
                raise _refused("bad_message", "binary messages are not part of the chat protocol",
                               WSCloseCode.UNSUPPORTED_DATA)  # fmt: skip
            elif msg.type == WSMsgType.ERROR:
                if isinstance(msg.data, WebSocketError):  # aiohttp refused a frame, closed
                    raise ChatClosed(None, str(msg.data), msg.data.code, "protocol_error")
                # no pong to the heartbeat, a reset: the client is gone
                raise ChatClosed(None, "connection lost", WSCloseCode.GOING_AWAY, "connection_lost")
            else:  # the client closed it
                return

    async def _take(self, text: str) -> None:
        if len(text) > wire.MAX_CHAT_MESSAGE:
            raise _refused("too_big", f"message of {len(text)} characters is over"
                           f" {wire.MAX_CHAT_MESSAGE}", WSCloseCode.MESSAGE_TOO_BIG)  # fmt: skip
        if not self.bucket.take():
            raise _refused("too_many_messages", f"more than {RATE_BURST} messages at once, or"
                           f" one every {1 / RATE_PER_S:g} s after")  # fmt: skip
        try:
            message = wire.parse(text)
        except ProtocolError as exc:
            raise _refused("bad_message", str(exc), WSCloseCode.UNSUPPORTED_DATA) from None
        if isinstance(message, wire.Start):
            await self._start(message)
        elif self.conversation_id is None:
            raise _refused("not_started", "send a 'start' message first")
        elif isinstance(message, wire.End):
            await self._end("customer_left")
            await self._send(wire.ended("customer_left"))
            raise ChatClosed(None, "the customer ended the chat", WSCloseCode.OK, "customer_left")
        else:
            await self._say(message)

    async def _start(self, start: wire.Start) -> None:
        if self.conversation_id is not None:
            raise _refused("already_started", "this chat has started already")
        number = None
        if start.number is not None:
            number = caller_number(start.number, self.settings.default_region)
            if number is None:
                raise _refused("invalid_number", f"{start.number[:40]!r} is not a telephone number")
            self._vouched(number, start.identity)
        record, messages = await self.conversations.start(CHANNEL, number)
        self.conversation_id = record.id
        log.info("chat %s started (%s)", record.id, number or "no number")
        await self._send(wire.started(record.id, number))
        await self._replies(messages, record.ended_at is not None, record.end_reason)

    def _vouched(self, number: str, identity: str | None) -> None:
        """ChatClosed unless the client may name `number` as its customer's."""
        if self.trusted:
            return
        secret = self.settings.chat_identity_secret
        if secret is None:
            raise _refused("identity_required", "a chat names a number only with a token (no"
                           " IVR_CHAT_IDENTITY_SECRET to sign one with is set)")  # fmt: skip
        if identity is None:
            raise _refused("identity_required", "a number needs its signed 'identity'")
        why = check_identity(secret, number, identity, time.time())
        if why is not None:
            raise _refused("identity_required", why)

    async def _say(self, said: wire.Say) -> None:
        assert self.conversation_id is not None
        if said.choice and said.text not in self.offered:
            offered = ", ".join(self.offered) or "none"
            raise _refused("unknown_choice", f"{said.text[:40]!r} is not a choice offered"
                           f" (offered: {offered})")  # fmt: skip
        try:
            record, messages = await self.conversations.reply(self.conversation_id, said.text)
        except ConversationEnded as exc:
            self.over = True
            await self._send(wire.ended(exc.reason))
            raise ChatClosed(None, "ended", WSCloseCode.OK, exc.reason) from None
        await self._replies(messages, record.ended_at is not None, record.end_reason)

    async def _replies(self, messages: list[BotMessage], over: bool, reason: str | None) -> None:
        for i, m in enumerate(messages, 1):
            await self._send(wire.bot(m.text, m.quick_replies, last=i == len(messages)))
        if messages:
            self.offered = messages[-1].quick_replies
        if over:
            self.over = True
            await self._send(wire.ended(reason or "ended"))
            raise ChatClosed(None, "ended", WSCloseCode.OK, reason or "ended")

    async def _send(self, text: str) -> None:
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.ws.send_str(text)

    async def _end(self, reason: str) -> None:
        """The conversation ended, with `reason` unless it has ended already."""
        if self.conversation_id is None or self.over:
            return
        self.over = True
        try:
            await self.conversations.close(self.conversation_id, reason)
        except Exception:  # the store is down: a restart's recovery ends it
            log.exception("chat %s: ending the conversation failed", self.conversation_id)

    async def close_for_shutdown(self) -> None:
        self.shutdown = True
        await self._send(wire.ended("server_shutdown"))
        await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


@dataclass
class OpenChats:
    """The chats open on this server (`ivr.appkeys.CHATS`)."""

    open: set[ChatSocket] = field(default_factory=set)


# --- admission ------------------------------------------------------------------------------


def allowed_origins(settings: Settings) -> tuple[str, ...]:
    return tuple(o.strip().lower() for o in settings.chat_origins.split(",") if o.strip())


def _own_origins(request: web.Request, settings: Settings) -> set[str]:
    """This server's origins (host:port): the request's Host, and IVR_PUBLIC_URL's."""
    own = {request.host.lower()}
    if settings.public_url:
        own.add(settings.public_url.split("://", 1)[1].split("/", 1)[0].lower())
    return own


def origin_allowed(request: web.Request, settings: Settings) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser: nothing embeds it
    origin = origin.strip().lower().rstrip("/")
    allowed = allowed_origins(settings)
    if "*" in allowed or origin in allowed:
        return True
    return "://" in origin and origin.split("://", 1)[1] in _own_origins(request, settings)


def _admit(request: web.Request) -> tuple[bool, web.StreamResponse | None]:
    """(trusted, refusal) before the upgrade: a refusal is a problem response."""
    settings = request.app[SETTINGS]
    services = request.app.get(SERVICES)
    if services is not None and services.shutting_down:
        return False, ApiError(503, "this node is shutting down",
                               headers={"Retry-After": "5"}).response()  # fmt: skip
    if not origin_allowed(request, settings):
        origin = request.headers.get("Origin", "")[:100]
        why = f"chat from origin {origin!r} is not allowed (IVR_CHAT_ORIGINS)"
        return False, ApiError(403, why, code="origin_not_allowed").response()
    if websocket_token(request) is None:
        return False, None
    try:
        websocket_principal(request, settings.api_tokens, "conversations.write")
    except ApiError as exc:
        return False, exc.response()
    return True, None


async def chat_socket(request: web.Request) -> web.StreamResponse:
    """GET /v1/chat (WebSocket): one web chat."""
    trusted, refused = _admit(request)
    if refused is not None:
        return refused
    ws = web.WebSocketResponse(
        heartbeat=HEARTBEAT_S, protocols=(PROTOCOL,), max_msg_size=SOCKET_MAX_MSG_SIZE
    )
    await ws.prepare(request)
    chat = ChatSocket(ws, request.app[CONVERSATIONS].conversations, request.app[SETTINGS], trusted)
    request.app[CHATS].open.add(chat)
    try:
        await chat.run()
    finally:
        request.app[CHATS].open.discard(chat)
    return ws


async def _close_chats(app: web.Application) -> None:
    """At shutdown: every chat told and closed, its conversation ended (before the store
    closes)."""
    chats = list(app[CHATS].open)
    if not chats:
        return
    log.info("shutdown: closing %d web chats", len(chats))
    for chat in chats:
        with contextlib.suppress(Exception):
            await chat.close_for_shutdown()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in chats)), SHUTDOWN_WAIT_S)


# --- the widget's page ----------------------------------------------------------------------


def page_headers(settings: Settings) -> dict[str, str]:
    """The page loads nothing from elsewhere; it may be framed by this server's pages and
    IVR_CHAT_ORIGINS' sites (the embed script's iframe)."""
    allowed = allowed_origins(settings)
    ancestors = "*" if "*" in allowed else " ".join(["'self'", *allowed])
    return {
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src"
        f" 'self'; object-src 'none'; base-uri 'none'; frame-ancestors {ancestors}",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }


async def _page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "chat.html", headers=page_headers(request.app[SETTINGS]))


async def _embed(request: web.Request) -> web.FileResponse:
    """The script another site includes: any site may load it (what it opens, the framed
    page, is what IVR_CHAT_ORIGINS allows)."""
    return web.FileResponse(
        STATIC / "embed.js",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
                 "Content-Type": "text/javascript; charset=utf-8"},
    )  # fmt: skip


def add_chat_routes(app: web.Application) -> None:
    app[CHATS] = OpenChats()
    app.router.add_get(SOCKET_PATH, chat_socket)
    app.router.add_get(PAGE_PATH, _page)
    app.router.add_get(f"{PAGE_PATH}/embed.js", _embed)
    app.router.add_static(f"{PAGE_PATH}/static", STATIC)
    app.on_shutdown.append(_close_chats)
