"""The text conversations of the moment, for the console's live page beside the calls: those
open and those ended lately, latest message first, each with its last message. From the
store, so every node's conversations show (a call's live list is its node's event bus)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.api.conversations import ConversationOut, conversation_json
from ivr.api.operation import Operation, parse_query
from ivr.appkeys import API
from ivr.auth import Principal
from ivr.callbacks import iso


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LastMessage(_Output):
    sender: Literal["customer", "bot"]
    text: str
    at: datetime


class LiveConversation(ConversationOut):
    last_message: LastMessage | None = Field(description="null before the first message")


class LiveConversationList(_Output):
    items: list[LiveConversation] = Field(description="latest message first")


class LiveConversationsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ended_within: int = Field(
        60, ge=0, le=1440, description="minutes: those ended this recently are listed too"
    )
    limit: int = Field(50, ge=1, le=200)


async def list_live_conversations(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    q = parse_query(request.query, LiveConversationsQuery)
    since = datetime.now(UTC) - timedelta(minutes=q.ended_within)
    items = []
    for record, last in await api.store.recent_conversations(since, q.limit):
        message = None
        if last is not None:
            message = {"sender": last.sender, "text": last.text, "at": iso(last.at, api.tz)}
        items.append(conversation_json(record, request) | {"last_message": message})
    return {"items": items}


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/v1/live/conversations",
        list_live_conversations,
        "listLiveConversations",
        "Text conversations open and ended lately (chat, SMS), each with its last message",
        LiveConversationList,
        scope="conversations.read",
        query=LiveConversationsQuery,
    ),
)
