"""Running recognizers off the event loop.

Recognizer calls go to a bounded thread pool (Vosk releases the GIL while it decodes; the
pocketsphinx and Whisper engines hand their decodes on to worker processes). A semaphore
bounds the jobs in flight so a burst of callers queues here instead of growing the executor's
queue without limit.

For metrics the runner counts, on the event loop (plain numbers, no lock): the jobs waiting
for a slot, the jobs holding one (decoding, or queued for the engine's worker processes), and
the finished jobs and their durations (slot taken → result).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ivr.asr.base import Engine, RecognitionResult
from ivr.grammar import Grammar, normalize

T = TypeVar("T")


class AsrRunner:
    def __init__(self, engine: Engine, workers: int, queue: int) -> None:
        self.engine = engine
        # Threads mostly wait (Vosk decodes without the GIL; pocketsphinx jobs wait on its
        # worker processes), so there are more threads than CPU-bound workers.
        self._executor = ThreadPoolExecutor(workers * 4, thread_name_prefix="asr")
        self.workers = workers
        self.slots = workers + queue
        self._slots = asyncio.Semaphore(self.slots)
        self.waiting = 0  # jobs waiting for a slot
        self.in_flight = 0  # jobs holding one
        self.jobs = 0  # jobs finished (or failed)
        self.busy_s = 0.0  # their durations, summed: slot taken → result

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        started = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._slots.release()
            self.in_flight -= 1
            self.jobs += 1
            self.busy_s += time.monotonic() - started

    async def recognize(
        self,
        pcm: bytes,
        grammar: Grammar | None,
        rate: int = 8000,
        nbest: int = 1,
        hint: Grammar | None = None,
    ) -> RecognitionResult:
        """One whole utterance (e.g. the audio of a SpeechEnded event).

        With free speech (`grammar` None) and a `hint`, the hint's phrases are tried first:
        constrained decoding is far more accurate on short commands ("balance") and cheap,
        and only speech it does not cover ([unk]) is decoded again as free speech. An engine
        that cannot constrain its decoding (``constrained = False``: Whisper) decodes once;
        the grammar or hint then only tells it the language.
        """
        if not getattr(self.engine, "constrained", True):
            return await self._once(pcm, grammar or hint, rate, nbest)
        if grammar is None and hint is not None:
            first = await self._once(pcm, hint, rate, nbest)
            if covered(first, hint):
                return first
        return await self._once(pcm, grammar, rate, nbest)

    async def _once(
        self, pcm: bytes, grammar: Grammar | None, rate: int, nbest: int
    ) -> RecognitionResult:
        return await self.run(_recognize_whole, self.engine, grammar, rate, nbest, pcm)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()


def _recognize_whole(
    engine: Engine, grammar: Grammar | None, rate: int, nbest: int, pcm: bytes
) -> RecognitionResult:
    """A whole utterance in one executor job: one queue slot instead of three."""
    rec = engine.create(grammar, rate, nbest)
    rec.feed(pcm)
    return rec.final()


def covered(result: RecognitionResult, grammar: Grammar) -> bool:
    """The result is grammar words only, with enough confidence to trust."""
    words = result.text.split()
    return (
        bool(words)
        and all(normalize(w) != normalize("[unk]") for w in words)
        and result.confidence >= grammar.min_confidence
    )
