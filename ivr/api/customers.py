"""One customer across channels: a telephone number's calls, text conversations and
callbacks, newest first, each call and conversation with its transcript.

The number is written as every edge keeps numbers (E.164, `ivr.callerid`), so
`15551230001` and `(555) 123-0001` find the calls of caller `+15551230001`, the chats
and SMS threads started for it and the callbacks booked for it. What is not a telephone
number is a 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.analytics.channels import VOICE
from ivr.api.errors import ApiError
from ivr.api.models import CallbackOut
from ivr.api.operation import Operation, parse_query
from ivr.appkeys import API
from ivr.auth import Principal
from ivr.callbacks import callback_json, iso
from ivr.store import Call, Conversation, Message, TurnRecord

Sender = Literal["customer", "bot", "system"]
_SENDER: dict[str, Sender] = {"prompt": "bot", "recognized": "customer", "dtmf": "customer"}


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(20, ge=1, le=100, description="at most this many calls, conversations"
                       " and callbacks each (the newest)")  # fmt: skip


class Line(_Output):
    at: datetime
    sender: Sender = Field(
        description="customer (said, keyed or written), bot (its prompt or message) or"
        " system (what the dialog noted: no input, no match)"
    )
    kind: str | None = Field(
        description="a call's turn kind (prompt, recognized, dtmf, no_input, no_match), or how"
        " the dialog took a customer's message (recognized, dtmf, no_match)"
    )
    text: str | None
    intent: str | None
    node: str | None


class Contact(_Output):
    type: Literal["call", "conversation"]
    channel: str = Field(description="voice for a call, else the conversation's text channel")
    id: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    url: str = Field(description="the call (calls.read) or conversation (conversations.read)")
    transcript: list[Line] = Field(description="in order")


class Customer(_Output):
    number: str = Field(description="in E.164", examples=["+15551230001"])
    contacts: list[Contact] = Field(description="calls and conversations, newest first")
    callbacks: list[CallbackOut] = Field(description="booked for the number, newest first")


def call_contact(call: Call, turns: list[TurnRecord], tz: ZoneInfo) -> dict[str, Any]:
    lines = [
        {
            "at": iso(t.at, tz),
            "sender": _SENDER.get(t.kind, "system"),
            "kind": t.kind,
            "text": t.text,
            "intent": t.intent,
            "node": t.node,
        }
        for t in turns
    ]
    return _contact("call", VOICE, call.id, call, f"/v1/calls/{call.id}", lines, tz)


def conversation_contact(c: Conversation, messages: list[Message], tz: ZoneInfo) -> dict[str, Any]:
    lines = [
        {
            "at": iso(m.at, tz),
            "sender": m.sender,
            "kind": m.kind,
            "text": m.text,
            "intent": m.intent,
            "node": m.node,
        }
        for m in messages
    ]
    return _contact("conversation", c.channel, c.id, c, f"/v1/conversations/{c.id}", lines, tz)


def _contact(
    type: str, channel: str, id: str, c: Call | Conversation, url: str, lines: Any, tz: ZoneInfo
) -> dict[str, Any]:
    return {
        "type": type,
        "channel": channel,
        "id": id,
        "started_at": iso(c.started_at, tz),
        "ended_at": iso(c.ended_at, tz),
        "end_reason": c.end_reason,
        "url": url,
        "transcript": lines,
        "_at": c.started_at,  # for the order; dropped before answering
    }


async def get_customer(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    q = parse_query(request.query, CustomerQuery)
    raw = request.match_info["number"]
    number = api.callbacks.policy.number(raw)
    if number is None:
        detail = [("number", f"{raw[:64]!r} is not a telephone number")]
        raise ApiError(422, "invalid number", detail, code="invalid_input")
    store, tz = api.store, api.tz
    calls, _ = await store.list_calls(caller=number, limit=q.limit)
    turns: dict[str, list[TurnRecord]] = {c.id: [] for c in calls}
    for t in await store.turns_of(list(turns)):
        turns[t.call_id].append(t)
    conversations = await store.conversations_of(number, q.limit)
    messages = await store.messages_of([c.id for c in conversations])
    contacts = [call_contact(c, turns[c.id], tz) for c in calls]
    contacts += [conversation_contact(c, messages.get(c.id, []), tz) for c in conversations]
    contacts.sort(key=lambda c: c["_at"], reverse=True)
    # the list is by due time: take the number's (a handful: one open at a time), newest first
    callbacks, _ = await store.list_callbacks(number=number, limit=1000)
    callbacks = sorted(callbacks, key=lambda cb: cb.created_at, reverse=True)[: q.limit]
    return {
        "number": number,
        "contacts": [{k: v for k, v in c.items() if k != "_at"} for c in contacts],
        "callbacks": [callback_json(cb, tz) for cb in callbacks],
    }


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/v1/customers/{number}",
        get_customer,
        "getCustomer",
        "One customer across channels: the number's calls and conversations (each with its"
        " transcript) and callbacks, newest first",
        Customer,
        scope="customers.read",
        query=CustomerQuery,
        path_params={
            "number": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "description": "the customer's telephone number in any spelling (+15551230001,"
                " (555) 123-0001): kept in E.164; not a number: 422",
                "examples": ["+15551230001"],
            }
        },
    ),
)
