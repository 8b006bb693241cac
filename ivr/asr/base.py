"""The recognizer interface every ASR engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Protocol

from ivr.grammar import Grammar


@dataclass(frozen=True)
class Alternative:
    text: str
    confidence: float


@dataclass(frozen=True)
class RecognitionResult:
    """Final result of one utterance.

    `text` is empty when nothing was recognized. `alternatives` is the n-best list, best first,
    and starts with the same text as `text`.
    """

    text: str
    confidence: float
    engine: str
    alternatives: list[Alternative] = field(default_factory=list)
    words: list[tuple[str, float]] = field(default_factory=list)  # (word, confidence)


class Recognizer(ABC):
    """Streaming recognition of one utterance at a time. Not thread-safe: one caller at a time.

    Feed 16-bit PCM at `rate`; `final()` ends the utterance and resets the recognizer for
    the next one.
    """

    engine: str
    rate: int

    @abstractmethod
    def feed(self, pcm: bytes) -> None: ...

    @abstractmethod
    def final(self) -> RecognitionResult: ...

    @abstractmethod
    def reset(self) -> None:
        """Drop any audio fed so far."""


class BufferedRecognizer(Recognizer):
    """Buffers an utterance; `_decode` runs on the whole of it at `final`. For engines that
    decode in one batch."""

    def __init__(self, rate: int, nbest: int) -> None:
        self.rate = rate
        self._nbest = max(1, nbest)
        self._chunks: list[bytes] = []

    @abstractmethod
    def _decode(self, pcm: bytes, nbest: int) -> RecognitionResult: ...

    def feed(self, pcm: bytes) -> None:
        self._chunks.append(pcm)

    def reset(self) -> None:
        self._chunks.clear()

    def final(self) -> RecognitionResult:
        pcm = b"".join(self._chunks)
        self.reset()
        return self._decode(pcm, self._nbest)


class Engine(Protocol):
    """A loaded ASR model shared across calls; makes recognizers for a grammar or free speech."""

    name: str
    rate: int

    def create(self, grammar: Grammar | None, rate: int = 8000, nbest: int = 1) -> Recognizer: ...

    def describe(self) -> str: ...
