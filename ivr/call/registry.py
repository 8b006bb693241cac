"""Calls in progress: admission against the concurrent-call limit, and each call's live
event feed (transcript) for subscribers such as `ivr dial` or a console."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
_END = object()


@dataclass
class CallFeed:
    call_id: str
    events: list[Event] = field(default_factory=list)
    subscribers: list[asyncio.Queue[object]] = field(default_factory=list)
    ended: bool = False


class CallRegistry:
    def __init__(self, max_calls: int, keep_finished: int = 1000) -> None:
        self.max_calls = max_calls
        self._active: set[str] = set()
        self._feeds: OrderedDict[str, CallFeed] = OrderedDict()
        self._keep = keep_finished
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

    def admit(self, call_id: str) -> bool:
        """Take a slot for `call_id`; False when the server is at its call limit."""
        if len(self._active) >= self.max_calls:
            self.rejected += 1
            return False
        self._active.add(call_id)
        self.total += 1
        self._feed(call_id)
        return True

    def release(
        self,
        call_id: str,
        frames_sent: int = 0,
        underruns: int = 0,
        turn_latencies: list[float] | None = None,
    ) -> None:
        self._active.discard(call_id)
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
        feed = self._feeds.get(call_id)
        if feed is None:
            feed = self._feeds[call_id] = CallFeed(call_id)
            while len(self._feeds) > self._keep + len(self._active):
                oldest = next(iter(self._feeds))
                if oldest in self._active:
                    break
                del self._feeds[oldest]
        return feed

    def publish(self, call_id: str, event: Event) -> None:
        feed = self._feed(call_id)
        feed.events.append(event)
        for q in feed.subscribers:
            q.put_nowait(event)

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
        finally:
            feed.subscribers.remove(queue)
