"""Small typed messages passed between the stages of a call.

transport frames → audio → VAD endpointer (these events) → recognizer → dialog → TTS → transport.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SpeechStarted:
    """The caller started speaking at `at` seconds into the stream.

    `barge_in` is true when a prompt was playing: the call should stop playback at once.
    """

    at: float
    barge_in: bool = False


@dataclass(frozen=True)
class SpeechEnded:
    """An utterance finished. `audio` is 16-bit PCM at `rate`, pre-roll included."""

    start: float
    end: float
    audio: bytes = field(repr=False)
    rate: int
    truncated: bool = False  # cut at the maximum utterance length


@dataclass(frozen=True)
class NoSpeech:
    """No speech began within the no-input timeout after `since` (seconds into the stream)."""

    at: float
    since: float


VadEvent = SpeechStarted | SpeechEnded | NoSpeech
