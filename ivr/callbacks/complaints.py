"""What follows a complaint (`ivr.nlu.complaint`) in a call or a text conversation, through
the store: the contact marked, the customer's callback raised by COMPLAINT_PRIORITY (the one
booked in the contact, else the number's open one from an earlier contact; one booked after
the complaint at its booking), and the ``complaint.detected`` webhook, all in one
transaction; and the topics each contact asked about, by number, from which a
repeat contact within REPEAT_WINDOW is found.

Event ``complaint.detected``, payload ``{"complaint": <complaint_json>}``: the contact
(`kind` call or conversation, its `id`, `channel`), the customer's `number`, the
`reasons`, what was said (`text`, `score`, `cues`), the `topic` asked about again, and the
`callback` raised (its callback_json), if one was booked by then.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Literal

from ivr.callbacks.service import COMPLAINT_PRIORITY, Callbacks, callback_json, iso
from ivr.nlu.complaint import REPEAT_WINDOW_HOURS, Complaint
from ivr.store import OPEN_STATUSES, Callback, Store, StoreError

log = logging.getLogger(__name__)

EVENT = "complaint.detected"
REPEAT_WINDOW = timedelta(hours=REPEAT_WINDOW_HOURS)

ContactKind = Literal["call", "conversation"]


class ComplaintDesk:
    """The complaint effects for one contact: `kind` and `id` name the call or
    conversation, `channel` is how the customer reached us (voice, web, sms), `number`
    their number as callbacks keep it (E.164; None: unknown, then no repeat contact)."""

    def __init__(
        self,
        callbacks: Callbacks,
        kind: ContactKind,
        id: str,
        channel: str,
        number: str | None,
    ) -> None:
        self.callbacks = callbacks
        self.kind = kind
        self.id = id
        self.channel = channel
        self.number = callbacks.policy.number(number) if number else None
        self.complaint: Complaint | None = None
        self.callback_id: str | None = None  # booked in this contact

    @property
    def store(self) -> Store:
        return self.callbacks.store

    def why(self, detected_at: datetime | None = None) -> dict[str, Any] | None:
        """What the records keep of the complaint (None: none yet)."""
        if self.complaint is None:
            return None
        at = detected_at or self.callbacks.clock()
        return self.complaint.json() | {
            "kind": self.kind,
            "id": self.id,
            "channel": self.channel,
            "detected_at": iso(at, self.callbacks.policy.tz),
        }

    async def earlier_topics(self) -> frozenset[str]:
        """The topics of the number's other contacts within REPEAT_WINDOW (none when the
        store fails: the other signals still work)."""
        if self.number is None:
            return frozenset()
        since = self.callbacks.clock() - REPEAT_WINDOW
        try:
            return frozenset(await self.store.recent_topics(self.number, since, exclude=self.id))
        except StoreError as exc:
            log.error("%s %s: could not read the earlier contacts: %s", self.kind, self.id, exc)
            return frozenset()

    async def topic(self, store: Store, topic: str) -> None:
        """This contact asked about `topic`."""
        if self.number is not None:
            await store.add_contact_topic(
                self.number, topic, channel=self.channel, contact_id=self.id,
                at=self.callbacks.clock(),
            )  # fmt: skip

    async def detected(self, store: Store, complaint: Complaint) -> dict[str, Any]:
        """Mark the contact, raise the callback booked in it, send the webhook: one
        transaction on `store`. Returns the event's payload."""
        self.complaint = complaint
        now = self.callbacks.clock()
        why = self.why(now)
        assert why is not None
        cb: Callback | None = None
        async with store.transaction() as tx:
            await tx.mark_complaint(self.kind, self.id, why)
            callback_id = self.callback_id or await self._open_callback(tx)
            if callback_id is not None:
                cb, changed = await tx.mark_callback_complaint(
                    callback_id, why, COMPLAINT_PRIORITY, now=now
                )
                if changed:
                    await tx.add_event("callback.updated", self._callback(cb), now=now)
            payload = {"complaint": why | {"number": self.number, "callback": self._json(cb)}}
            await tx.add_event(EVENT, payload, now=now)
        self.callbacks.on_events()
        log.info("%s %s: a complaint (%s)", self.kind, self.id, ", ".join(complaint.reasons),
                 extra={"event": "complaint_detected"})  # fmt: skip
        return payload

    async def _open_callback(self, store: Store) -> str | None:
        """The number's open callback (booked in an earlier contact), if any."""
        if self.number is None:
            return None
        found, _ = await store.list_callbacks(OPEN_STATUSES, number=self.number, limit=1)
        return found[0].id if found else None

    def _json(self, cb: Callback | None) -> dict[str, Any] | None:
        return None if cb is None else callback_json(cb, self.callbacks.policy.tz)

    def _callback(self, cb: Callback) -> dict[str, Any]:
        return {"callback": callback_json(cb, self.callbacks.policy.tz)}

    def booked(self, callback_id: str) -> None:
        """A callback was booked in this contact (`Callbacks.book` with `why()` raised it
        if the complaint came first)."""
        self.callback_id = callback_id
