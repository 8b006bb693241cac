"""The event bus between calls and their watchers: the calls in progress and each call's
events (its transcript), as the API's live list and feeds read them.

`ivr.call.registry.CallRegistry` is the bus; the API knows it only as `CallEvents`, so it
reaches calls through this and the store, never through the call code itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

Event = dict[str, Any]
"""One thing that happened on a call, as the live feeds send it (JSON-ready)."""


class Overflow(Exception):
    """An all-calls subscriber fell this far behind: it is dropped rather than let its
    queue grow without bound (it may subscribe again)."""


class CallEvents(Protocol):
    def live_calls(self) -> list[dict[str, Any]]:
        """The calls in progress, oldest first: id, caller, transport, flow, node, times."""
        ...

    def watch(self, max_queue: int = ...) -> AsyncIterator[Event]:
        """Every call's events, each with its `call_id`, until the consumer stops; raises
        Overflow when the consumer falls too far behind."""
        ...

    def subscribe(self, call_id: str) -> AsyncIterator[Event]:
        """One call's events so far, then live ones until it ends."""
        ...
