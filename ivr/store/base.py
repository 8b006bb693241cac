"""The one persistence interface: records, errors and the `Store` protocol (its areas are
in `protocols.py`).

Every side effect that must survive a restart (call records, agent callbacks, webhook
events) goes through a `Store`. Two implementations behave the same: SQLite (embedded
default) and PostgreSQL (several server processes sharing one database).

Timestamps go in as timezone-aware datetimes (naive ones are refused) and come back as
timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ivr.store.protocols import (
    AnalyticsStore,
    CallbackStore,
    CallStore,
    NodeStore,
    OutboxStore,
    Store,
)
from ivr.transcript import TURN_KINDS, TurnKind

__all__ = [
    "CALLBACK_STATUSES",
    "EVENT_STATES",
    "OPEN_STATUSES",
    "PARKED_UNTIL",
    "TURN_KINDS",
    "AnalyticsStore",
    "Attempt",
    "Call",
    "CallStore",
    "CallTotals",
    "Callback",
    "CallbackCounts",
    "CallbackStatus",
    "CallbackStore",
    "ConfidenceCount",
    "Conflict",
    "Delivery",
    "Escalation",
    "Event",
    "EventState",
    "IntentUse",
    "Node",
    "NodeCount",
    "NodeStore",
    "NotFound",
    "OutboxCounts",
    "OutboxStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TurnKind",
    "TurnRecord",
]

CallbackStatus = Literal["scheduled", "claimed", "completed", "cancelled", "expired"]

CALLBACK_STATUSES: tuple[CallbackStatus, ...] = (
    "scheduled",
    "claimed",
    "completed",
    "cancelled",
    "expired",
)
OPEN_STATUSES: tuple[CallbackStatus, ...] = ("scheduled", "claimed")
"""At most one callback per number is in one of these states (a partial unique index)."""


class StoreError(Exception):
    """Base of the store's own errors."""


class NotFound(StoreError, LookupError):
    """No record with that id."""

    def __init__(self, kind: str, id: str) -> None:
        super().__init__(f"{kind} {id!r} not found")
        self.kind = kind
        self.id = id


class StoreUnavailable(StoreError):
    """The database failed the operation (its driver's error: disk I/O, disk full, a file it
    cannot write, a lock held too long, a lost connection, a corrupt file...). The message is
    the driver's; `kind` its error class. Nothing here says the record was or was not
    written; a later attempt may succeed."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class Conflict(StoreError):
    """The record exists but is not in a state that allows the change."""

    def __init__(self, kind: str, id: str, action: str, status: str) -> None:
        super().__init__(f"cannot {action} {kind} {id!r}: it is {status}")
        self.kind = kind
        self.id = id
        self.action = action
        self.status = status


@dataclass(frozen=True, slots=True)
class Call:
    id: str
    caller: str | None
    transport: str
    flow: str | None
    flow_version: str | None
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    survey: int | None = None
    """The caller's post-call survey score, 1-5 (None: not asked or not answered)."""
    provider_call_id: str | None = None
    """The far end's id for the call (Twilio callSid, AudioSocket UUID), if it gave one."""
    node_id: str | None = None
    """The server process (IVR_NODE_ID) that served the call."""
    complaint: Any = None
    """Why the call was found to be a complaint (`ivr.nlu.complaint`, JSON); None: not one."""


@dataclass(frozen=True, slots=True)
class Node:
    """A server process (IVR_NODE_ID) writing to the store, and when it last wrote."""

    id: str
    started_at: datetime
    """When the node last started (the previous run's calls were closed then)."""
    seen_at: datetime
    """Its last heartbeat (the store's health probe)."""


@dataclass(frozen=True, slots=True)
class TurnRecord:
    call_id: str
    seq: int
    at: datetime
    node: str | None
    kind: TurnKind
    text: str | None
    intent: str | None
    confidence: float | None
    audio: str | None = None
    """Path of the utterance's recording relative to the data directory (kept only for
    utterances nothing matched), else None."""


@dataclass(frozen=True, slots=True)
class Callback:
    id: str
    number: str
    due_at: datetime
    status: CallbackStatus
    reason: str | None
    priority: int
    attempts: int
    max_attempts: int
    agent: str | None
    outcome: str | None
    transcript: Any
    """JSON value (None when absent)."""
    lease_until: datetime | None
    """Set by `claim_due_callbacks`: after it the dispatcher's claim lapses and is retaken."""
    created_at: datetime
    updated_at: datetime
    complaint: Any = None
    """The complaint of the contact it was booked from (JSON; it raised the priority)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt to reach a callback's caller, and how it ended (None while open)."""

    callback_id: str
    attempt: int
    started_at: datetime
    taken_by: Literal["dispatcher", "agent"]
    agent: str | None
    ended_at: datetime | None
    outcome: str | None


PARKED_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
"""`next_attempt_at` of a parked event (out of attempts): never due again on its own."""

EventState = Literal["pending", "delivered", "parked"]
EVENT_STATES: tuple[EventState, ...] = ("pending", "delivered", "parked")


@dataclass(frozen=True, slots=True)
class Event:
    """A webhook event in the outbox."""

    id: str
    type: str
    payload: Any
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None

    @property
    def state(self) -> EventState:
        if self.delivered_at is not None:
            return "delivered"
        return "parked" if self.next_attempt_at >= PARKED_UNTIL else "pending"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST of an event to one endpoint (the webhook delivery log)."""

    event_id: str
    url: str
    at: datetime
    status: int | None
    """The HTTP status; None when there was no answer (connection error, timeout)."""
    error: str | None
    """None when the endpoint accepted the event (2xx)."""
    duration_ms: int


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """The outbox's undelivered events (`OutboxStore.outbox_counts`)."""

    due: int
    """Due now: waiting for the deliverer (its backlog)."""
    pending: int
    """Not due yet: in flight (leased) or waiting for a retry."""
    parked: int
    """Out of attempts: due only at the parking time (never, unless replayed)."""


@dataclass(frozen=True, slots=True)
class CallbackCounts:
    """The open callbacks (`CallbackStore.callback_counts`)."""

    scheduled: int
    claimed: int
    """By an agent, or handed out by the dispatcher (agent None)."""
    overdue: int
    """Scheduled ones whose due time is past the given limit: nobody has taken them."""


# --- analytics records (what the analytics queries return; see ivr.analytics) -------------
# Every analytics query covers the calls that started in [since, until) and their turns.


@dataclass(frozen=True, slots=True)
class NodeCount:
    """How many turns of one kind happened at one node."""

    node: str | None
    kind: TurnKind
    count: int


@dataclass(frozen=True, slots=True)
class ConfidenceCount:
    """Recognized turns at one node whose confidence fell in bucket `bucket` (0-9):
    [bucket/10, (bucket+1)/10), the last one including 1.0."""

    node: str | None
    bucket: int
    count: int


@dataclass(frozen=True, slots=True)
class CallTotals:
    calls: int
    ended: int
    handling_seconds: float | None
    """Average ended_at - started_at of the ended calls (None without any)."""
    survey: dict[int, int]
    """Survey score → number of calls that gave it (scores nobody gave are absent)."""


@dataclass(frozen=True, slots=True)
class Escalation:
    """An ended call that reached an agent (see `Store.escalated_calls`)."""

    call_id: str
    end_reason: str | None
    callback_reason: str | None
    """The reason of the callback booked from the call (None: it booked none)."""


@dataclass(frozen=True, slots=True)
class IntentUse:
    """A call acted on `intent` at `node` (once per call, node and intent)."""

    call_id: str
    node: str | None
    intent: str
    started_at: datetime
