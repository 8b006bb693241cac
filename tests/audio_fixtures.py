"""Real-speech audio fixtures built with sox from the Asterisk prompt recordings.

Other test modules import these helpers; they fail (never skip) with an install hint when the
tools or recordings are missing, so a bare CI image cannot silently pass the audio tests.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ivr.audio.pcm import Audio
from ivr.audio.pcm import read_wav as read_wav  # re-exported: tests read through af

SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
SOUNDS_PACKAGE = "asterisk-core-sounds-en-wav"
RATE = 8000  # the Asterisk recordings are 8 kHz telephone audio


def recording(name: str) -> Path:
    """Path of an Asterisk recording such as "digits/5" or "goodbye.wav"."""
    path = SOUNDS_DIR / (name if name.endswith(".wav") else f"{name}.wav")
    if not path.is_file():
        pytest.fail(
            f"missing {path}: install the Debian package {SOUNDS_PACKAGE} "
            f"(apt-get install {SOUNDS_PACKAGE}) to run the audio tests",
            pytrace=False,
        )
    return path


def sox(*args: str | Path) -> None:
    """Run sox with -R (repeatable random numbers) so noise fixtures are identical every run."""
    exe = shutil.which("sox")
    if exe is None:
        pytest.fail(
            "sox not found: install the Debian package sox to run the audio tests", pytrace=False
        )
    cmd = [exe, "-R", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")


def pad(src: Path, dst: Path, before: float, after: float, rate: int = RATE) -> Path:
    """Copy `src` as mono 16-bit at `rate` with `before`/`after` seconds of digital silence."""
    sox(src, "-r", str(rate), "-c", "1", "-b", "16", dst, "pad", f"{before}", f"{after}")
    return dst


def noise(dst: Path, seconds: float, vol: float, rate: int = RATE) -> Path:
    """White noise of peak amplitude `vol` (fraction of full scale)."""
    sox(
        "-n",
        "-r",
        str(rate),
        "-c",
        "1",
        "-b",
        "16",
        dst,
        "synth",
        f"{seconds}",
        "whitenoise",
        "vol",
        f"{vol}",
    )
    return dst


def mix(a: Path, b: Path, dst: Path) -> Path:
    """Sum two files; -v 1 on each input because `sox -m` otherwise halves both."""
    sox("-m", "-v", "1", a, "-v", "1", b, dst)
    return dst


def concat(srcs: list[Path], dst: Path) -> Path:
    sox(*srcs, dst)
    return dst


def silence(dst: Path, seconds: float, rate: int = RATE) -> Path:
    sox("-n", "-r", str(rate), "-c", "1", "-b", "16", dst, "trim", "0", f"{seconds}")
    return dst


def duration(path: Path) -> float:
    return read_wav(path).duration


def energy_bounds(
    audio: Audio, threshold_dbfs: float = -45.0, frame_ms: int = 10
) -> tuple[float, float]:
    """(onset, offset) in seconds: start of the first and end of the last `frame_ms` frame whose
    RMS exceeds `threshold_dbfs`. Used as ground truth on the *clean* recording."""
    n = audio.rate * frame_ms // 1000
    count = len(audio.samples) // n
    frames = audio.samples[: count * n].astype(np.float64).reshape(count, n) / 32768.0
    rms = np.sqrt(np.mean(frames**2, axis=1))
    db = 20.0 * np.log10(np.maximum(rms, 1e-10))
    loud = np.flatnonzero(db > threshold_dbfs)
    if len(loud) == 0:
        raise ValueError(f"no frame above {threshold_dbfs} dBFS")
    return float(loud[0] * n / audio.rate), float((loud[-1] + 1) * n / audio.rate)


@dataclass(frozen=True)
class Utterance:
    """A recording padded with silence and mixed with noise, plus its ground-truth bounds."""

    path: Path
    onset: float  # seconds into the file where the speech begins (energy threshold)
    offset: float  # seconds into the file where the speech ends
    duration: float

    def audio(self) -> Audio:
        return read_wav(self.path)


def noisy_utterance(
    workdir: Path,
    name: str,
    *,
    before: float = 1.0,
    after: float = 1.5,
    noise_vol: float = 0.02,
    rate: int = RATE,
) -> Utterance:
    """`name` padded with `before`/`after` seconds of silence and mixed with white noise.

    The truth is measured on the clean recording, then shifted by the padding, so noise cannot
    move it.
    """
    src = recording(name)
    stem = name.replace("/", "_").removesuffix(".wav")
    clean = read_wav(src, rate)
    on, off = energy_bounds(clean)
    padded = pad(src, workdir / f"{stem}_padded_{rate}.wav", before, after, rate)
    total = duration(padded)
    if noise_vol > 0:
        hiss = noise(workdir / f"noise_{noise_vol}_{total}_{rate}.wav", total, noise_vol, rate)
        out = mix(padded, hiss, workdir / f"{stem}_noise{noise_vol}_{rate}.wav")
    else:
        out = padded
    return Utterance(out, before + on, before + off, total)
