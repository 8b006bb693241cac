"""TTS speed and prompt latency.

    python bench/tts.py [--rounds 20]

Prints seconds of synthesis per second of speech (lower is better) for uncached prompts
rendered for a call (8 kHz μ-law), and the latency of a cached prompt (target <= 5 ms),
from memory and from disk (a fresh cache object on the same directory).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import summary

from ivr.audio.codecs import Encoding
from ivr.tts import PromptCache, PromptRenderer, TtsEngine

TEXTS = [
    "Welcome to the Example Telecom hotline.",
    "For your balance, say balance or press one. For data usage, press two.",
    "Your balance is twelve dollars and fifty cents.",
    "Sorry, I didn't catch that. Please say it again.",
    "Your last bill was thirty four dollars, due on the fifth of December.",
]


async def run(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, TtsEngine() as engine:
        await engine.synthesize("warm up")
        ratios = []
        for r in range(rounds):
            for text in TEXTS:
                text = f"{text} {r}"  # defeat the cache: every text is new
                t = time.perf_counter()
                audio = await engine.synthesize(text)
                ratios.append((time.perf_counter() - t) / audio.duration)
        print(f"TTS synthesis, seconds per second of speech: {summary(ratios)}")

        renderer = PromptRenderer(engine, PromptCache(Path(tmp)))
        miss = []
        for text in TEXTS:
            t = time.perf_counter()
            await renderer.render(text, rate=8000, encoding=Encoding.ULAW)
            miss.append(time.perf_counter() - t)
        print(f"prompt render, cache miss (TTS + 8 kHz μ-law + disk): {summary(miss, ' ms', 1e3)}")
        hits = []
        for _ in range(rounds):
            for text in TEXTS:
                t = time.perf_counter()
                await renderer.render(text, rate=8000, encoding=Encoding.ULAW)
                hits.append(time.perf_counter() - t)
        print(f"cached prompt (memory): {summary(hits, ' ms', 1e3)}")
        disk = []
        for _ in range(rounds):
            fresh = PromptRenderer(engine, PromptCache(Path(tmp)))
            for text in TEXTS:
                t = time.perf_counter()
                await fresh.render(text, rate=8000, encoding=Encoding.ULAW)
                disk.append(time.perf_counter() - t)
        print(f"cached prompt (disk, fresh cache object): {summary(disk, ' ms', 1e3)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(run(parser.parse_args().rounds))


if __name__ == "__main__":
    main()
