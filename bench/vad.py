"""VAD endpointer throughput: frames per second through the whole endpointer.

    python bench/vad.py [--minutes 10]

Feeds noisy telephone speech (Asterisk recordings joined with silence, plus white noise) in
20 ms frames at 8 kHz, as a call does. Target: >= 50 000 frames/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import summary

from ivr.audio.pcm import read_wav
from ivr.audio.vad import Endpointer, EndpointerConfig

SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
RATE = 8000
FRAME = RATE * 20 // 1000 * 2


def stream(minutes: float) -> bytes:
    rng = np.random.default_rng(0)
    clips = [read_wav(p).samples for p in sorted(SOUNDS.glob("*.wav"))[:40]]
    parts, total, i = [], 0, 0
    while total < minutes * 60 * RATE:
        clip = clips[i % len(clips)]
        gap = np.zeros(int(RATE * rng.uniform(0.3, 1.5)), dtype=np.int16)
        parts += [clip, gap]
        total += len(clip) + len(gap)
        i += 1
    pcm = np.concatenate(parts).astype(np.float32)
    pcm += rng.normal(0, 300, len(pcm)).astype(np.float32)
    return np.clip(pcm, -32768, 32767).astype("<i2").tobytes()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pcm = stream(args.minutes)
    frames = len(pcm) // FRAME
    rates, events = [], 0
    for _ in range(args.rounds):
        ep = Endpointer(RATE, EndpointerConfig())
        t = time.perf_counter()
        for i in range(0, len(pcm), FRAME):
            events += len(ep.feed(pcm[i : i + FRAME]))
        rates.append(frames / (time.perf_counter() - t))
    print(f"VAD endpointer, {frames} frames of 20 ms at 8 kHz per round, {events} events")
    print(f"frames/s: {summary(rates)}")
    print(
        f"real-time factor: {1 / (min(rates) * 0.02):.6f} (one core handles "
        f"{min(rates) * 0.02:.0f} calls' worth of audio)"
    )


if __name__ == "__main__":
    main()
