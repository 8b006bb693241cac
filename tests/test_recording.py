"""Whole-call recordings (both sides on one timeline) and the all-calls live feed the console
follows: the parts below the pages, with a controlled clock and real files."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ivr.audio.pcm import resample
from ivr.bus import Overflow
from ivr.call.recording import CallAudio, recording_path
from ivr.call.registry import Admission, CallRegistry
from ivr.transports.messages import ClearAudio, PlayAudio, SetMark


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pcm(value: int, samples: int) -> bytes:
    return np.full(samples, value, dtype="<i2").tobytes()


async def test_both_sides_on_one_timeline(tmp_path: Path) -> None:
    clock = Clock()
    rec = CallAudio(tmp_path / "c.wav", 8000, max_seconds=60, clock=clock)
    rec.caller(pcm(100, 8000))  # the caller's stream: one second
    clock.now += 0.5
    rec.sent(PlayAudio(pcm(200, 160)))  # the bot from 0.5 s, two frames in a burst
    rec.sent(PlayAudio(pcm(200, 160)))
    rec.sent(SetMark("m"))  # not audio: nothing recorded
    clock.now += 1.0
    rec.sent(PlayAudio(pcm(300, 160)))  # at 1.5 s
    assert await rec.finish() == tmp_path / "c.wav"
    wav, rate = sf.read(tmp_path / "c.wav", dtype="int16")
    assert rate == 8000 and wav.shape == (12160, 2)
    caller, bot = wav[:, 0], wav[:, 1]
    assert (caller[:8000] == 100).all() and (caller[8000:] == 0).all()
    assert (bot[:4000] == 0).all() and (bot[4000:4320] == 200).all()
    assert (bot[4320:12000] == 0).all() and (bot[12000:] == 300).all()


async def test_barge_in_drops_audio_sent_ahead_but_not_played(tmp_path: Path) -> None:
    clock = Clock()
    rec = CallAudio(tmp_path / "c.wav", 8000, max_seconds=60, clock=clock)
    for _ in range(10):  # 200 ms sent at once: the far end buffers it
        rec.sent(PlayAudio(pcm(200, 160)))
    clock.now += 0.05
    rec.sent(ClearAudio())  # the caller spoke 50 ms in: the rest was never heard
    await rec.finish()
    wav, _ = sf.read(tmp_path / "c.wav", dtype="int16")
    assert len(wav) == 400 and (wav[:, 1] == 200).all()


async def test_sixteen_khz_calls_are_recorded_at_eight(tmp_path: Path) -> None:
    rec = CallAudio(tmp_path / "c.wav", 16000, max_seconds=60)
    t = np.arange(16000)
    rec.caller((8000 * np.sin(2 * np.pi * 300 * t / 16000)).astype("<i2").tobytes())
    await rec.finish()
    wav, rate = sf.read(tmp_path / "c.wav", dtype="int16")
    assert rate == 8000 and abs(len(wav) - 8000) <= 1
    assert 5000 < np.abs(wav[100:-100, 0]).max() < 9000  # the tone survived the resampling


async def test_memory_is_bounded_by_the_call_limit(tmp_path: Path) -> None:
    clock = Clock()
    rec = CallAudio(tmp_path / "c.wav", 8000, max_seconds=1, clock=clock)  # + 5 s slack
    for _ in range(10):
        rec.caller(pcm(1, 8000))
    clock.now += 30
    rec.sent(PlayAudio(pcm(2, 160)))  # past the limit: dropped
    assert rec.truncated
    await rec.finish()
    wav, _ = sf.read(tmp_path / "c.wav", dtype="int16")
    assert len(wav) == 6 * 8000 and not wav[:, 1].any()


async def test_a_long_call_streams_to_disk_with_seamless_pieces(tmp_path: Path) -> None:
    """Ten minutes in 20 ms frames: memory holds a few seconds, and the file is exactly what
    was heard (every frame numbered, so a lost or repeated sample at a seam would show)."""
    clock = Clock()
    rec = CallAudio(tmp_path / "c.wav", 8000, max_seconds=3600, clock=clock)
    frames = 10 * 60 * 50
    caller = (np.arange(frames * 160) % 30011).astype("<i2")
    peak = 0
    for i in range(frames):
        rec.caller(caller[i * 160 : (i + 1) * 160].tobytes())
        if i % 250 == 0:  # the bot says 20 ms every 5 s, on the caller's clock
            rec.sent(PlayAudio(pcm(7, 160)))
        clock.now += 0.02
        peak = max(peak, rec.buffered)
        if i % 50 == 0:
            await asyncio.sleep(0.005)  # each second, the writer's thread gets to run
    assert peak < 20 * 8000 * 2 * 2  # both sides: seconds (pieces of 5 s), not 10 minutes
    assert await rec.finish() == tmp_path / "c.wav"
    wav, _ = sf.read(tmp_path / "c.wav", dtype="int16")
    assert len(wav) == frames * 160 and (wav[:, 0] == caller).all()
    bot = np.zeros(frames * 160, dtype=np.int16)
    for start in range(0, frames * 160, 250 * 160):
        bot[start : start + 160] = 7
    assert (wav[:, 1] == bot).all()
    assert os.listdir(tmp_path) == ["c.wav"]  # no temporary file left behind


async def test_a_long_sixteen_khz_call_resamples_without_seams(tmp_path: Path) -> None:
    """Written piece by piece, the 8 kHz file matches resampling the whole call at once."""
    clock = Clock()
    rec = CallAudio(tmp_path / "c.wav", 16000, max_seconds=600, clock=clock)
    t = np.arange(16000 * 30)
    tone = (8000 * np.sin(2 * np.pi * 440 * t / 16000)).astype("<i2")
    for i in range(0, len(tone), 320):
        rec.caller(tone[i : i + 320].tobytes())
        clock.now += 0.02
        await asyncio.sleep(0)
    await rec.finish()
    wav, rate = sf.read(tmp_path / "c.wav", dtype="int16")
    whole = resample(tone, 16000, 8000)
    assert rate == 8000 and abs(len(wav) - len(whole)) <= 1
    n = min(len(wav), len(whole))
    assert np.abs(wav[:n, 0].astype(int) - whole[:n]).max() <= 2


async def test_a_disk_that_refuses_the_recording_ends_it_not_the_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "recordings").write_text("a file where the folder should be")
    clock = Clock()
    rec = CallAudio(tmp_path / "recordings" / "c.wav", 8000, max_seconds=600, clock=clock)
    for _ in range(20 * 50):  # 20 s: pieces are handed to the writer, which fails
        rec.caller(pcm(1, 160))
        rec.sent(PlayAudio(pcm(2, 160)))
        clock.now += 0.02
        await asyncio.sleep(0)
    for _ in range(200):
        if rec.failed:
            break
        await asyncio.sleep(0.01)
    assert rec.failed and "the rest of the call is not recorded" in caplog.text
    rec.caller(pcm(1, 8000))  # the call goes on; nothing more is held for it
    assert rec.buffered == 0
    assert await rec.finish() is None


async def test_nothing_heard_writes_nothing(tmp_path: Path) -> None:
    rec = CallAudio(tmp_path / "c.wav", 8000, max_seconds=60)
    assert await rec.finish() is None and not (tmp_path / "c.wav").exists()


@pytest.mark.parametrize(
    ("call_id", "name"),
    [
        ("CA0123abc", "CA0123abc.wav"),
        ("browser-9f1c", "browser-9f1c.wav"),
        ("40325ec2-5efd-4bd3-805f-53576e581d13", "40325ec2-5efd-4bd3-805f-53576e581d13.wav"),
    ],
)
def test_recording_path_keeps_plain_ids(call_id: str, name: str) -> None:
    assert recording_path(Path("/rec"), call_id) == Path("/rec") / name


@pytest.mark.parametrize(
    "call_id", ["../../etc/passwd", "a/b", "..", ".hidden", "a..b", "x\x00y", "é", "a" * 200, ""]
)
def test_recording_path_never_leaves_the_folder(call_id: str) -> None:
    path = recording_path(Path("/rec"), call_id)
    assert path.parent == Path("/rec") and path.name.startswith("_") and len(path.name) == 69
    assert recording_path(Path("/rec"), call_id) == path  # the same call, the same file


# --- the registry's all-calls feed ------------------------------------------------------------


async def test_watch_replays_calls_in_progress_then_follows_every_call() -> None:
    registry = CallRegistry(max_calls=5)
    assert registry.admit("a") is Admission.ADMITTED
    registry.publish("a", {"event": "call_started", "caller": "+1", "transport": "websocket",
                           "flow": "hotline", "flow_version": "v1", "at": 10.0})  # fmt: skip
    registry.publish("a", {"event": "prompt", "node": "greeting", "at": 11.0})
    assert registry.admit("old") is Admission.ADMITTED
    registry.publish("old", {"event": "hangup", "reason": "x"})
    registry.end("old")  # ended: not replayed
    got: list[dict[str, object]] = []

    async def follow() -> None:
        async for event in registry.watch():
            got.append(event)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0)
    assert registry.admit("b") is Admission.ADMITTED
    registry.publish("b", {"event": "call_started", "caller": None, "at": 12.0})
    registry.publish("a", {"event": "listen", "node": "main_menu", "at": 13.0})
    await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [(e["call_id"], e["event"]) for e in got] == [
        ("a", "call_started"),
        ("a", "prompt"),
        ("b", "call_started"),
        ("a", "listen"),
    ]
    assert registry._watchers == []  # the subscription ended with the consumer
    [a, b] = registry.live_calls()
    assert a == {
        "id": "a", "caller": "+1", "transport": "websocket", "flow": "hotline",
        "flow_version": "v1", "started_at": 10.0, "node": "main_menu", "events": 3,
        "last_event_at": 13.0,
    }  # fmt: skip
    assert b["id"] == "b" and b["node"] is None and b["events"] == 1


async def test_a_watcher_that_falls_behind_is_cut_off() -> None:
    registry = CallRegistry(max_calls=5)
    registry.admit("a")
    events = registry.watch(max_queue=3)
    first = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)  # subscribed; now the call goes faster than the consumer
    for i in range(10):
        registry.publish("a", {"event": "prompt", "n": i})
    assert (await first)["n"] == 0
    assert [(await anext(events))["n"] for _ in range(2)] == [1, 2]
    with pytest.raises(Overflow):
        await anext(events)
    await events.aclose()
    assert registry._watchers == []
