"""Text conversations as analytics and a customer's history see them (`ContactStore`), for
both databases: the analytics queries of the conversations that started in [since, until)
on one text channel or all of them (their messages as a call's turns: a customer message is
an input at the node it was written at, of the kind and intent the dialog recorded for it,
a bot message a prompt), and one number's conversations.

Calls are the voice channel; their queries are `analytics.py`'s. A conversation's callback
is found by its transcript's `conversation_id` (the expression migration 12 indexes).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ivr.store.analytics import ESCALATION_END_REASONS, HANDOFF_PREFIX
from ivr.store.base import Escalation, IntentUse, NodeCount, TurnRecord
from ivr.store.conversations import Conversation, Message, conversation_of, message_of
from ivr.store.migrations import TYPES, Dialect
from ivr.store.queries import Queries
from ivr.store.rows import Row, ts, utc

LEFT = ("idle", "customer_left")
"""How a conversation ends when the customer goes away: stops writing (`ivr.chat.service`),
closes the web chat (`ivr.server.chat`). A text channel's hang-up."""

_SECONDS: dict[Dialect, str] = {
    "sqlite": "(julianday(c.ended_at) - julianday(c.started_at)) * 86400.0",
    "postgresql": "EXTRACT(EPOCH FROM (c.ended_at - c.started_at))",
}
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ChannelTotals:
    """One text channel's conversations in a window."""

    channel: str
    conversations: int
    ended: int
    handling_seconds: float | None
    """Average ended_at - started_at of the ended ones (None without any)."""
    survey: dict[int, int]


@dataclass(frozen=True, slots=True)
class ChannelEscalation:
    """An ended conversation that reached a person (`call_id` is the conversation's id)."""

    channel: str
    escalation: Escalation


