"""`ivr say` writes speech at the asked rate; bad input gets a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import webrtcvad

from ivr.audio.pcm import read_wav


def say(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ivr", "say", *args], capture_output=True, text=True, check=False
    )


def test_say_writes_speech_at_phone_rate(tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    proc = say("Your balance is twelve dollars and fifty cents.", "-o", str(out), "--rate", "8000")
    assert proc.returncode == 0, proc.stderr
    audio = read_wav(out)
    assert audio.rate == 8000
    assert 1.5 < audio.duration < 6.0
    vad = webrtcvad.Vad(2)
    pcm = audio.tobytes()
    frames = [pcm[i : i + 320] for i in range(0, len(pcm) - 319, 320)]
    speech = sum(vad.is_speech(f, 8000) for f in frames)
    assert speech / len(frames) > 0.4
    assert np.abs(audio.samples).max() > 3000


def test_say_bad_input(tmp_path: Path) -> None:
    proc = say("   ", "-o", str(tmp_path / "x.wav"))
    assert proc.returncode != 0 and "text is empty" in proc.stderr
    proc = say("hi", "--voice", "no-such-voice", "-o", str(tmp_path / "x.wav"))
    assert proc.returncode != 0 and "unknown voice 'no-such-voice'" in proc.stderr
    assert not (tmp_path / "x.wav").exists()
