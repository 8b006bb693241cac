"""Text channels: chat conversations over REST, and the SMS webhook (Twilio Messaging).

The same flow answers as on the phone (`ivr.chat`): a conversation starts with the flow's
opening, each customer message gets the bot's replies (with quick replies where the flow
offers choices), and the history is kept in the store. The customer's number is kept in
E.164, as callers' and callbacks' are: a callback booked in a chat is that number's one
open callback.

SMS: Twilio POSTs each inbound message form-encoded (`From`, `To`, `Body`, ...) to
`/v1/sms/twilio` and sends the TwiML answer's `<Message>`s back. With IVR_TWILIO_AUTH_TOKEN
set, a request must carry `X-Twilio-Signature`: base64 HMAC-SHA1, keyed with the auth token,
of the URL Twilio called (IVR_PUBLIC_URL's origin when set: behind a proxy the server sees
another) followed by each POST parameter, sorted by name, as name + value. Else a 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from xml.sax.saxutils import escape

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from yarl import URL

from ivr.api.errors import ApiError
from ivr.api.models import ComplaintOut, Number
from ivr.api.operation import Operation, read_body, store_unavailable
from ivr.appkeys import API, CONVERSATIONS
from ivr.auth import Principal
from ivr.callbacks import Callbacks, iso
from ivr.chat import BotMessage, ConversationEnded, Conversations
from ivr.chat.dialog import Lookups
from ivr.clock import Clock
from ivr.config import Settings
from ivr.dialog.store import FlowStore
from ivr.dialog.when import BusinessHours
from ivr.store import Conversation, Message, Store, StoreUnavailable

log = logging.getLogger(__name__)

SMS_PATH = "/v1/sms/twilio"
MAX_TEXT = 2000  # a chat message; an SMS is at most 1600 characters (10 segments)
CONVERSATION_ID = {
    "id": {
        "type": "string",
        "format": "uuid",
        "description": "the conversation's id; an id that is not a UUID is a 404 like an"
        " unknown one",
    }
}


@dataclass(frozen=True)
class TextChannels:
    """What the text channels' handlers need (`ivr.appkeys.CONVERSATIONS`)."""

    conversations: Conversations
    twilio_auth_token: str | None = None
    """IVR_TWILIO_AUTH_TOKEN: SMS webhooks must be signed with it; None: not checked."""
    public_url: str | None = None
    """IVR_PUBLIC_URL: the origin Twilio calls, for the signed URL; None: the request's."""


def text_channels(
    settings: Settings,
    store: Store,
    flows: FlowStore,
    lookups: Lookups,
    callbacks: Callbacks,
    clock: Clock,
    hours: BusinessHours,
) -> TextChannels:
    """The text channels on the served flow (read per conversation: a reloaded flow serves
    the next ones), with the calls' lookups, callbacks and calendar."""
    conversations = Conversations(
        store,
        lambda: flows.flow,
        lookups,
        callbacks,
        idle=timedelta(minutes=settings.conversation_idle_minutes),
        clock=clock,
        hours=hours,
    )
    return TextChannels(conversations, settings.twilio_auth_token, settings.public_url)


# --- bodies ---------------------------------------------------------------------------------


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StartRequest(_Input):
    channel: Literal["web", "app", "api"] = Field(
        description="where the customer writes from (SMS threads start by the webhook)"
    )
    number: Number | None = Field(
        None,
        description="the customer's telephone number (kept in E.164, as callers' are): their"
        " account is found by it and callbacks are booked for it; absent or null: the flow"
        " asks for an account number",
        examples=["+15551230001"],
    )


class MessageRequest(_Input):
    text: str = Field(min_length=1, max_length=MAX_TEXT, pattern=r"\S",
                      description="what the customer wrote")  # fmt: skip


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConversationOut(_Output):
    id: str
    channel: str
    number: str | None
    status: Literal["open", "ended"]
    started_at: datetime
    last_message_at: datetime
    ended_at: datetime | None
    end_reason: str | None = Field(
        description="e.g. caller_goodbye, callback_booked, idle (IVR_CONVERSATION_IDLE_MINUTES"
        " without a message), state_lost (the server that held it restarted)"
    )
    complaint: ComplaintOut | None = Field(
        description="why the conversation is a complaint; null: none"
    )


class BotMessageOut(_Output):
    text: str
    quick_replies: list[str] = Field(description="answers to offer as buttons (may be empty)")


class Replies(_Output):
    """The conversation and the bot's messages, in order."""

    conversation: ConversationOut
    messages: list[BotMessageOut]


class MessageOut(_Output):
    seq: int
    at: datetime
    sender: Literal["customer", "bot"]
    text: str
    node: str | None = Field(description="the flow's node it was written at")
    quick_replies: list[str]


class ConversationDetail(ConversationOut):
    """The conversation with every message, both ways, oldest first."""

    messages: list[MessageOut]


# --- handlers -------------------------------------------------------------------------------


def _channels(request: web.Request) -> TextChannels:
    return request.app[CONVERSATIONS]


def conversation_json(c: Conversation, request: web.Request) -> dict[str, Any]:
    tz = request.app[API].tz
    return {
        "id": c.id,
        "channel": c.channel,
        "number": c.number,
        "status": "open" if c.ended_at is None else "ended",
        "started_at": iso(c.started_at, tz),
        "last_message_at": iso(c.last_message_at, tz),
        "ended_at": iso(c.ended_at, tz),
        "end_reason": c.end_reason,
        "complaint": c.complaint,
    }


