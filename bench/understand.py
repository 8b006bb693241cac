"""Understanding callers: a labelled set of clips through live calls and through
`ivr grammar eval`, side by side.

Every clip is said at the hotline's main menu in a real call (a fresh `ivr serve`, the
WebSocket media stream, μ-law 8 kHz both ways, the server's VAD, ASR and dialog), and the
intent the call recorded is compared with the intent `ivr grammar eval` gives the same clip
offline (which hears it through the same μ-law round trip and endpointer). It prints, per
intent and overall: accuracy live and offline, out-of-scope rejection, agreement between the
two, the misses, and the time from the end of the caller's speech to the recognized event.

    python bench/understand.py --set /tmp/evalset/intents-heldout-clean.csv [--calls 6]

Make the sets with `python eval/build.py --out /tmp/evalset`. An empty `expected` is an
out-of-scope clip: right when nothing is recognized as an intent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from calls import API_TOKEN, Server
from common import pct

from ivr.asr.runner import AsrRunner
from ivr.config import load_settings
from ivr.dial import Caller, CallerTurn
from ivr.dialog.flow import load_flow
from ivr.tuning.commands import engine_for
from ivr.tuning.evaluate import Row, read_set, run
from ivr.tuning.probe import node_target

ROOT = Path(__file__).resolve().parent.parent
KNOWN = "+15551230001"  # a demo account: balance, data and bill answer without questions


async def offline(rows: list[Row], node: str, workers: int) -> list[str | None]:
    settings = load_settings()
    flow = load_flow(settings.flow_path, settings.grammar_dir)
    target = node_target(flow, node)
    engine = engine_for(settings, processes=workers)
    asr = AsrRunner(engine, workers=workers, queue=len(rows))
    try:
        outcomes = await run(target, rows, asr, concurrency=workers, progress=False)
    finally:
        asr.close()
    return [o.verdict.intent for o in outcomes]


async def live(url: str, rows: list[Row], calls: int) -> list[dict[str, Any]]:
    slots = asyncio.Semaphore(calls)

    async def one(row: Row) -> dict[str, Any]:
        async with slots:
            assert row.audio is not None
            turns = [CallerTurn(wav=row.audio)]
            caller = Caller(url, turns, KNOWN, out=None, max_seconds=90, token=API_TOKEN)
            report = await caller.run()
        heard = next((e for e in report.events if e.get("event") == "recognized"), None)
        return {
            "intent": heard.get("intent") if heard else None,
            "text": heard.get("text") if heard else None,
            "latency": report.latencies[0] if report.latencies else None,
        }

    return list(await asyncio.gather(*(one(r) for r in rows)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--set", type=Path, required=True, help="CSV: input (WAV), expected")
    ap.add_argument("--node", default="main_menu")
    ap.add_argument("--calls", type=int, default=6, help="live calls at once")
    ap.add_argument("--workers", type=int, default=2, help="offline ASR workers")
    ap.add_argument("--limit", type=int, default=0, help="only the first N rows")
    ap.add_argument("--json", type=Path, help="also write every row's outcome here")
    args = ap.parse_args()
    rows = [r for r in read_set(args.set) if r.audio is not None]
    if args.limit:
        rows = rows[: args.limit]
    started = time.perf_counter()
    off = asyncio.run(offline(rows, args.node, args.workers))
    print(f"offline: {len(rows)} clips in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "data", 600, 200, None, Path(tmp) / "server.log")
        server.start()
        try:
            started = time.perf_counter()
            url = f"ws://127.0.0.1:{server.port}/v1/media-stream"
            got = asyncio.run(live(url, rows, args.calls))
            print(
                f"live: {len(rows)} calls in {time.perf_counter() - started:.0f} s", file=sys.stderr
            )
        finally:
            server.stop()
    report(rows, off, got, args.json)


def report(
    rows: list[Row], off: list[str | None], got: list[dict[str, Any]], out: Path | None
) -> None:
    n, right_live, right_off, agree = Counter[str](), Counter[str](), Counter[str](), 0
    misses = []
    for row, o, g in zip(rows, off, got, strict=True):
        label = row.expected or "none"
        lv, of = g["intent"] or "none", o or "none"
        n[label] += 1
        right_live[label] += lv == label
        right_off[label] += of == label
        agree += lv == of
        if lv != label or of != label:
            misses.append((label, lv, of, g["text"], row.input))
    in_scope = [k for k in n if k != "none"]

    def share(c: Counter[str], keys: list[str]) -> str:
        total = sum(n[k] for k in keys)
        return f"{sum(c[k] for k in keys)}/{total} = {sum(c[k] for k in keys) / max(1, total):.3f}"

    print(f"set: {len(rows)} clips ({sum(n[k] for k in in_scope)} in scope, {n['none']} out)")
    for what, keys in (("in-scope accuracy  ", in_scope), ("out-of-scope reject", ["none"])):
        print(f"{what} live {share(right_live, keys)}   eval {share(right_off, keys)}")
    print(f"eval and live agree on {agree}/{len(rows)} = {agree / max(1, len(rows)):.3f}")
    lat = [g["latency"] for g in got if g["latency"] is not None]
    if lat:
        print(f"end of speech -> first bot audio: p50 {pct(lat, 50) * 1000:.0f} ms, "
              f"p95 {pct(lat, 95) * 1000:.0f} ms (n={len(lat)})")  # fmt: skip
    print("per intent (live / eval / clips):")
    for k in sorted(n):
        print(f"  {k:15} {right_live[k]:3d} / {right_off[k]:3d} / {n[k]:3d}")
    print("misses (expected, live, eval, live text, clip):")
    for m in misses:
        print(f"  {m[0]:15} {m[1]:15} {m[2]:15} {m[3]!r}  {Path(m[4]).name}")
    if out is not None:
        out.write_text(json.dumps([
            {"input": r.input, "expected": r.expected, "eval": o, **g}
            for r, o, g in zip(rows, off, got, strict=True)
        ], indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
