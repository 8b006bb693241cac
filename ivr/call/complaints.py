"""The complaint early warning in a call: the dialog's turns watched (`ivr.nlu.complaint`),
and what a complaint sets off (`ivr.callbacks.complaints`) written through the call's
recorder, after its own records: the call marked, the callback booked in it raised, the
``complaint.detected`` webhook. The live feed gets a ``complaint`` event (the console marks
the call). The topics the caller asks about are kept by number; one asked about by the same
number within a day (in any channel) is a repeat contact.

Nothing of it can end the call: without callbacks or a store there is no watch, and a store
that fails loses only these records (the recorder logs it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ivr.analytics.facts import FlowFacts
from ivr.call.recorder import CallRecorder
from ivr.call.services import CallServices
from ivr.callbacks.complaints import ComplaintDesk
from ivr.dialog.flow import Flow
from ivr.dialog.types import Turn
from ivr.nlu.complaint import Complaint, ComplaintWatch, default_language
from ivr.store import Store

log = logging.getLogger(__name__)

CHANNEL = "voice"


class _Call(Protocol):
    call_id: str
    s: CallServices
    recorder: CallRecorder

    def publish(self, event: dict[str, Any]) -> None: ...


class CallComplaints:
    """One call's watch; `start` it once the dialog has started (it reads the caller's
    earlier contacts), then hand it every `Turn` of the dialog."""

    def __init__(self, call: _Call, flow: Flow, caller: str | None) -> None:
        self.call = call
        self.flow = flow
        self.caller = caller
        self.desk: ComplaintDesk | None = None
        self.watch: ComplaintWatch | None = None

    async def start(self) -> None:
        callbacks = self.call.s.callbacks
        if callbacks is None or self.call.s.store is None:
            return
        try:
            language = await asyncio.to_thread(default_language)  # built once per process
        except Exception:  # no sentence model files...: the behaviour still counts
            log.exception("call %s: the complaint language model failed", self.call.call_id)
            language = None
        desk = ComplaintDesk(callbacks, "call", self.call.call_id, CHANNEL, self.caller)
        topics = await desk.earlier_topics()
        self.watch = ComplaintWatch(language, FlowFacts.from_flow(self.flow).is_topic, topics)
        self.desk = desk

    def turn(self, turn: Turn) -> None:
        watch, desk = self.watch, self.desk
        if watch is None or desk is None:
            return
        before = len(watch.topics)
        found = watch.turn(turn.node, turn.kind, turn.text, turn.intent)
        for topic in watch.topics[before:]:
            self.call.recorder.later(self._topic(desk, topic))
        if found is not None:
            self._found(desk, found, turn.node)

    @staticmethod
    def _topic(desk: ComplaintDesk, topic: str) -> Callable[[Store], Awaitable[None]]:
        async def write(store: Store) -> None:
            await desk.topic(store, topic)

        return write

    def _found(self, desk: ComplaintDesk, found: Complaint, node: str) -> None:
        desk.complaint = found  # a callback booked from now on is raised at its booking
        self.call.publish(
            {"event": "complaint", "node": node, "reasons": list(found.reasons),
             "text": found.text, "topic": found.topic}
        )  # fmt: skip

        async def write(store: Store) -> None:
            await desk.detected(store, found)

        self.call.recorder.later(write)

    def for_booking(self) -> dict[str, Any] | None:
        """The complaint to book a callback with (None: none so far)."""
        return self.desk.why() if self.desk is not None else None

    def booked(self, callback_id: str) -> None:
        if self.desk is not None:
            self.desk.booked(callback_id)
