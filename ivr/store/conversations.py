"""Text conversations and their messages (`ivr.chat`): the `ConversationStore` operations,
for both databases."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ivr.store.base import Conflict, NotFound
from ivr.store.queries import Queries, json_in, json_out, uuid_id
from ivr.store.rows import Row, now_or, ts, ts_opt

Sender = Literal["customer", "bot"]


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    channel: str
    number: str | None
    """The customer's number (E.164), as calls and callbacks keep it; None: not given."""
    flow: str | None
    flow_version: str | None
    started_at: datetime
    last_message_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    survey: int | None
    complaint: Any = None
    """Why it was found to be a complaint (`ivr.nlu.complaint`, JSON); None: not one."""


@dataclass(frozen=True, slots=True)
class Message:
    conversation_id: str
    seq: int
    at: datetime
    sender: Sender
    text: str
    node: str | None
    quick_replies: tuple[str, ...]
    kind: str | None = None
    """A customer's message as the dialog took it: recognized (words), dtmf (only keys) or
    no_match (nothing matched); None for the bot's."""
    intent: str | None = None
    """The intent the dialog acted on, if any."""


def _conversation(r: Row) -> Conversation:
    return Conversation(
        id=str(r["id"]),
        channel=r["channel"],
        number=r["number"],
        flow=r["flow"],
        flow_version=r["flow_version"],
        started_at=ts(r["started_at"]),
        last_message_at=ts(r["last_message_at"]),
        ended_at=ts_opt(r["ended_at"]),
        end_reason=r["end_reason"],
        survey=None if r["survey"] is None else int(r["survey"]),
        complaint=json_out(r.get("complaint")),
    )


def _message(r: Row) -> Message:
    replies = r["quick_replies"]
    replies = json_out(replies) if isinstance(replies, str) else replies
    return Message(
        conversation_id=str(r["conversation_id"]),
        seq=int(r["seq"]),
        at=ts(r["at"]),
        sender=r["sender"],
        text=r["text"],
        node=r["node"],
        quick_replies=tuple(replies or ()),
        kind=r.get("kind"),
        intent=r.get("intent"),
    )


conversation_of = _conversation
message_of = _message


class ConversationQueries(Queries):
    """Mixed into `SqlStore`."""

    async def start_conversation(
        self,
        *,
        channel: str,
        number: str | None = None,
        flow: str | None = None,
        flow_version: str | None = None,
        started_at: datetime | None = None,
    ) -> Conversation:
        at = now_or(started_at)
        async with self._unit() as c:
            rows = await c.fetch(
                "INSERT INTO conversations (id, channel, number, flow, flow_version, started_at,"
                " last_message_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *",
                str(uuid.uuid4()),
                channel,
                number,
                flow,
                flow_version,
                at,
            )
        return _conversation(rows[0])

    async def add_message(
        self,
        conversation_id: str,
        sender: Sender,
        text: str,
        *,
        node: str | None = None,
        quick_replies: tuple[str, ...] = (),
        at: datetime | None = None,
        kind: str | None = None,
        intent: str | None = None,
    ) -> Message:
        id, when = uuid_id("conversation", conversation_id), now_or(at)
        async with self._unit() as c:
            rows = await c.fetch(
                "UPDATE conversations SET last_message_at = $2 WHERE id = $1"
                " RETURNING (SELECT COALESCE(MAX(seq), 0) + 1 FROM conversation_messages"
                " WHERE conversation_id = $1) AS seq",
                id,
                when,
            )
            if not rows:
                raise NotFound("conversation", conversation_id)
            rows = await c.fetch(
                "INSERT INTO conversation_messages (conversation_id, seq, at, sender, text, node,"
                " quick_replies, kind, intent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " RETURNING *",
                id,
                int(rows[0]["seq"]),
                when,
                sender,
                text,
                node,
                json_in(list(quick_replies)) if quick_replies else None,
                kind,
                intent,
            )
        return _message(rows[0])

    async def end_conversation(
        self,
        id: str,
        end_reason: str,
        *,
        survey: int | None = None,
        ended_at: datetime | None = None,
    ) -> Conversation:
        async with self._unit() as c:
            rows = await c.fetch(
                "UPDATE conversations SET ended_at = $2, end_reason = $3, survey = $4"
                " WHERE id = $1 AND ended_at IS NULL RETURNING *",
                uuid_id("conversation", id),
                now_or(ended_at),
                end_reason,
                survey,
            )
            if not rows and not await c.fetch(
                "SELECT id FROM conversations WHERE id = $1", uuid_id("conversation", id)
            ):
                raise NotFound("conversation", id)
            if not rows:
                raise Conflict("conversation", id, "end", "ended")
        return _conversation(rows[0])

    async def get_conversation(self, id: str) -> Conversation:
        return _conversation(await self._conversation_row(id))

    async def _conversation_row(self, id: str) -> Row:
        rows = await self._select(
            "SELECT * FROM conversations WHERE id = $1", uuid_id("conversation", id)
        )
        if not rows:
            raise NotFound("conversation", id)
        return rows[0]

    async def open_conversation(self, channel: str, number: str) -> Conversation | None:
        """The number's latest conversation on `channel` that has not ended, if any."""
        rows = await self._select(
            "SELECT * FROM conversations WHERE number = $1 AND channel = $2"
            " AND ended_at IS NULL ORDER BY started_at DESC LIMIT 1",
            number,
            channel,
        )
        return _conversation(rows[0]) if rows else None

    async def open_conversations(self, limit: int = 1000) -> list[Conversation]:
        rows = await self._select(
            "SELECT * FROM conversations WHERE ended_at IS NULL ORDER BY started_at LIMIT $1",
            limit,
        )
        return [_conversation(r) for r in rows]

    async def recent_conversations(
        self, ended_after: datetime, limit: int = 100
    ) -> list[tuple[Conversation, Message | None]]:
        """Those not ended and those ended after `ended_after`, latest message first, each
        with its last message (None before the first)."""
        rows = await self._select(
            "SELECT * FROM conversations WHERE ended_at IS NULL OR ended_at > $1"
            " ORDER BY last_message_at DESC, id LIMIT $2",
            ended_after,
            limit,
        )
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        marks = ", ".join(f"${i + 1}" for i in range(len(ids)))
        last = await self._select(
            f"SELECT m.* FROM conversation_messages m WHERE m.conversation_id IN ({marks})"
            " AND m.seq = (SELECT MAX(seq) FROM conversation_messages"
            " WHERE conversation_id = m.conversation_id)",
            *ids,
        )
        by_id = {str(r["conversation_id"]): _message(r) for r in last}
        return [(c, by_id.get(c.id)) for c in map(_conversation, rows)]

    async def list_messages(self, conversation_id: str) -> list[Message]:
        rows = await self._select(
            "SELECT * FROM conversation_messages WHERE conversation_id = $1 ORDER BY seq",
            uuid_id("conversation", conversation_id),
        )
        return [_message(r) for r in rows]
