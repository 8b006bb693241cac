"""Calls in progress: admission against the concurrent-call limit, and each call's live
event feed (transcript) for subscribers such as `ivr dial` or a console.

A call has the server's id; the far end's id for it (a Twilio callSid, an AudioSocket UUID)
is an alias. Two live calls never share a far-end id: the second is refused, so one caller
can never write into, or hang up, another's call. A feed can be asked for by either id, and
before the call starts (a simulator that picks the callSid itself subscribes first).
"""

from __future__ import annotations

import asyncio
import enum
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ivr.bus import Event, Overflow

_END = object()
LIVE_INFO = ("caller", "transport", "flow", "flow_version")
"""What a call's `call_started` event says about it, kept for the list of calls in progress."""


@dataclass
class CallFeed:
    call_id: str
    events: list[Event] = field(default_factory=list)
    subscribers: list[asyncio.Queue[object]] = field(default_factory=list)
    ended: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    started_at: float | None = None
    node: str | None = None  # the dialog node of the latest event that names one
    provider_call_id: str | None = None  # the far end's id, an alias of call_id


class Admission(enum.Enum):
    ADMITTED = "admitted"
    BUSY = "busy"  # at the concurrent-call limit
    DUPLICATE = "duplicate"  # a live call already has this far-end id


@dataclass
class _Watcher:
    limit: int
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    overflowed: bool = False


