"""Synthesized callers for the ASR tests: espeak-ng (Korean) and flite (English) voices."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ivr.audio.pcm import Audio, read_wav


def _run(cmd: list[str], package: str) -> None:
    if shutil.which(cmd[0]) is None:
        pytest.fail(f"{cmd[0]} not found: install the Debian package {package}", pytrace=False)
    subprocess.run(cmd, check=True, capture_output=True)


def espeak(text: str, dst: Path, voice: str = "ko", speed: int = 130, rate: int = 8000) -> Audio:
    """`text` spoken by espeak-ng, at the telephone rate by default."""
    raw = dst.with_suffix(".raw.wav")
    _run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], "espeak-ng")
    return read_wav(raw, rate)


def flite(text: str, dst: Path, voice: str = "slt", rate: int = 8000) -> Audio:
    raw = dst.with_suffix(".raw.wav")
    _run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], "flite")
    return read_wav(raw, rate)
