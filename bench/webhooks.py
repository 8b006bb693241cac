"""Webhook delivery: outbox → signed POSTs to a local receiver, on SQLite and PostgreSQL.

    python bench/webhooks.py [--n 2000] [--rate 100] [--steady 600] [--concurrency 32]
                             [--backends sqlite postgresql] [--database-url postgresql://…]

The receiver is a separate process (an aiohttp server on loopback answering 200 at once), so
it competes for the CPU like a real neighbour would but not for the deliverer's event loop.
PostgreSQL is a throwaway cluster (tests/pg.py: fsync off, as in the tests) unless
--database-url names one (its outbox gets the bench's events; use a scratch database).

Per backend:
  drain        --n events already in the outbox, then the deliverer starts: deliveries/s =
               n / time until the last one is marked delivered (claim → POST → mark).
  steady       --steady events added one at a time at --rate per second while the deliverer
               runs, each followed by `wake()` (as the dispatcher does): delay = event created
               (its created_at) → first arrival at the receiver, p50/p95/max.
  poll only    the same without `wake()` (events written by another process): the delay is
               bounded by the 0.2 s poll.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import pct

from ivr.store import Store, open_store
from ivr.webhooks import WebhookDeliverer

ROOT = Path(__file__).resolve().parent.parent

SECRET = "bench-secret"


def payload(i: int) -> dict[str, Any]:
    """About the size of a real callback event."""
    now = datetime.now(UTC).isoformat()
    return {
        "callback": {
            "id": str(uuid.uuid4()),
            "number": f"+1555{i:07d}",
            "due_at": now,
            "status": "claimed",
            "reason": "billing question",
            "priority": 0,
            "attempts": 1,
            "max_attempts": 3,
            "agent": None,
            "outcome": None,
            "created_at": now,
            "updated_at": now,
        }
    }


# --- the receiver (own process) ---------------------------------------------------------


def run_receiver(port: int) -> None:
    first: dict[str, float] = {}
    hits = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal hits
        await request.read()
        hits += 1
        first.setdefault(request.headers["X-IVR-Event-Id"], time.time())
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"hits": hits, "first": first})

    async def reset(request: web.Request) -> web.Response:
        nonlocal hits
        hits = 0
        first.clear()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class ReceiverProc:
    def __init__(self) -> None:
        from pg import free_port

        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--receiver", str(self.port)], cwd=ROOT
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                self.stats()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("receiver did not start") from None
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as r:
            data: dict[str, Any] = json.loads(r.read())
            return data

    def reset(self) -> None:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# --- measurements -----------------------------------------------------------------------


async def _wait_delivered(d: WebhookDeliverer, n: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while d.delivered < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {d.delivered}/{n} delivered after {limit_s} s")
        await asyncio.sleep(0.005)


def _deliverer(
    store: Store, http: aiohttp.ClientSession, url: str, concurrency: int
) -> WebhookDeliverer:
    return WebhookDeliverer(store, http, [url], SECRET, 5.0, 15, concurrency=concurrency)


async def drain(store: Store, receiver: ReceiverProc, n: int, concurrency: int) -> float:
    async with store.transaction() as tx:
        for i in range(n):
            await tx.add_event("callback.due", payload(i))
    async with aiohttp.ClientSession() as http:
        d = _deliverer(store, http, receiver.url, concurrency)
        t = time.perf_counter()
        d.start()
        try:
            await _wait_delivered(d, n, 600)
            return n / (time.perf_counter() - t)
        finally:
            await d.close()


async def steady(
    store: Store, receiver: ReceiverProc, n: int, rate: float, concurrency: int, wake: bool
) -> list[float]:
    receiver.reset()
    created: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        d = _deliverer(store, http, receiver.url, concurrency)
        d.start()
        try:
            start = time.monotonic()
            for i in range(n):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                event = await store.add_event("callback.due", payload(i))
                created[event.id] = event.created_at.timestamp()
                if wake:
                    d.wake()
            await _wait_delivered(d, n, 120)
        finally:
            await d.close()
    first = await asyncio.to_thread(receiver.stats)
    return [first["first"][id] - t for id, t in created.items()]


async def bench(url: str, receiver: ReceiverProc, args: argparse.Namespace) -> dict[str, Any]:
    store = await open_store(url)
    try:
        rate = await drain(store, receiver, args.n, args.concurrency)
        woken = await steady(store, receiver, args.steady, args.rate, args.concurrency, True)
        polled = await steady(store, receiver, args.steady // 3, args.rate, args.concurrency, False)
    finally:
        await store.close()
    return {"rate": rate, "woken": woken, "polled": polled}


def ms(values: list[float]) -> str:
    return (
        f"p50 {pct(values, 50) * 1e3:6.1f} ms  p95 {pct(values, 95) * 1e3:6.1f} ms  "
        f"max {max(values) * 1e3:6.1f} ms"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="events in the outbox for the drain")
    p.add_argument("--steady", type=int, default=600, help="events in the steady run")
    p.add_argument("--rate", type=float, default=100.0, help="events/s in the steady run")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    p.add_argument("--database-url", help="PostgreSQL to use instead of a throwaway cluster")
    p.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.receiver:
        run_receiver(args.receiver)
        return
    receiver = ReceiverProc()
    cluster = None
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp:
            for backend in args.backends:
                if backend == "sqlite":
                    url = f"sqlite:///{tmp}/ivr.db"
                elif args.database_url:
                    url = args.database_url
                else:
                    from pg import PgCluster

                    cluster = PgCluster().start()
                    url = cluster.dsn
                results[backend] = asyncio.run(bench(url, receiver, args))
    finally:
        receiver.stop()
        if cluster is not None:
            cluster.stop()
    print(
        f"webhooks: {args.n} events drained, then {args.steady} at {args.rate:g}/s "
        f"(concurrency {args.concurrency}, one local receiver process)"
    )
    for backend, r in results.items():
        print(f"{backend:>10}  drain: {r['rate']:7.0f} deliveries/s")
        print(f"{'':>10}  steady + wake(): delay {ms(r['woken'])}")
        print(f"{'':>10}  steady, poll only: delay {ms(r['polled'])}")


if __name__ == "__main__":
    main()
