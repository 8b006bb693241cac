"""One text conversation on the dialog engine: the customer's messages in, the bot's out.

The engine is the one calls use (`ivr.dialog.engine`), on the same flow: a message is a
`Recognized` utterance at full confidence (typed words are not misheard: no "Did you say
...?"), or a `DtmfEntered` entry when it is only keys ("2", "1234"), and the engine's
actions are carried out here as the call pipeline does for calls: lookups through the same
fulfillment, bookings through the same callback service (one open callback per number, so
a callback booked in a chat is the one a call would update), prompts as text
(`ivr.chat.text`). Transfer nodes have no call to put through: they fail at once to their
`failed` node (the flow's callback). Nothing waits for "no input": a customer answers when
they like, and an idle conversation just ends (`ivr.chat.service`).

At a question marked ``sensitive: true`` the customer's message is kept masked (`kept`:
the history, as a call's transcript), and the bot's messages show a read-back of such an
answer masked (`Say.as_kept`): in a chat what is shown is what is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ivr.callbacks import Callbacks, InvalidNumber
from ivr.chat.complaints import ChatComplaints
from ivr.chat.text import quick_replies, typed_keys, written
from ivr.dialog.engine import DialogEngine
from ivr.dialog.sensitive import for_agent, mask, redact
from ivr.dialog.state import DialogState
from ivr.dialog.types import (
    Action,
    BookCallback,
    Disconnect,
    DtmfEntered,
    Event,
    Fetch,
    FetchDone,
    Handoff,
    Listen,
    Recognized,
    Say,
    Start,
    Survey,
    Transfer,
    TransferDone,
    Turn,
)

log = logging.getLogger(__name__)

MAX_STEPS = 64  # lookups and bookings one message may chain before it is a flow bug


class Lookups(Protocol):
    """What the dialog uses of `ivr.fulfillment.Fulfillment`."""

    def segment(self, variables: dict[str, str]) -> str | None: ...

    async def fetch(self, action: Fetch) -> FetchDone: ...


@dataclass(frozen=True)
class BotMessage:
    """One message of the bot: its text, the node it was said at, and the answers offered
    as quick replies (on the last message before the bot waits for the customer)."""

    text: str
    node: str
    quick_replies: tuple[str, ...] = ()


@dataclass
class TextDialog:
    """A conversation's dialog state and what carries out its engine's actions."""

    conversation_id: str
    channel: str
    engine: DialogEngine
    lookups: Lookups
    callbacks: Callbacks | None
    transcript: list[dict[str, Any]] = field(default_factory=list)  # kept with a callback
    survey: int | None = None
    callback_id: str | None = None  # the callback booked in this conversation, if any
    complaints: ChatComplaints | None = None  # the complaint early warning (with callbacks)
    state: DialogState = field(init=False)  # set by `start`

    @property
    def ended(self) -> bool:
        return self.state.ended

    @property
    def end_reason(self) -> str | None:
        return self.state.end_reason

    async def start(self, number: str | None) -> list[BotMessage]:
        """The flow's opening (the greeting and its first question), for `number`'s customer
        (their number is the caller ID: lookups by caller, the callback number offered)."""
        if self.callbacks is not None:  # its watch (`ivr.chat.complaints`) sees every turn
            self.complaints = ChatComplaints(
                self.callbacks, self.engine.flow, self.conversation_id, self.channel, number
            )
            await self.complaints.start()
        self.state, actions = self.engine.start(Start(caller=number))
        return await self._run(actions)

    def kept(self, text: str) -> str:
        """The customer's message `text` as the history keeps it: masked when it answers a
        question marked sensitive (keys masked, or the digits and number words in words)."""
        if not self.engine.flow.is_sensitive(self.state.node):
            return text
        keys = typed_keys(text)
        return mask(keys) if keys is not None else redact(text)

    async def message(self, text: str) -> list[BotMessage]:
        """The bot's answer to one customer message; [] once the conversation has ended."""
        if self.state.ended:
            return []
        keys = typed_keys(text)
        event: Event = DtmfEntered(keys) if keys is not None else Recognized(text.strip(), 1.0)
        return await self._run(self.engine.handle(self.state, event))

    async def _run(self, actions: list[Action]) -> list[BotMessage]:
        out: list[BotMessage] = []
        for _ in range(MAX_STEPS):
            answer: Event | None = None
            for action in actions:
                follow = await self._act(action, out)
                answer = follow or answer
            if answer is None:
                return out
            actions = self.engine.handle(self.state, answer)
        log.error("conversation %s: more than %d steps for one message", self.conversation_id,
                  MAX_STEPS)  # fmt: skip
        return out

    async def _act(self, action: Action, out: list[BotMessage]) -> Event | None:
        """Carry out one action; the event that answers it (a lookup's result...), if any."""
        if isinstance(action, Say):
            out.append(BotMessage(written(action.as_kept()), self.state.node))
        elif isinstance(action, Listen):
            if out:  # the choices go with the question just asked
                last = out[-1]
                replies = quick_replies(self.engine.flow, self.state)
                out[-1] = BotMessage(last.text, last.node, replies)
        elif isinstance(action, Fetch):
            return await self.lookups.fetch(action)
        elif isinstance(action, BookCallback):
            return await self._book(action)
        elif isinstance(action, Transfer):
            return TransferDone(False, "a text conversation has no call to transfer")
        elif isinstance(action, Turn):
            turn = {"node": action.node, "kind": action.kind, "text": action.text}
            self.transcript.append(turn | {"intent": action.intent, "channel": self.channel})
            if self.complaints is not None:
                await self.complaints.turn(action)
        elif isinstance(action, Survey):
            self.survey = action.score
        elif isinstance(action, Handoff | Disconnect):
            pass  # the state says the dialog ended, and why
        return None

    async def _book(self, action: BookCallback) -> FetchDone:
        if self.callbacks is None:
            return FetchDone(error="callbacks are not configured")
        given = for_agent(action.variables, self.engine.flow.sensitive_vars)
        transcript = {
            "conversation_id": self.conversation_id,
            "channel": self.channel,
            "reason": action.reason,
            "intents": list(action.intents),
            "variables": given,
            "turns": list(self.transcript),
        }
        try:
            cb, _ = await self.callbacks.book(
                action.number,
                datetime.fromisoformat(action.due_at),
                reason=action.reason,
                segment=self.lookups.segment(action.variables),
                transcript=transcript,
                complaint=self.complaints.for_booking() if self.complaints else None,
            )
        except InvalidNumber as exc:  # no number to call: the customer reads the fallback
            log.warning("conversation %s: %s", self.conversation_id, exc)
            return FetchDone(error=f"booking failed: {exc}")
        except Exception as exc:  # the store is down: the customer reads the fallback
            log.exception("conversation %s: booking a callback failed", self.conversation_id)
            return FetchDone(error=f"booking failed: {exc}")
        self.callback_id = cb.id
        if self.complaints is not None:  # a complaint after this raises it
            self.complaints.booked(cb.id)
        return FetchDone({"callback_id": cb.id})
