"""Text-to-speech with pyttsx3 on espeak-ng, run in one dedicated worker process.

pyttsx3 is neither thread- nor async-safe and espeak-ng keeps global state per process, so all
synthesis goes through a single spawned worker that owns the one pyttsx3 engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import io
import multiprocessing
import tempfile
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ivr.audio.pcm import Audio, read_wav
from ivr.workers import die_with_parent

T = TypeVar("T")

MIN_WPM, MAX_WPM = 80, 450  # espeak-ng's usable speaking-rate range
MAX_TEXT_CHARS = 5000
_SILENCE_PEAK = 64  # int16 peak below which the output counts as silence
_FALLBACK_SUGGESTIONS = ("en-us", "en", "de", "fr", "es", "it")


class TtsError(Exception):
    """Synthesis failed: bad input, unknown voice, or a broken/failed engine."""


# --- worker process side -------------------------------------------------------------------

_engine: Any = None  # the pyttsx3 engine of this worker process
_aliases: dict[str, str] = {}  # lower-cased id / short id / name / language → voice id


def _init_worker() -> None:
    global _engine
    die_with_parent("TTS worker")  # a kill -9 of the server takes it along
    import pyttsx3

    _engine = pyttsx3.init("espeak")
    for v in _engine.getProperty("voices"):
        vid = str(v.id)
        names = [vid, vid.rsplit("/", 1)[-1], str(v.name), *(str(lang) for lang in v.languages)]
        for alias in names:
            _aliases.setdefault(alias.lower(), vid)


def _worker_voices() -> list[str]:
    return sorted(set(_aliases.values()))


def _resolve_voice(name: str) -> str:
    vid = _aliases.get(name.strip().lower())
    if vid is None:
        short = sorted({v.rsplit("/", 1)[-1] for v in _aliases.values()})
        hints = difflib.get_close_matches(name.lower(), short, n=5) or [
            s for s in _FALLBACK_SUGGESTIONS if s in short
        ]
        raise TtsError(f"unknown voice {name!r}; valid voices include: {', '.join(hints)}")
    return vid


def _worker_synthesize(text: str, voice: str, wpm: int) -> Audio:
    from pyttsx3.drivers import _espeak

    errors: list[BaseException] = []
    token = _engine.connect("error", lambda name, exception: errors.append(exception))
    try:
        vid = _resolve_voice(voice)
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            # The espeak driver prints "Audio saved to …"; stdout is silenced for that.
            # pyttsx3 2.99 runs libespeak-ng in AUDIO_OUTPUT_RETRIEVAL mode, which is async
            # (a fifo thread): setProperty("rate") is only queued, runAndWait's endLoop()
            # calls Cancel() on a busy fifo (dropping the rate, or yielding silent audio in
            # ~60% of calls), and runAndWait can return before the WAV is written. Draining
            # the fifo before and after synthesis makes save_to_file reliable.
            _engine.setProperty("voice", vid)
            _engine.setProperty("rate", wpm)
            _espeak.Synchronize()
            path = Path(tmp) / "out.wav"
            _engine.save_to_file(text, str(path))
            _engine.runAndWait()
            _espeak.Synchronize()
            if errors:
                raise TtsError(f"espeak-ng failed: {errors[0]}")
            if not path.exists():
                raise TtsError("espeak-ng wrote no audio file")
            # The driver writes the header at 22050 Hz, espeak-ng's native rate.
            return read_wav(path)
    finally:
        _engine.disconnect(token)


# --- caller side ---------------------------------------------------------------------------


class TtsEngine:
    """Async front end to the TTS worker process.

    `max_pending` bounds requests in flight (running + queued). Work submitted to the process
    pool cannot be cancelled or reprioritised, so without a bound a burst of calls would pile
    up an unbounded backlog with ever-growing latency; excess callers instead wait on an
    asyncio semaphore, where they stay cheap and cancellable (a hung-up call just leaves).
    """

    def __init__(
        self, default_voice: str = "en-us", default_speed: int = 160, max_pending: int = 4
    ) -> None:
        self.default_voice = default_voice
        self.default_speed = default_speed
        self._max_pending = max_pending
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._voices: list[str] | None = None
        # asyncio primitives belong to one loop; keep one semaphore per running loop.
        self._sem: asyncio.Semaphore | None = None
        self._sem_loop: asyncio.AbstractEventLoop | None = None

    async def synthesize(
        self, text: str, voice: str | None = None, speed: int | None = None
    ) -> Audio:
        """Speak `text` with `voice` (espeak id, language or name) at `speed` words/minute."""
        args = self._check(text, voice, speed)
        async with self._semaphore():
            return self._checked(await self._await(*self._submit(_worker_synthesize, *args)))

    def synthesize_blocking(
        self, text: str, voice: str | None = None, speed: int | None = None
    ) -> Audio:
        """Blocking `synthesize` for the CLI and other synchronous callers."""
        args = self._check(text, voice, speed)
        return self._checked(self._result(*self._submit(_worker_synthesize, *args)))

    def voices(self) -> list[str]:
        """espeak-ng voice ids (e.g. "gmw/en-us"); short ids ("en-us") and names also work."""
        if self._voices is None:
            self._voices = self._result(*self._submit(_worker_voices))
        return list(self._voices)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> TtsEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, text: str, voice: str | None, speed: int | None) -> tuple[str, str, int]:
        text = text.strip()
        if not text:
            raise TtsError("text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise TtsError(f"text is too long ({len(text)} > {MAX_TEXT_CHARS} characters)")
        wpm = self.default_speed if speed is None else speed
        if not MIN_WPM <= wpm <= MAX_WPM:
            raise TtsError(f"speed must be {MIN_WPM}-{MAX_WPM} words per minute, got {wpm}")
        return text, voice or self.default_voice, wpm

    @staticmethod
    def _checked(audio: Audio) -> Audio:
        if len(audio.samples) == 0 or int(np.max(np.abs(audio.samples))) < _SILENCE_PEAK:
            raise TtsError("espeak-ng produced empty or silent audio")
        return audio

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._sem_loop is not loop:
            self._sem, self._sem_loop = asyncio.Semaphore(self._max_pending), loop
        return self._sem

    def _submit(self, fn: Any, *args: object) -> tuple[ProcessPoolExecutor, Future[Any]]:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                )
            pool = self._pool
        try:
            return pool, pool.submit(fn, *args)
        except BrokenProcessPool as exc:
            raise self._crashed(pool, exc) from exc

    async def _await(self, pool: ProcessPoolExecutor, fut: Future[T]) -> T:
        try:
            return await asyncio.wrap_future(fut)
        except TtsError:
            raise
        except Exception as exc:
            raise self._translate(pool, exc) from exc

    def _result(self, pool: ProcessPoolExecutor, fut: Future[T]) -> T:
        try:
            return fut.result()
        except TtsError:
            raise
        except Exception as exc:
            raise self._translate(pool, exc) from exc

    def _translate(self, pool: ProcessPoolExecutor, exc: Exception) -> TtsError:
        if isinstance(exc, BrokenProcessPool):
            return self._crashed(pool, exc)
        return TtsError(f"synthesis failed: {type(exc).__name__}: {exc}")

    def _crashed(self, pool: ProcessPoolExecutor, exc: BaseException) -> TtsError:
        # Drop the broken pool; the next request starts a fresh worker.
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)
        return TtsError(f"TTS worker crashed: {exc}")
