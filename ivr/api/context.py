"""What the API handlers need, reached through one application key (`ivr.appkeys.API`).

It is narrow on purpose: the API reaches calls only through the store and the call event
bus (`ivr.bus.CallEvents`), the served flows through their watchers, the recognizer through
`GrammarTools`, and recordings through `Recordings`; never the call pipeline itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

from ivr.asr.base import Engine
from ivr.asr.runner import AsrRunner
from ivr.bus import CallEvents
from ivr.callbacks import Callbacks
from ivr.config import ApiToken
from ivr.flows_watch import FlowWatcher
from ivr.store import Store


class Recordings(Protocol):
    """Recorded audio on disk, by what the store knows of it. Blocking: call in a thread."""

    def call_recording(self, call_id: str) -> Path | None:
        """The file of a call's whole recording; None when there is none."""
        ...

    def turn_audio(self, stored: str) -> Path | None:
        """The file of one turn's audio, by the path the store keeps for it; None when it
        is gone or the path leads outside the audio folder."""
        ...


@dataclass(frozen=True, slots=True)
class GrammarTools:
    """The calls' own recognizer, for grammar checks and for clips heard as in a call."""

    asr: AsrRunner
    word_checker: Callable[[], Engine]
    """An engine to ask whether the calls' engine can say a client's words (a fresh one per
    question where the engine remembers each grammar it checks)."""
    grammar_dir: Path


@dataclass(frozen=True, slots=True)
class ApiContext:
    callbacks: Callbacks
    store: Store
    tokens: Sequence[ApiToken]
    tz: ZoneInfo
    """Times in responses carry this zone's offset (the callbacks' business time zone)."""
    calls: CallEvents | None = None
    """The calls in progress and their events; None in an app that takes no calls."""
    flows: Mapping[str, FlowWatcher] = field(default_factory=dict)
    """The served flows by name (one today: the flow calls are answered with)."""
    grammar: GrammarTools | None = None
    recordings: Recordings | None = None

    def served_flow(self) -> FlowWatcher | None:
        """The flow calls are answered with."""
        return next(iter(self.flows.values()), None)

    def number(self, raw: str | None) -> str | None:
        """A number a request filters by, as numbers are kept (E.164: `15551230001` and
        `(555) 123-0001` find `+15551230001`); text that is no number as given (it finds
        nothing)."""
        if raw is None:
            return None
        return self.callbacks.policy.number(raw) or raw
