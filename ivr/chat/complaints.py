"""The complaint early warning in a text conversation, as in a call (`ivr.call.complaints`):
the dialog's turns watched (`ivr.nlu.complaint`: the customer's typed words, no-matches,
requests for a person, a topic the same number asked about within a day in any channel),
and a complaint's effects through the store (`ivr.callbacks.complaints`): the conversation
marked, the callback booked in it raised, the ``complaint.detected`` webhook.

Writes happen as the turns come (the conversation's record exists from its start); a store
that fails loses only these records, logged, never the conversation.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ivr.analytics.facts import FlowFacts
from ivr.callbacks import Callbacks
from ivr.callbacks.complaints import ComplaintDesk
from ivr.dialog.flow import Flow
from ivr.dialog.types import Turn
from ivr.nlu.complaint import Complaint, ComplaintWatch, default_language
from ivr.store import StoreError

log = logging.getLogger(__name__)


class ChatComplaints:
    """One conversation's watch. `start` it (reads the number's earlier contacts), then
    `turn` every dialog Turn."""

    def __init__(
        self, callbacks: Callbacks, flow: Flow, conversation_id: str, channel: str,
        number: str | None,
    ) -> None:  # fmt: skip
        self.desk = ComplaintDesk(callbacks, "conversation", conversation_id, channel, number)
        self.flow = flow
        self.watch: ComplaintWatch | None = None

    @property
    def complaint(self) -> Complaint | None:
        return self.desk.complaint

    async def start(self) -> None:
        try:
            language = await asyncio.to_thread(default_language)  # built once per process
        except Exception:  # no sentence model files...: the behaviour still counts
            log.exception("conversation %s: the complaint language model failed", self.desk.id)
            language = None
        topics = await self.desk.earlier_topics()
        self.watch = ComplaintWatch(language, FlowFacts.from_flow(self.flow).is_topic, topics)

    async def turn(self, turn: Turn) -> Complaint | None:
        """Watch one turn; the complaint when this turn makes it one (its effects done)."""
        watch, desk = self.watch, self.desk
        if watch is None:
            return None
        before = len(watch.topics)
        found = watch.turn(turn.node, turn.kind, turn.text, turn.intent)
        try:
            for topic in watch.topics[before:]:
                await desk.topic(desk.store, topic)
            if found is not None:
                await desk.detected(desk.store, found)
        except StoreError as exc:
            log.error("conversation %s: could not record the complaint: %s", desk.id, exc)
        if found is not None:
            desk.complaint = found  # also when the store failed: a booking is still raised
        return found

    def for_booking(self) -> dict[str, Any] | None:
        return self.desk.why()

    def booked(self, callback_id: str) -> None:
        self.desk.booked(callback_id)