def _replies(c: Conversation, messages: list[BotMessage], request: web.Request) -> dict[str, Any]:
    return {
        "conversation": conversation_json(c, request),
        "messages": [{"text": m.text, "quick_replies": list(m.quick_replies)} for m in messages],
    }


def _message_json(m: Message, request: web.Request) -> dict[str, Any]:
    return {
        "seq": m.seq,
        "at": iso(m.at, request.app[API].tz),
        "sender": m.sender,
        "text": m.text,
        "node": m.node,
        "quick_replies": list(m.quick_replies),
    }


async def start_conversation(request: web.Request, who: Principal) -> Any:
    body = await read_body(request, StartRequest)
    number = None
    if body.number is not None:
        number = request.app[API].callbacks.policy.number(body.number)
        if number is None:
            fields = [("number", "not a telephone number")]
            raise ApiError(422, "invalid body", fields, code="invalid_body")
    record, messages = await _channels(request).conversations.start(body.channel, number)
    location = str(request.app.router["getConversation"].url_for(id=record.id))
    return web.json_response(
        _replies(record, messages, request), status=201, headers={"Location": location}
    )


async def post_message(request: web.Request, who: Principal) -> Any:
    body = await read_body(request, MessageRequest)
    try:
        record, messages = await _channels(request).conversations.reply(
            request.match_info["id"], body.text
        )
    except ConversationEnded as exc:
        raise ApiError(409, str(exc), code="conversation_ended") from None
    return _replies(record, messages, request)


async def get_conversation(request: web.Request, who: Principal) -> Any:
    record, messages = await _channels(request).conversations.history(request.match_info["id"])
    return {
        **conversation_json(record, request),
        "messages": [_message_json(m, request) for m in messages],
    }


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/v1/conversations",
        start_conversation,
        "startConversation",
        "Start a chat with the flow: 201 with its id and the bot's first messages",
        Replies,
        scope="conversations.write",
        body=StartRequest,
        body_required=True,
        status=201,
    ),
    Operation(
        "POST",
        "/v1/conversations/{id}/messages",
        post_message,
        "postConversationMessage",
        "The customer's message: the bot's replies (409 once the conversation has ended)",
        Replies,
        scope="conversations.write",
        body=MessageRequest,
        body_required=True,
        path_params=CONVERSATION_ID,
        conflicts=True,
    ),
    Operation(
        "GET",
        "/v1/conversations/{id}",
        get_conversation,
        "getConversation",
        "One conversation with its messages, both ways",
        ConversationDetail,
        scope="conversations.read",
        path_params=CONVERSATION_ID,
    ),
)


# --- SMS (Twilio Messaging) -----------------------------------------------------------------


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's request signature: base64 HMAC-SHA1 of `url` and the sorted parameters."""
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _signed_url(request: web.Request, public_url: str | None) -> str:
    if public_url is None:
        return str(request.url)
    origin = URL(public_url.rstrip("/"))
    return str(origin.with_path(request.path).with_query(request.query_string))


def twiml(messages: list[str]) -> str:
    body = "".join(f"<Message>{escape(m)}</Message>" for m in messages)
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'


def _twiml_response(messages: list[str], status: int = 200) -> web.Response:
    return web.Response(text=twiml(messages), status=status, content_type="application/xml")


async def sms_twilio(request: web.Request) -> web.StreamResponse:
    """An inbound SMS: the bot's replies as TwiML (one `<Message>` each)."""
    channels = _channels(request)
    if request.content_type != "application/x-www-form-urlencoded":
        raise ApiError(415, "send the webhook form-encoded, as Twilio does")
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    if channels.twilio_auth_token is not None:
        url = _signed_url(request, channels.public_url)
        expected = twilio_signature(channels.twilio_auth_token, url, form)
        given = request.headers.get("X-Twilio-Signature", "")
        if not hmac.compare_digest(expected.encode(), given.encode()):
            log.warning("SMS webhook: a request without a valid X-Twilio-Signature refused")
            raise ApiError(403, "invalid X-Twilio-Signature", code="invalid_signature")
    number = request.app[API].callbacks.policy.number(form.get("From"))
    text = form.get("Body", "").strip()[:MAX_TEXT]
    if number is None:  # nobody to answer (a withheld or short-code sender)
        raise ApiError(422, "invalid body", [("From", "not a telephone number")],
                       code="invalid_body")  # fmt: skip
    if not text:  # an MMS with only a picture: nothing the flow can read
        return _twiml_response(["Sorry, I can only read text messages."])
    _, messages = await channels.conversations.sms(number, text)
    return _twiml_response([m.text for m in messages])


async def sms_endpoint(request: web.Request) -> web.StreamResponse:
    """`sms_twilio` with the API's problem errors (Twilio logs the status and body)."""
    try:
        return await sms_twilio(request)
    except ApiError as exc:
        return exc.response()
    except ConversationEnded:  # ended by another request while this one waited
        return _twiml_response([])
    except StoreUnavailable as exc:  # Twilio retries a failed webhook: no reply is lost
        log.warning("%s %s: %s", request.method, request.path, exc)
        return store_unavailable().response()
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return ApiError(500, "internal error").response()


def add_sms_routes(app: web.Application) -> None:
    app.router.add_post(SMS_PATH, sms_endpoint, name="smsTwilio")
