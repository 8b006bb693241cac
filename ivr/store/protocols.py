"""The `Store` protocol, by area: what each part of the service may ask of the store.

`Store` is all of them together, plus the lifecycle (`close`, `transaction`, the schema's
version). Code that needs one area may take that area's protocol; every `Store` is one.
The records and errors are in `base.py`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from ivr.store.complaint_protocol import ComplaintStore
from ivr.store.contact_protocol import ContactStore

if TYPE_CHECKING:
    from ivr.store.base import (
        Attempt,
        Call,
        Callback,
        CallbackCounts,
        CallbackStatus,
        CallTotals,
        ConfidenceCount,
        Delivery,
        Escalation,
        Event,
        EventState,
        IntentUse,
        Node,
        NodeCount,
        OutboxCounts,
        TurnKind,
        TurnRecord,
    )
    from ivr.store.conversations import Conversation, Message, Sender
    from ivr.store.health import StoreHealth
    from ivr.store.tokens import RevokedToken


class CallStore(Protocol):
    """Call records and their turns."""

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


class AnalyticsStore(Protocol):
    """The analytics queries: each over the calls that started in [since, until) and
    their turns."""

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

    async def abandoned_calls(self, since: datetime, until: datetime) -> list[str]:
        """Ids of the ended calls the caller hung up on after a no-match (`caller_hangup`,
        and the call's last turn of input, prompts aside, was a no-match)."""
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


class CallbackStore(Protocol):
    """Agent callbacks and their attempts."""

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

    async def callback_counts(self, overdue_before: datetime) -> CallbackCounts:
        """How many callbacks are open, by status, and how many of the scheduled ones were
        due before `overdue_before` (for metrics: an index-only count)."""
        ...


class OutboxStore(Protocol):
    """The webhook outbox."""

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

    async def list_events(
        self,
        state: EventState | None = None,
        type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Event], str | None]:
        """Events newest first (then id), filtered, a page at a time (the delivery log)."""
        ...

    async def replay_event(self, id: str, *, now: datetime | None = None) -> Event:
        """Due again at `now`, delivered or not (a parked event gets one more attempt; a
        delivered one is sent again, with the same id)."""
        ...

    async def replay_parked(self, *, now: datetime | None = None) -> int:
        """Every parked event due again at `now`; how many."""
        ...

    async def record_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Append POSTs of events to the delivery log."""
        ...

    async def list_deliveries(self, event_id: str, limit: int = 100) -> list[Delivery]:
        """An event's POSTs, oldest first (the last `limit`)."""
        ...

    async def outbox_counts(self, now: datetime, parked_from: datetime) -> OutboxCounts:
        """How many undelivered events are due at `now`, due later, and parked (due at or
        after `parked_from`, the deliverer's parking time); for metrics."""
        ...


class NodeStore(Protocol):
    """Server processes' heartbeats."""

    async def node_seen(
        self, node_id: str, *, started: bool = False, now: datetime | None = None
    ) -> Node:
        """The node's heartbeat (`started`: it is starting). A write that reaches the
        database, so it is also the health probe: success clears the store's failures."""
        ...

    async def get_node(self, id: str) -> Node:
        """NotFound for a node that never wrote a heartbeat."""
        ...


class TokenStore(Protocol):
    """Revoked API tokens, by SHA-256 (the tokens themselves are configured)."""

    async def revoke_token(
        self,
        sha256: str,
        *,
        name: str | None = None,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> tuple[RevokedToken, bool]:
        """Its record, and whether this call revoked it (False: it already was)."""
        ...

    async def revoked_tokens(self) -> list[RevokedToken]:
        """Every revoked token, oldest revocation first."""
        ...


class ConversationStore(Protocol):
    """Text conversations (`ivr.chat`) and their messages; ids are UUIDs (any other id is
    NotFound)."""

    async def start_conversation(
        self,
        *,
        channel: str,
        number: str | None = None,
        flow: str | None = None,
        flow_version: str | None = None,
        started_at: datetime | None = None,
    ) -> Conversation: ...

    async def add_message(
        self,
        conversation_id: str,
        sender: Sender,
        text: str,
        *,
        node: str | None = None,
        quick_replies: tuple[str, ...] = (),
        at: datetime | None = None,
        kind: str | None = None,
        intent: str | None = None,
    ) -> Message:
        """The next message (seq 1, 2, ...); the conversation's last_message_at is its time.
        A customer's has the `kind` and `intent` the dialog took it as."""
        ...

    async def end_conversation(
        self,
        id: str,
        end_reason: str,
        *,
        survey: int | None = None,
        ended_at: datetime | None = None,
    ) -> Conversation:
        """Conflict when it has ended already."""
        ...

    async def get_conversation(self, id: str) -> Conversation: ...

    async def open_conversation(self, channel: str, number: str) -> Conversation | None:
        """The number's latest conversation on `channel` that has not ended, if any."""
        ...

    async def open_conversations(self, limit: int = 1000) -> list[Conversation]:
        """Those not ended, oldest first (a restarted server ends them: their dialog state
        was in the process)."""
        ...

    async def recent_conversations(
        self, ended_after: datetime, limit: int = 100
    ) -> list[tuple[Conversation, Message | None]]:
        """Those not ended and those ended after `ended_after`, latest message first, each
        with its last message (None before the first): the console's live page."""
        ...

    async def list_messages(self, conversation_id: str) -> list[Message]: ...


class Store(
    CallStore,
    AnalyticsStore,
    CallbackStore,
    OutboxStore,
    NodeStore,
    TokenStore,
    ConversationStore,
    ComplaintStore,
    ContactStore,
    Protocol,
):
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
