"""The one persistence interface: records, errors and the `Store` protocol.

Every side effect that must survive a restart (call records, agent callbacks, webhook
events) goes through a `Store`. Two implementations behave the same: SQLite (embedded
default) and PostgreSQL (several server processes sharing one database).

Timestamps go in as timezone-aware datetimes (naive ones are refused) and come back as
timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from ivr.store.health import StoreHealth

TurnKind = Literal["prompt", "recognized", "dtmf", "no_input", "no_match"]
CallbackStatus = Literal["scheduled", "claimed", "completed", "cancelled", "expired"]

TURN_KINDS: tuple[TurnKind, ...] = ("prompt", "recognized", "dtmf", "no_input", "no_match")
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


class Store(Protocol):
    """Async persistence. Get one with `ivr.store.open_store(url)`; `close()` it at the end.

    `transaction()` yields a Store bound to one transaction: everything done through it
    commits together (or not at all if the block raises), e.g. a callback change and the
    webhook event announcing it. Inside the block use the yielded object, not the outer store.
    """

    backend: str
    """"sqlite" or "postgresql"."""

    health: StoreHealth
    """How the database has been answering (for readiness); see `ivr.store.health`."""

    async def close(self) -> None: ...

    def transaction(self) -> AbstractAsyncContextManager[Store]: ...

    async def schema_version(self) -> int:
        """The highest migration applied."""
        ...

    async def applied_migrations(self) -> list[tuple[int, str, datetime]]:
        """(version, name, applied_at) of each applied migration, in order."""
        ...

    # calls and turns
    async def start_call(
        self,
        id: str,
        *,
        transport: str,
        caller: str | None = None,
        flow: str | None = None,
        flow_version: str | None = None,
        started_at: datetime | None = None,
        provider_call_id: str | None = None,
        node_id: str | None = None,
    ) -> Call: ...

    async def end_call(self, id: str, end_reason: str, *, ended_at: datetime | None = None) -> Call:
        """NotFound for an unknown call, Conflict if it has already ended."""
        ...

    async def get_call(self, id: str) -> Call: ...

    async def open_calls(self, node_id: str, limit: int = 1000) -> list[Call]:
        """Calls of `node_id` that have not ended, oldest first (after a crash: the calls
        that node left open)."""
        ...

    async def add_turn(
        self,
        call_id: str,
        kind: TurnKind,
        *,
        node: str | None = None,
        text: str | None = None,
        intent: str | None = None,
        confidence: float | None = None,
        at: datetime | None = None,
        audio: str | None = None,
    ) -> TurnRecord:
        """Append a turn; `seq` is the call's next number from 1. NotFound for no such call."""
        ...

    async def list_calls(
        self,
        limit: int = 50,
        cursor: str | None = None,
        caller: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        provider_call_id: str | None = None,
    ) -> tuple[list[Call], str | None]:
        """Calls newest first (started_after <= started_at < started_before); the page and
        the next page's cursor (None on the last). ValueError for a bad cursor or limit."""
        ...

    async def list_turns(self, call_id: str) -> list[TurnRecord]: ...

    async def set_turn_audio(self, call_id: str, seq: int, audio: str | None) -> TurnRecord:
        """Reference (or with None forget) the recording of a turn. NotFound for no such turn."""
        ...

    async def record_survey(self, call_id: str, score: int) -> Call:
        """The caller's survey score (1-5; a later answer replaces an earlier one).
        ValueError for a score out of range, NotFound for no such call."""
        ...

    # analytics: each over the calls that started in [since, until) and their turns

    async def turn_counts(self, since: datetime, until: datetime) -> list[NodeCount]:
        """Turns by node and kind."""
        ...

    async def confidence_counts(self, since: datetime, until: datetime) -> list[ConfidenceCount]:
        """Recognized turns with a confidence, by node and tenth of the confidence range."""
        ...

    async def call_totals(self, since: datetime, until: datetime) -> CallTotals: ...

    async def escalated_calls(
        self, since: datetime, until: datetime, agent_nodes: Collection[str] = ()
    ) -> list[Escalation]:
        """Ended calls that reached an agent: a callback was booked from the call (its
        transcript's call_id), or it ended as `callback_booked`, `callback_not_booked` or
        `handoff: …`, or it had a turn at one of `agent_nodes` (the flow's agent path)."""
        ...

    async def turns_of(self, call_ids: Collection[str]) -> list[TurnRecord]:
        """The turns of these calls, by call and seq."""
        ...

    async def intent_uses(self, since: datetime, until: datetime) -> list[IntentUse]:
        """Intents acted on (recognized or keyed), once per call, node and intent."""
        ...

    async def unrecognized_turns(
        self, since: datetime, until: datetime, node: str | None = None, limit: int = 10000
    ) -> list[TurnRecord]:
        """Speech nothing matched: recognized turns without an intent that the dialog answered
        with a no-match (the next turn), newest first, at most `limit`."""
        ...

    # callbacks
    async def upsert_open_callback(
        self,
        number: str,
        due_at: datetime,
        *,
        reason: str | None = None,
        priority: int = 0,
        max_attempts: int = 3,
        transcript: Any = None,
        now: datetime | None = None,
    ) -> tuple[Callback, bool]:
        """Schedule a callback, or update the number's open one: returns (callback, created).

        An update sets due_at and reason, keeps the higher priority, replaces the transcript
        when one is given and leaves status, attempts and agent alone.
        """
        ...

    async def get_callback(self, id: str) -> Callback: ...

    async def claim(self, id: str, agent: str, *, now: datetime | None = None) -> Callback:
        """scheduled → claimed by `agent` (a new attempt), or a callback the dispatcher
        handed out (claimed, no agent yet) → that attempt is now `agent`'s."""
        ...

    async def complete(
        self, id: str, outcome: str, *, transcript: Any = None, now: datetime | None = None
    ) -> Callback:
        """claimed → completed; the open attempt ends with `outcome`."""
        ...

    async def fail_attempt(
        self, id: str, outcome: str, retry_at: datetime, *, now: datetime | None = None
    ) -> Callback:
        """claimed → the attempt ends with `outcome` (no answer, busy...); the callback is
        scheduled again at `retry_at` if it has attempts left, else expired."""
        ...

    async def list_attempts(self, id: str) -> list[Attempt]:
        """The callback's attempts in order. NotFound for no such callback."""
        ...

    async def reschedule(
        self, id: str, due_at: datetime, *, now: datetime | None = None
    ) -> Callback:
        """scheduled|claimed → scheduled at `due_at` (agent and lease cleared)."""
        ...

    async def cancel(self, id: str, *, now: datetime | None = None) -> Callback:
        """scheduled|claimed → cancelled."""
        ...

    async def expire(self, id: str, *, now: datetime | None = None) -> Callback:
        """scheduled|claimed → expired (e.g. attempts exhausted)."""
        ...

    async def list_callbacks(
        self,
        status: CallbackStatus | Sequence[CallbackStatus] | None = None,
        due_before: datetime | None = None,
        due_after: datetime | None = None,
        number: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Callback], str | None]:
        """Callbacks by (due_at, id); due_after <= due_at < due_before. Returns the page and
        the cursor of the next one (None on the last page). Without transcripts (None):
        `get_callback` has them."""
        ...

    async def claim_due_callbacks(
        self, limit: int, now: datetime, lease: timedelta
    ) -> list[Callback]:
        """For the dispatcher: take up to `limit` callbacks that are scheduled and due, or
        claimed by an earlier dispatch whose lease ran out, with attempts left; they become
        claimed (agent None) until `now + lease`, attempts + 1. Concurrent callers (other
        processes) never get the same callback."""
        ...

    async def expire_overdue(
        self, due_before: datetime, now: datetime, limit: int = 100
    ) -> list[Callback]:
        """For the dispatcher: expire up to `limit` open callbacks nobody is working on that
        are either overdue (due before `due_before`) or out of attempts with the last
        dispatch's lease run out. Agent-claimed ones are left to their agent."""
        ...

    # webhook outbox
    async def add_event(self, type: str, payload: Any, *, now: datetime | None = None) -> Event: ...

    async def claim_due_events(
        self, limit: int, now: datetime, lease: timedelta = ...
    ) -> list[Event]:
        """Take up to `limit` undelivered events due at `now`; each is leased (next attempt
        at `now + lease`, attempts + 1) so concurrent callers never get the same one."""
        ...

    async def mark_delivered(self, id: str, *, now: datetime | None = None) -> Event:
        """Idempotent: delivering an already delivered event keeps the first time."""
        ...

    async def mark_failed(self, id: str, error: str, retry_at: datetime) -> Event:
        """Record a failed attempt; the event is due again at `retry_at`. Conflict if it
        was delivered."""
        ...

    async def get_event(self, id: str) -> Event: ...

    # nodes
    async def node_seen(
        self, node_id: str, *, started: bool = False, now: datetime | None = None
    ) -> Node:
        """The node's heartbeat (`started`: it is starting). A write that reaches the
        database, so it is also the health probe: success clears the store's failures."""
        ...

    async def get_node(self, id: str) -> Node:
        """NotFound for a node that never wrote a heartbeat."""
        ...
