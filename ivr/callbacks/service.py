"""The callback workflow over the store. Every change is one transaction with its event.

Events (outbox → webhooks), payload ``{"callback": <callback_json>}``:
``callback.scheduled`` (a new booking), ``callback.updated`` (a repeat caller's new request,
a reschedule, or a failed attempt that will be retried), ``callback.due`` (the dispatcher
hands it out: dial now), ``callback.claimed``, ``callback.completed``, ``callback.cancelled``,
``callback.expired``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ivr.callerid import DEFAULT_REGION, caller_number
from ivr.config import Settings
from ivr.store import Attempt, Call, Callback, Conflict, Store, TurnRecord

RETRY_OUTCOMES = frozenset({"no_answer", "busy", "voicemail", "failed"})
"""Outcomes of an attempt that did not reach the caller: retried while attempts are left."""
FINAL_OUTCOMES = frozenset({"resolved", "unresolved", "wrong_number", "declined"})
OUTCOMES = tuple(sorted(RETRY_OUTCOMES | FINAL_OUTCOMES))
VIP_PRIORITY = 10
COMPLAINT_PRIORITY = 5  # added for a complaint (`ivr.callbacks.complaints`): a VIP's is 15


class InvalidNumber(ValueError):
    """A callback to something that is not a telephone number (`caller_number`'s rule)."""

    def __init__(self, number: str) -> None:
        shown = number if len(number) <= 40 else number[:39] + "…"
        super().__init__(
            f"cannot book a callback to {shown!r}: not a telephone number"
            " (an optional + and 3 to 15 digits)"
        )
        self.number = number


class AlreadyOpen(Conflict):
    """A new callback was asked for (`book(..., only_new=True)`) but the number has an open
    one: nothing was changed."""

    def __init__(self, cb: Callback) -> None:
        super().__init__("callback", cb.id, "book another", cb.status)
        self.callback = cb
        self.args = (
            f"{cb.number} already has an open callback, {cb.id} ({cb.status}):"
            " reschedule or cancel that one",
        )


@dataclass(frozen=True)
class CallbackPolicy:
    tz: ZoneInfo
    max_attempts: int = 3
    retry_after: timedelta = timedelta(minutes=30)
    expiry: timedelta = timedelta(hours=72)
    lease: timedelta = timedelta(minutes=10)
    vip_numbers: frozenset[str] = frozenset()
    region: str = DEFAULT_REGION  # whose national numbers those without + are (E.164)

    @classmethod
    def from_settings(cls, s: Settings) -> CallbackPolicy:
        return cls(
            tz=ZoneInfo(s.timezone),
            max_attempts=s.callback_max_attempts,
            retry_after=timedelta(minutes=s.callback_retry_minutes),
            expiry=timedelta(hours=s.callback_expiry_hours),
            lease=timedelta(seconds=s.dispatch_lease_seconds),
            vip_numbers=frozenset(s.vip_numbers),
            region=s.default_region,
        )

    def __post_init__(self) -> None:  # the list as written, in the form numbers are booked
        vips = (self.number(n) or n for n in self.vip_numbers)
        object.__setattr__(self, "vip_numbers", frozenset(vips))

    def number(self, raw: str | None) -> str | None:
        """`raw` as numbers are kept (E.164, national ones read as `region`'s); None when it
        is not a number."""
        return caller_number(raw, self.region)

    def priority(self, number: str, segment: str | None = None) -> int:
        """VIP callers (config list, or a "vip" segment from the account) come first."""
        vip = self.number(number) in self.vip_numbers
        return VIP_PRIORITY if vip or segment == "vip" else 0


def iso(value: datetime | None, tz: ZoneInfo) -> str | None:
    """ISO 8601 with the offset of the configured zone (what integrators display); UTC for
    instants the zone cannot show (near year 1 or 9999, or before its offsets were whole
    minutes)."""
    if value is None:
        return None
    try:
        local = value.astimezone(tz)
    except OverflowError:
        return value.astimezone(UTC).isoformat()
    offset = local.utcoffset()
    if offset is not None and offset.seconds % 60:  # LMT offsets such as -04:56:02
        return value.astimezone(UTC).isoformat()
    return local.isoformat()


def callback_json(
    cb: Callback, tz: ZoneInfo, attempts: Iterable[Attempt] | None = None
) -> dict[str, Any]:
    """The API and webhook representation; with `attempts`, the detail view."""
    out: dict[str, Any] = {
        "id": cb.id,
        "number": cb.number,
        "due_at": iso(cb.due_at, tz),
        "status": cb.status,
        "reason": cb.reason,
        "priority": cb.priority,
        "attempts": cb.attempts,
        "max_attempts": cb.max_attempts,
        "agent": cb.agent,
        "outcome": cb.outcome,
        "created_at": iso(cb.created_at, tz),
        "updated_at": iso(cb.updated_at, tz),
        "complaint": cb.complaint,
    }
    if attempts is not None:
        out["transcript"] = cb.transcript
        out["attempt_log"] = [
            {
                "attempt": a.attempt,
                "taken_by": a.taken_by,
                "agent": a.agent,
                "started_at": iso(a.started_at, tz),
                "ended_at": iso(a.ended_at, tz),
                "outcome": a.outcome,
            }
            for a in attempts
        ]
    return out


def call_json(
    call: Call, tz: ZoneInfo, turns: Iterable[TurnRecord] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id,
        "provider_call_id": call.provider_call_id,
        "caller": call.caller,
        "transport": call.transport,
        "flow": call.flow,
        "flow_version": call.flow_version,
        "started_at": iso(call.started_at, tz),
        "ended_at": iso(call.ended_at, tz),
        "end_reason": call.end_reason,
        "complaint": call.complaint,
    }
    if turns is not None:
        out["turns"] = [
            {
                "seq": t.seq,
                "at": iso(t.at, tz),
                "node": t.node,
                "kind": t.kind,
                "text": t.text,
                "intent": t.intent,
                "confidence": t.confidence,
            }
            for t in turns
        ]
    return out


class Callbacks:
    """Callback operations for the call pipeline, the API and the dispatcher."""

    def __init__(
        self,
        store: Store,
        policy: CallbackPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.on_events: Callable[[], None] = lambda: None
        """Called after a change and its events are committed (e.g. wake the webhook sender)."""

    def _event(self, cb: Callback) -> dict[str, Any]:
        return {"callback": callback_json(cb, self.policy.tz)}

    async def book(
        self,
        number: str,
        due_at: datetime,
        *,
        reason: str | None,
        segment: str | None = None,
        transcript: Any = None,
        only_new: bool = False,
        complaint: Any = None,
    ) -> tuple[Callback, bool]:
        """Schedule a callback, or update the number's open one: (callback, created).
        `number` as a caller ID is checked and written in E.164 (`CallbackPolicy.number`), so
        each spelling of a number is its one open callback; InvalidNumber when it is none.
        `only_new`: AlreadyOpen instead of updating an open one (the change rolled back).
        `complaint`: the booking contact's complaint (`ivr.callbacks.complaints`), which
        raises the priority by COMPLAINT_PRIORITY (once per callback)."""
        valid = self.policy.number(number)
        if valid is None:  # an agent would dial it: only a number is booked
            raise InvalidNumber(number)
        number = valid
        now = self.clock()
        async with self.store.transaction() as tx:
            cb, created = await tx.upsert_open_callback(
                number,
                due_at,
                reason=reason,
                priority=self.policy.priority(number, segment),
                max_attempts=self.policy.max_attempts,
                transcript=transcript,
                now=now,
            )
            if only_new and not created:
                raise AlreadyOpen(cb)  # leaves the transaction: the update is not kept
            if complaint is not None:
                cb, _ = await tx.mark_callback_complaint(
                    cb.id, complaint, COMPLAINT_PRIORITY, now=now
                )
            kind = "callback.scheduled" if created else "callback.updated"
            await tx.add_event(kind, self._event(cb), now=now)
        self.on_events()
        return cb, created

    async def get(self, id: str) -> tuple[Callback, list[Attempt]]:
        return await self.store.get_callback(id), await self.store.list_attempts(id)

    async def claim(self, id: str, agent: str) -> Callback:
        now = self.clock()
        async with self.store.transaction() as tx:
            cb = await tx.claim(id, agent, now=now)
            await tx.add_event("callback.claimed", self._event(cb), now=now)
        self.on_events()
        return cb

    async def complete(self, id: str, outcome: str) -> Callback:
        """End the current attempt: a final outcome completes the callback; a retry outcome
        (no answer, busy...) schedules it again, or expires it when out of attempts."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        now = self.clock()
        async with self.store.transaction() as tx:
            if outcome in RETRY_OUTCOMES:
                cb = await tx.fail_attempt(id, outcome, now + self.policy.retry_after, now=now)
                kind = "callback.updated" if cb.status == "scheduled" else "callback.expired"
            else:
                cb = await tx.complete(id, outcome, now=now)
                kind = "callback.completed"
            await tx.add_event(kind, self._event(cb), now=now)
        self.on_events()
        return cb

    async def reschedule(self, id: str, due_at: datetime) -> Callback:
        now = self.clock()
        async with self.store.transaction() as tx:
            cb = await tx.reschedule(id, due_at, now=now)
            await tx.add_event("callback.updated", self._event(cb), now=now)
        self.on_events()
        return cb

    async def cancel(self, id: str) -> Callback:
        now = self.clock()
        async with self.store.transaction() as tx:
            cb = await tx.cancel(id, now=now)
            await tx.add_event("callback.cancelled", self._event(cb), now=now)
        self.on_events()
        return cb

    async def dispatch_due(self, limit: int = 50) -> list[Callback]:
        """Hand out due callbacks (``callback.due``); safe to run in several processes."""
        now = self.clock()
        async with self.store.transaction() as tx:
            due = await tx.claim_due_callbacks(limit, now, self.policy.lease)
            for cb in due:
                await tx.add_event("callback.due", self._event(cb), now=now)
        self.on_events()
        return due

    async def expire_overdue(self, limit: int = 100) -> list[Callback]:
        now = self.clock()
        async with self.store.transaction() as tx:
            gone = await tx.expire_overdue(now - self.policy.expiry, now, limit)
            for cb in gone:
                await tx.add_event("callback.expired", self._event(cb), now=now)
        self.on_events()
        return gone
