"""Audio retention on real files: old recordings and utterance audio go, recent ones and
everything that is not call audio stay, and the server prunes at start."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from ivr.config import Settings
from ivr.retention import AudioRetention, prune

DAY = 86400.0


def make(path: Path, age_days: float, size: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    t = time.time() - age_days * DAY
    os.utime(path, (t, t))
    return path


def age(path: Path, days: float) -> None:
    t = time.time() - days * DAY
    os.utime(path, (t, t))


def test_prune_deletes_old_wavs_and_their_emptied_folders(tmp_path: Path) -> None:
    rec, audio = tmp_path / "recordings", tmp_path / "audio"
    old_call = make(rec / "CA1.wav", 100, size=1000)
    new_call = make(rec / "CA2.wav", 1)
    writing = make(rec / ".CA3.wav.tmp", 100)  # not a finished recording: not ours to judge
    old_turns = [make(audio / "CA1" / f"{i}.wav", 120) for i in (3, 5)]
    mixed = [make(audio / "CA2" / "2.wav", 95), make(audio / "CA2" / "4.wav", 2)]
    other = make(audio / "notes.txt", 500)
    for folder in (audio / "CA1", audio / "CA2"):
        age(folder, 95)

    done = prune([rec, audio, tmp_path / "missing"], time.time() - 90 * DAY)

    assert done.files == 4 and done.bytes == 1000 + 3 * 100
    assert not old_call.exists() and new_call.exists() and writing.exists()
    assert not any(p.exists() for p in old_turns) and not (audio / "CA1").exists()
    assert not mixed[0].exists() and mixed[1].exists() and (audio / "CA2").is_dir()
    assert other.exists() and rec.is_dir() and audio.is_dir()


def test_a_call_folder_written_to_lately_is_kept_even_when_empty(tmp_path: Path) -> None:
    """A call in progress may have just made its folder and not yet written the WAV."""
    (tmp_path / "audio" / "CA9").mkdir(parents=True)
    prune([tmp_path / "audio"], time.time() - 90 * DAY)
    assert (tmp_path / "audio" / "CA9").is_dir()


async def test_retention_prunes_at_start_then_on_its_interval(tmp_path: Path) -> None:
    retention = AudioRetention(tmp_path, days=30, interval_s=0.05)
    first = make(tmp_path / "recordings" / "a.wav", 31)
    retention.start()
    try:
        for _ in range(100):
            if retention.pruned.files == 1:
                break
            await asyncio.sleep(0.01)
        assert not first.exists() and retention.pruned.files == 1
        second = make(tmp_path / "audio" / "b" / "1.wav", 40)
        for _ in range(100):  # the count follows the deletion (the thread's result)
            if retention.pruned.files == 2:
                break
            await asyncio.sleep(0.01)
        assert not second.exists() and retention.pruned.files == 2
    finally:
        await retention.close()


async def test_zero_days_keeps_everything(tmp_path: Path) -> None:
    kept = make(tmp_path / "recordings" / "a.wav", 10_000)
    retention = AudioRetention(tmp_path, days=0, interval_s=0.01)
    retention.start()
    await asyncio.sleep(0.05)
    await retention.close()
    assert kept.exists()


def test_retention_days_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_AUDIO_RETENTION_DAYS", "7")
    assert Settings.model_validate({}).audio_retention_days == 7
    monkeypatch.setenv("IVR_AUDIO_RETENTION_DAYS", "-1")
    with pytest.raises(ValueError, match="audio_retention_days"):
        Settings.model_validate({})