class ContactQueries(Queries):
    """Mixed into `SqlStore`."""

    async def _window(
        self, sql: str, since: datetime, until: datetime, channel: str | None, *more: Any
    ) -> list[Row]:
        """`sql` with {where}: the conversations `c` that started in the window (on
        `channel`); $1, $2 the window, $3 the channel, `more` from $4 on."""
        where = "c.started_at >= $1 AND c.started_at < $2 AND ($3 = '' OR c.channel = $3)"
        async with self._unit(write=False) as conn:
            return await conn.fetch(
                sql.format(where=where), utc(since), utc(until), channel or "", *more
            )

    async def conversation_totals(
        self, since: datetime, until: datetime, channel: str | None = None
    ) -> list[ChannelTotals]:
        totals = await self._window(
            "SELECT c.channel, COUNT(*) AS n, COUNT(c.ended_at) AS ended,"
            f" AVG({_SECONDS[self.dialect]}) AS seconds FROM conversations c"
            " WHERE {where} GROUP BY c.channel ORDER BY c.channel",
            since,
            until,
            channel,
        )
        scores = await self._window(
            "SELECT c.channel, c.survey, COUNT(*) AS n FROM conversations c"
            " WHERE {where} AND c.survey IS NOT NULL GROUP BY c.channel, c.survey",
            since,
            until,
            channel,
        )
        survey: dict[str, dict[int, int]] = defaultdict(dict)
        for r in scores:
            survey[r["channel"]][int(r["survey"])] = int(r["n"])
        return [
            ChannelTotals(
                channel=r["channel"],
                conversations=int(r["n"]),
                ended=int(r["ended"]),
                handling_seconds=None if r["seconds"] is None else float(r["seconds"]),
                survey=survey[r["channel"]],
            )
            for r in totals
        ]

    async def escalated_conversations(
        self,
        since: datetime,
        until: datetime,
        agent_nodes: Collection[str] = (),
        channel: str | None = None,
    ) -> list[ChannelEscalation]:
        more: list[Any] = [*ESCALATION_END_REASONS, f"{HANDOFF_PREFIX}%"]
        reached = ""
        if agent_nodes:
            first = 3 + len(more) + 1
            more += sorted(agent_nodes)
            marks = ", ".join(f"${i}" for i in range(first, 3 + len(more) + 1))
            reached = (
                " OR EXISTS (SELECT 1 FROM conversation_messages m"
                f" WHERE m.conversation_id = c.id AND m.node IN ({marks}))"
            )
        conversation_id = TYPES[self.dialect]["transcript_conversation_id"]
        rows = await self._window(
            "SELECT c.id, c.channel, c.end_reason, cb.reason AS callback_reason"
            f" FROM conversations c LEFT JOIN callbacks cb ON {conversation_id} = c.id || ''"
            " WHERE {where} AND c.ended_at IS NOT NULL AND (cb.id IS NOT NULL"
            f" OR c.end_reason IN ($4, $5) OR c.end_reason LIKE $6{reached}) ORDER BY c.id",
            since,
            until,
            channel,
            *more,
        )
        out: dict[str, ChannelEscalation] = {}
        for r in rows:
            id, seen = str(r["id"]), out.get(str(r["id"]))
            if seen is None or (seen.escalation.callback_reason is None and r["callback_reason"]):
                e = Escalation(id, r["end_reason"], r["callback_reason"])
                out[id] = ChannelEscalation(r["channel"], e)
        return list(out.values())

    async def abandoned_conversations(
        self, since: datetime, until: datetime, channel: str | None = None
    ) -> list[tuple[str, str]]:
        rows = await self._window(
            "SELECT c.id, c.channel FROM conversations c"
            " JOIN conversation_messages m ON m.conversation_id = c.id"
            " WHERE {where} AND c.ended_at IS NOT NULL AND c.end_reason IN ($4, $5)"
            " AND m.sender = 'customer' AND m.kind = 'no_match'"
            " AND m.seq = (SELECT MAX(l.seq) FROM conversation_messages l"
            " WHERE l.conversation_id = c.id AND l.sender = 'customer') ORDER BY c.id",
            since,
            until,
            channel,
            *LEFT,
        )
        return [(str(r["id"]), r["channel"]) for r in rows]

    async def conversation_turns(self, ids: Collection[str]) -> list[TurnRecord]:
        out: list[TurnRecord] = []
        for m in (await self.messages_of(ids)).values():
            out += [_turn(x) for x in m]
        return out

    async def conversation_intent_uses(
        self, since: datetime, until: datetime, channel: str | None = None
    ) -> list[IntentUse]:
        rows = await self._window(
            "SELECT DISTINCT c.id, c.started_at, m.node, m.intent FROM conversations c"
            " JOIN conversation_messages m ON m.conversation_id = c.id"
            " WHERE {where} AND m.sender = 'customer' AND m.intent IS NOT NULL"
            " AND m.kind IN ('recognized', 'dtmf') ORDER BY c.started_at, c.id, m.node, m.intent",
            since,
            until,
            channel,
        )
        return [IntentUse(str(r["id"]), r["node"], r["intent"], ts(r["started_at"])) for r in rows]

    async def message_counts(
        self, since: datetime, until: datetime, channel: str | None = None
    ) -> list[NodeCount]:
        rows = await self._window(
            "SELECT m.node, m.sender, m.kind, COUNT(*) AS n FROM conversations c"
            " JOIN conversation_messages m ON m.conversation_id = c.id"
            " WHERE {where} GROUP BY m.node, m.sender, m.kind",
            since,
            until,
            channel,
        )
        counts: dict[tuple[str | None, str], int] = defaultdict(int)
        for r in rows:
            n, node = int(r["n"]), r["node"]
            if r["sender"] == "bot":
                counts[node, "prompt"] += n
                continue
            counts[node, "dtmf" if r["kind"] == "dtmf" else "recognized"] += n
            if r["kind"] == "no_match":
                counts[node, "no_match"] += n
        return [
            NodeCount(node, kind, n)  # type: ignore[arg-type]  # kinds written just above
            for (node, kind), n in sorted(counts.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
        ]

    async def unrecognized_messages(
        self,
        since: datetime,
        until: datetime,
        channel: str | None = None,
        node: str | None = None,
        limit: int = 10000,
    ) -> list[TurnRecord]:
        if limit < 1:
            raise ValueError(f"limit {limit} is not positive")
        rows = await self._window(
            "SELECT m.* FROM conversations c"
            " JOIN conversation_messages m ON m.conversation_id = c.id"
            " WHERE {where} AND m.sender = 'customer' AND m.kind = 'no_match'"
            " AND ($4 = '' OR m.node = $4)"
            " ORDER BY m.at DESC, m.conversation_id, m.seq LIMIT $5",
            since,
            until,
            channel,
            node or "",
            limit,
        )
        return [_turn(message_of(r)) for r in rows]

    async def conversations_of(self, number: str, limit: int = 50) -> list[Conversation]:
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit {limit} is not in 1..1000")
        rows = await self._select(
            "SELECT * FROM conversations WHERE number = $1"
            " ORDER BY started_at DESC, id DESC LIMIT $2",
            number,
            limit,
        )
        return [conversation_of(r) for r in rows]

    async def messages_of(self, ids: Collection[str]) -> dict[str, list[Message]]:
        keys = sorted({str(i) for i in ids})
        out: dict[str, list[Message]] = {k: [] for k in keys}
        for chunk in _chunks(keys):
            marks = ", ".join(f"${n}" for n in range(1, len(chunk) + 1))
            rows = await self._select(
                f"SELECT * FROM conversation_messages WHERE conversation_id IN ({marks})"
                " ORDER BY conversation_id, seq",
                *chunk,
            )
            for r in rows:
                m = message_of(r)
                out.setdefault(m.conversation_id, []).append(m)
        return out


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(keys), _CHUNK):
        yield keys[i : i + _CHUNK]


def _turn(m: Message) -> TurnRecord:
    """A message as a turn: the bot's a prompt; the customer's the input the dialog took it
    as (an understood message's kind, else "no_match")."""
    kind = "prompt" if m.sender == "bot" else (m.kind or "recognized")
    return TurnRecord(
        call_id=m.conversation_id,
        seq=m.seq,
        at=m.at,
        node=m.node,
        kind=kind,  # type: ignore[arg-type]  # the kinds the chat records are turn kinds
        text=m.text,
        intent=m.intent,
        confidence=None,
    )
