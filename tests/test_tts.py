"""TTS stage on real espeak-ng: speech content, caching, recorded overrides and errors."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import webrtcvad

from ivr.audio.codecs import Encoding, decode, encode
from ivr.audio.pcm import Audio, read_wav, write_wav
from ivr.tts import PromptCache, PromptRenderer, TtsEngine, TtsError
from ivr.tts.engine import MAX_WPM

TEXT = "Thank you for calling. Please say the name of the department you want."


@pytest.fixture(scope="module")
def engine() -> Iterator[TtsEngine]:
    tts = TtsEngine()
    yield tts
    tts.close()


class Calls:
    """Counts requests that reach the real engine (a spy, not a fake)."""

    def __init__(self, engine: TtsEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = engine.synthesize

        async def counted(text: str, voice: str | None = None, speed: int | None = None) -> Audio:
            self.count += 1
            return await real(text, voice, speed)

        monkeypatch.setattr(engine, "synthesize", counted)


@pytest.fixture
def calls(engine: TtsEngine, monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(engine, monkeypatch)


def speech_share(samples: np.ndarray, rate: int = 8000) -> float:
    """Fraction of 20 ms frames webrtcvad (mode 2) calls speech."""
    vad = webrtcvad.Vad(2)
    n = rate // 50
    frames = [samples[i : i + n] for i in range(0, len(samples) - n + 1, n)]
    flags = [vad.is_speech(f.astype("<i2").tobytes(), rate) for f in frames]
    return float(sum(flags) / len(flags))


async def test_tts_output_is_speech_at_call_rate_and_encoding(
    engine: TtsEngine, tmp_path: Path
) -> None:
    renderer = PromptRenderer(engine, PromptCache(tmp_path))
    wire = await renderer.render(TEXT, rate=8000, encoding=Encoding.ULAW)

    samples = decode(wire, Encoding.ULAW)  # μ-law: one byte per sample at 8 kHz
    seconds = len(samples) / 8000
    assert 0.03 * len(TEXT) < seconds < 0.12 * len(TEXT), seconds
    assert np.abs(samples.astype(np.int32)).max() > 4000  # a loud signal, not noise
    assert speech_share(samples) > 0.3
    assert speech_share(np.zeros_like(samples)) == 0.0


@pytest.mark.parametrize(("rate", "encoding"), [(16000, Encoding.PCM16), (8000, Encoding.ALAW)])
async def test_other_rates_and_encodings(
    engine: TtsEngine, tmp_path: Path, rate: int, encoding: Encoding
) -> None:
    wire = await PromptRenderer(engine).render(TEXT, rate=rate, encoding=encoding)
    samples = decode(wire, encoding)
    assert len(wire) == len(samples) * (2 if encoding is Encoding.PCM16 else 1)
    at_8k = Audio(samples, rate).to_rate(8000).samples
    assert speech_share(at_8k) > 0.3


async def test_speed_and_voice_are_applied(engine: TtsEngine) -> None:
    # Alternating speeds: espeak-ng queues rate changes asynchronously, and without draining
    # its queue they get dropped (or the audio comes out silent) in most of these rounds.
    for _ in range(5):
        slow = await engine.synthesize(TEXT, speed=100)
        fast = await engine.synthesize(TEXT, speed=300)
        assert slow.duration > 2 * fast.duration
    us = await engine.synthesize("Hello", voice="en-us")
    de = await engine.synthesize("Hello", voice="German")
    assert not np.array_equal(us.samples, de.samples)
    assert "gmw/en-us" in engine.voices()


async def test_cache_hit_is_identical_fast_and_skips_engine(
    engine: TtsEngine, tmp_path: Path, calls: Calls
) -> None:
    first = await PromptRenderer(engine, PromptCache(tmp_path)).render("Goodbye for now.")
    assert calls.count == 1

    renderer = PromptRenderer(engine, PromptCache(tmp_path))  # new instance: disk only
    from_disk = await renderer.render("Goodbye for now.")
    start = time.perf_counter()
    from_memory = await renderer.render("Goodbye for now.")
    elapsed = time.perf_counter() - start

    assert first == from_disk == from_memory
    assert calls.count == 1
    assert elapsed < 0.005, elapsed
    # Different parameters are a different prompt.
    assert await renderer.render("Goodbye for now.", speed=200) != first
    assert calls.count == 2


def test_pcm16_cache_entries_are_wav_files(engine: TtsEngine, tmp_path: Path) -> None:
    renderer = PromptRenderer(engine, PromptCache(tmp_path))
    wire = asyncio.run(renderer.render("Main menu.", rate=16000, encoding=Encoding.PCM16))
    (wav,) = tmp_path.rglob("*.wav")
    stored = read_wav(wav)
    assert stored.rate == 16000
    assert stored.tobytes() == wire
    assert not list(tmp_path.rglob(".tmp-*"))


async def test_recorded_prompt_overrides_tts(
    engine: TtsEngine, tmp_path: Path, calls: Calls
) -> None:
    t = np.arange(16000 // 2) / 16000
    tone = Audio((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16), 16000)
    write_wav(tmp_path / "welcome.wav", tone)
    renderer = PromptRenderer(engine, PromptCache(tmp_path / "cache"), prompts_dir=tmp_path)

    wire = await renderer.render("Welcome to Acme.", key="welcome")
    assert wire == encode(tone.to_rate(8000).samples, Encoding.ULAW)
    assert calls.count == 0

    await renderer.render("Welcome to Acme.", key="not-recorded")  # falls back to TTS
    assert calls.count == 1
    with pytest.raises(ValueError, match="invalid prompt key"):
        await renderer.render("x", key="../welcome")


async def test_bad_input_raises_clear_errors(engine: TtsEngine) -> None:
    for text in ("", "   \n"):
        with pytest.raises(TtsError, match="text is empty"):
            await engine.synthesize(text)
    with pytest.raises(TtsError, match=r"unknown voice 'no-such-voice'.*en-us"):
        await engine.synthesize("Hello", voice="no-such-voice")
    with pytest.raises(TtsError, match="words per minute"):
        await engine.synthesize("Hello", speed=MAX_WPM + 1)
    with pytest.raises(TtsError, match="text is empty"):
        engine.synthesize_blocking(" ")


async def test_worker_crash_is_reported_and_recovered() -> None:
    with TtsEngine() as tts:
        before = {p.pid for p in multiprocessing.active_children()}
        tts.voices()  # starts this engine's worker
        (pid,) = {p.pid for p in multiprocessing.active_children()} - before
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(TtsError, match="worker crashed"):
            await tts.synthesize("Hello")
        assert (await tts.synthesize("Hello again")).duration > 0.3  # fresh worker
