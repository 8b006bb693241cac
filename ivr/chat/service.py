"""The text conversations a server holds: each one's dialog in memory, its record and
messages in the store (the history any node can read), an idle timeout.

A conversation's dialog state lives in the process that started it, as a call's does: a
message to a conversation this process does not hold (the server restarted, another node
started it) ends it ("state_lost") and is refused, and an SMS from that number starts a
new one. A conversation idle for longer than `idle` ends ("idle") at its next message or
when the next conversation starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ivr.callbacks import Callbacks
from ivr.chat.dialog import BotMessage, Lookups, TextDialog
from ivr.clock import Clock, system_clock, today_in
from ivr.dialog.engine import ALWAYS_OPEN, DialogEngine
from ivr.dialog.flow import Flow
from ivr.dialog.when import BusinessHours
from ivr.store import Conflict, Conversation, Message, Store

log = logging.getLogger(__name__)

SMS = "sms"


def taken_as(turns: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """How the dialog took a customer's message, from the turns it recorded for it (as a
    call's turns): its kind (recognized, dtmf; no_match when nothing matched) and intent."""
    inputs = [t for t in turns if t["kind"] in ("recognized", "dtmf")]
    if not inputs:
        return None, None
    if any(t["kind"] == "no_match" for t in turns):
        return "no_match", None
    return inputs[0]["kind"], inputs[0]["intent"]


class ConversationEnded(Exception):
    """The conversation takes no more messages: it ended (`reason`)."""

    def __init__(self, conversation: Conversation, reason: str) -> None:
        super().__init__(f"conversation {conversation.id} has ended ({reason})")
        self.conversation = conversation
        self.reason = reason


@dataclass
class _Live:
    dialog: TextDialog
    record: Conversation
    active_at: datetime  # its last message, by `Conversations.now`
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Conversations:
    """Starts conversations on the served flow and carries their messages. `flow` is read
    for each new conversation (a reloaded flow serves the next ones; a conversation keeps
    the version it started on, as a call does)."""

    def __init__(
        self,
        store: Store,
        flow: Callable[[], Flow],
        lookups: Lookups,
        callbacks: Callbacks | None,
        *,
        idle: timedelta = timedelta(minutes=30),
        clock: Clock = system_clock,
        hours: BusinessHours = ALWAYS_OPEN,
        now: Clock = system_clock,
    ) -> None:
        """`clock` is the dialog's calendar (business hours, callback times; a demo's may
        be shifted); `now` the real time the store stamps messages with (idle timeout)."""
        self.store = store
        self.flow = flow
        self.lookups = lookups
        self.callbacks = callbacks
        self.idle = idle
        self.clock = clock
        self.hours = hours
        self.now = now
        self._live: dict[str, _Live] = {}

    @property
    def active(self) -> int:
        return len(self._live)

    async def start(
        self, channel: str, number: str | None
    ) -> tuple[Conversation, list[BotMessage]]:
        """A new conversation with `number`'s customer (E.164 already, or None): its record
        and the flow's opening messages."""
        await self._end_idle()
        flow = self.flow()
        record = await self.store.start_conversation(
            channel=channel, number=number, flow=flow.name, flow_version=flow.version
        )
        # No agents: a text conversation has no call to transfer (`ivr.chat.dialog`).
        engine = DialogEngine(flow, today_in(self.clock, self.hours.tz), self.clock, self.hours)
        dialog = TextDialog(record.id, channel, engine, self.lookups, self.callbacks)
        live = _Live(dialog, record, self.now())
        self._live[record.id] = live
        async with live.lock:
            messages = await live.dialog.start(number)
            await self._said(live, messages)
        return record, messages

    async def reply(self, id: str, text: str) -> tuple[Conversation, list[BotMessage]]:
        """The bot's answer to the customer's `text` in conversation `id`. NotFound for an
        unknown id; ConversationEnded when it takes no more messages."""
        record = await self.store.get_conversation(id)
        live = self._live.get(record.id)
        if record.ended_at is not None:
            raise ConversationEnded(record, record.end_reason or "ended")
        if live is None:  # its dialog was another process's: it cannot go on
            raise ConversationEnded(await self._end(record, "state_lost"), "state_lost")
        async with live.lock:
            if live.dialog.ended:
                raise ConversationEnded(live.record, live.dialog.end_reason or "ended")
            if self._idle(live):
                raise ConversationEnded(await self._close(live, "idle"), "idle")
            live.active_at = self.now()
            node, seen, kept = (
                live.dialog.state.node,
                len(live.dialog.transcript),
                live.dialog.kept(text),
            )
            messages = await live.dialog.message(text)
            kind, intent = taken_as(live.dialog.transcript[seen:])
            await self.store.add_message(
                record.id, "customer", kept, node=node, kind=kind, intent=intent
            )
            await self._said(live, messages)
            return live.record, messages

    async def sms(self, number: str, text: str) -> tuple[Conversation, list[BotMessage]]:
        """An SMS from `number`: the answer in the number's open SMS conversation, or in a
        new one (its opening, then the answer to `text`) when it has none (or it ended, went
        idle, or was another process's)."""
        record = await self.store.open_conversation(SMS, number)
        if record is not None:
            try:
                return await self.reply(record.id, text)
            except ConversationEnded:
                pass  # a new thread below
        record, opening = await self.start(SMS, number)
        if self._live[record.id].dialog.ended:  # a flow that only says something
            return record, opening
        record, answer = await self.reply(record.id, text)
        return record, opening + answer

    async def close(self, id: str, reason: str) -> Conversation:
        """End conversation `id` from outside its dialog (the customer closed the chat, its
        socket broke): the record ended with `reason`, unless it had ended already."""
        live = self._live.get(id)
        if live is None:
            record = await self.store.get_conversation(id)
            return record if record.ended_at is not None else await self._end(record, reason)
        async with live.lock:
            return await self._close(live, reason)

    async def history(self, id: str) -> tuple[Conversation, list[Message]]:
        record = await self.store.get_conversation(id)
        return record, await self.store.list_messages(record.id)

    # --- keeping the record -------------------------------------------------------------

    async def _said(self, live: _Live, messages: list[BotMessage]) -> None:
        for m in messages:
            await self.store.add_message(
                live.record.id, "bot", m.text, node=m.node, quick_replies=m.quick_replies
            )
        if live.dialog.ended:
            await self._close(live, live.dialog.end_reason or "ended")
        else:
            live.record = await self.store.get_conversation(live.record.id)

    def _idle(self, live: _Live) -> bool:
        return self.now() - live.active_at > self.idle

    async def _close(self, live: _Live, reason: str) -> Conversation:
        self._live.pop(live.record.id, None)
        live.record = await self._end(live.record, reason, live.dialog.survey)
        return live.record

    async def _end(
        self, record: Conversation, reason: str, survey: int | None = None
    ) -> Conversation:
        try:
            return await self.store.end_conversation(record.id, reason, survey=survey)
        except Conflict:  # ended meanwhile (another request, another node)
            return await self.store.get_conversation(record.id)

    async def _end_idle(self) -> None:
        """End the conversations idle past the timeout, so memory holds only live ones."""
        for live in [x for x in self._live.values() if self._idle(x)]:
            if not live.lock.locked():
                await self._close(live, "idle")
