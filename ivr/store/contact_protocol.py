"""The `ContactStore` protocol: conversations by channel and by number (`ivr.store.contacts`),
one area of `ivr.store.protocols.Store` (its own module: that one stays under 500 lines)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ivr.store.base import IntentUse, NodeCount, TurnRecord
    from ivr.store.contacts import ChannelEscalation, ChannelTotals
    from ivr.store.conversations import Conversation, Message


class ContactStore(Protocol):
    """Conversations by channel for analytics, and by number for a customer's history.
    `channel` None: every text channel."""

    async def conversation_totals(
        self, since: datetime, until: datetime, channel: str | None = None
    ) -> list[ChannelTotals]:
        """Per text channel that had any, by channel name."""
        ...

    async def escalated_conversations(
        self,
        since: datetime,
        until: datetime,
        agent_nodes: Collection[str] = (),
        channel: str | None = None,
    ) -> list[ChannelEscalation]:
        """Ended conversations that reached a person: a callback was booked from one (its
        transcript's conversation_id), it ended as `callback_booked`, `callback_not_booked`
        or `handoff: …`, or it had a message at one of `agent_nodes`."""
        ...

    async def abandoned_conversations(
        self, since: datetime, until: datetime, channel: str | None = None
    ) -> list[tuple[str, str]]:
        """(id, channel) of the ended conversations the customer left after a no-match:
        ended `idle` or `customer_left` and the last customer message was not understood."""
        ...

    async def conversation_turns(self, ids: Collection[str]) -> list[TurnRecord]:
        """The messages of these conversations as turns (call_id: the conversation's id)."""
        ...

    async def conversation_intent_uses(
        self, since: datetime, until: datetime, channel: str | None = None
    ) -> list[IntentUse]:
        """Intents acted on, once per conversation, node and intent (call_id: its id)."""
        ...

    async def message_counts(
        self, since: datetime, until: datetime, channel: str | None = None
    ) -> list[NodeCount]:
        """Messages by node as turn kinds: prompt (the bot's), recognized or dtmf (the
        customer's, understood or not), no_match (the customer's not understood)."""
        ...

    async def unrecognized_messages(
        self,
        since: datetime,
        until: datetime,
        channel: str | None = None,
        node: str | None = None,
        limit: int = 10000,
    ) -> list[TurnRecord]:
        """Written messages nothing matched, newest first, as turns (call_id: the
        conversation's id)."""
        ...

    async def conversations_of(self, number: str, limit: int = 50) -> list[Conversation]:
        """The number's conversations, newest first."""
        ...

    async def messages_of(self, ids: Collection[str]) -> dict[str, list[Message]]:
        """The messages of these conversations, each in order."""
        ...