class CallRegistry:
    def __init__(self, max_calls: int, keep_finished: int = 1000) -> None:
        self.max_calls = max_calls
        self._active: set[str] = set()
        self._feeds: OrderedDict[str, CallFeed] = OrderedDict()
        self._aliases: dict[str, str] = {}  # far-end id → call id, while its feed is kept
        self._live_provider_ids: dict[str, str] = {}  # far-end id → call id, live calls only
        self._keep = keep_finished
        self._watchers: list[_Watcher] = []  # subscribers to every call's events (consoles)
        self.total = 0
        self.rejected = 0
        self.underruns = 0
        self.frames_sent = 0
        # Recent turns: from the caller's input being decided (end of speech detected, keys
        # complete) to the first frame of the answer, in seconds.
        self.turn_latencies: deque[float] = deque(maxlen=10_000)

    @property
    def active(self) -> int:
        return len(self._active)

    def admit(self, call_id: str, provider_call_id: str | None = None) -> Admission:
        """Take a slot for `call_id` (known by the far end as `provider_call_id`)."""
        if call_id in self._active or (
            provider_call_id is not None and provider_call_id in self._live_provider_ids
        ):
            self.rejected += 1
            return Admission.DUPLICATE
        if len(self._active) >= self.max_calls:
            self.rejected += 1
            self._link(call_id, provider_call_id)  # its feed still tells it was busy
            return Admission.BUSY
        self._active.add(call_id)
        self.total += 1
        self._link(call_id, provider_call_id)
        if provider_call_id is not None:
            self._live_provider_ids[provider_call_id] = call_id
        return Admission.ADMITTED

    def _link(self, call_id: str, provider_call_id: str | None) -> None:
        """The call's feed, reachable by both its ids; early subscribers move onto it."""
        feed = self._feed(call_id)
        if provider_call_id is None:
            return
        early = self._feeds.get(provider_call_id)
        if early is not None and early is not feed and provider_call_id not in self._active:
            del self._feeds[provider_call_id]
            feed.subscribers.extend(early.subscribers)  # subscribed before the call came
        self._aliases[provider_call_id] = call_id
        feed.provider_call_id = provider_call_id

    def release(
        self,
        call_id: str,
        frames_sent: int = 0,
        underruns: int = 0,
        turn_latencies: list[float] | None = None,
    ) -> None:
        self._active.discard(call_id)
        feed = self._feeds.get(call_id)
        if feed is not None and feed.provider_call_id is not None:
            self._live_provider_ids.pop(feed.provider_call_id, None)
        self.frames_sent += frames_sent
        self.underruns += underruns
        self.turn_latencies.extend(turn_latencies or [])

    def stats(self) -> dict[str, int | float | None]:
        lat = sorted(self.turn_latencies)

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None

        return {
            "active_calls": self.active,
            "calls_total": self.total,
            "calls_rejected": self.rejected,
            "frames_sent": self.frames_sent,
            "underruns": self.underruns,
            "turn_latency_p50_ms": pct(0.5),
            "turn_latency_p95_ms": pct(0.95),
        }

    def _feed(self, call_id: str) -> CallFeed:
        """The feed of a call (by either of its ids), created if it is not known yet."""
        feed = self._feeds.get(self._aliases.get(call_id, call_id))
        if feed is None:
            feed = self._feeds[call_id] = CallFeed(call_id)
            while len(self._feeds) > self._keep + len(self._active):
                oldest = next(iter(self._feeds))
                if oldest in self._active:
                    break
                gone = self._feeds.pop(oldest)
                if gone.provider_call_id is not None:
                    self._aliases.pop(gone.provider_call_id, None)
        return feed

    def publish(self, call_id: str, event: Event) -> None:
        feed = self._feed(call_id)
        feed.events.append(event)
        if event.get("event") == "call_started":
            feed.info = {k: event.get(k) for k in LIVE_INFO}
            feed.started_at = event.get("at")
        if event.get("node"):
            feed.node = event["node"]
        for q in feed.subscribers:
            q.put_nowait(event)
        if self._watchers:
            self._tell_watchers({**event, "call_id": call_id})

    def _tell_watchers(self, event: Event) -> None:
        for w in self._watchers:
            if w.overflowed:
                continue
            if w.queue.qsize() >= w.limit:
                # Never block or grow the call's path for a slow console: cut it off instead.
                w.overflowed = True
                w.queue.put_nowait(Overflow)
            else:
                w.queue.put_nowait(event)

    def live_calls(self) -> list[dict[str, Any]]:
        """The calls in progress, oldest first: who, how, which flow, where in it now."""
        out = []
        for call_id in self._active:
            feed = self._feeds.get(call_id)
            if feed is None or feed.ended:
                continue
            out.append(
                {
                    "id": call_id,
                    **{k: feed.info.get(k) for k in LIVE_INFO},
                    "started_at": feed.started_at,
                    "node": feed.node,
                    "events": len(feed.events),
                    "last_event_at": feed.events[-1].get("at") if feed.events else None,
                }
            )
        return sorted(out, key=lambda c: (c["started_at"] or 0.0, c["id"]))

    async def watch(self, max_queue: int = 10_000) -> AsyncGenerator[Event, None]:
        """Every call's events, each with its `call_id`: first those so far of the calls in
        progress, then live ones, until the consumer stops. Raises Overflow when the
        consumer falls `max_queue` events behind."""
        watcher = _Watcher(max_queue)
        feeds = [f for c in self._active if (f := self._feeds.get(c)) and not f.ended]
        feeds.sort(key=lambda f: (f.started_at or 0.0, f.call_id))
        backlog = [{**event, "call_id": f.call_id} for f in feeds for event in f.events]
        self._watchers.append(watcher)  # no await since the snapshot: nothing is missed
        try:
            for event in backlog:
                yield event
            while True:
                item = await watcher.queue.get()
                if item is Overflow:
                    raise Overflow(f"more than {max_queue} events behind")
                assert isinstance(item, dict)
                yield item
        finally:
            self._watchers.remove(watcher)

    def end(self, call_id: str) -> None:
        feed = self._feed(call_id)
        feed.ended = True
        for q in feed.subscribers:
            q.put_nowait(_END)

    async def subscribe(self, call_id: str) -> AsyncIterator[Event]:
        """The call's events so far, then live ones until it ends. A subscriber may come
        before the call starts (a simulator that picks the call id itself)."""
        feed = self._feed(call_id)
        queue: asyncio.Queue[object] = asyncio.Queue()
        for event in feed.events:
            queue.put_nowait(event)
        if feed.ended:
            queue.put_nowait(_END)
        feed.subscribers.append(queue)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                assert isinstance(item, dict)
                yield item
        finally:  # from the call's feed: an early subscriber's queue moved onto it
            for f in (feed, self._feeds.get(self._aliases.get(call_id, call_id))):
                if f is not None and queue in f.subscribers:
                    f.subscribers.remove(queue)
