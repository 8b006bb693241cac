"""Integration traffic beside calls: a process that polls and works the callback queue through
the HTTP API at a fixed rate and receives the server's webhooks, like a CRM or dialer would.

Used by bench/calls.py (`--api-rps`), so that turn latency with and without this traffic can
be compared on the same machine. Every 10th request is a write: claim the first scheduled
callback and complete it with "no_answer" (which schedules it again, so the queue never runs
dry); the rest are `GET /v1/callbacks?status=scheduled&limit=50`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class LoadStats:
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds, all API requests
    webhooks: int = 0
    webhook_types: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


async def _run(base: str, token: str, rps: float, hook_port: int, stop: Connection) -> LoadStats:
    stats = LoadStats()

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        stats.webhooks += 1
        stats.webhook_types[body["type"]] = stats.webhook_types.get(body["type"], 0) + 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    stop.send("ready")
    headers = {"Authorization": f"Bearer {token}"}
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession(base, headers=headers) as http:

        async def request(method: str, path: str, body: Any = None) -> Any:
            t = time.perf_counter()
            try:
                async with http.request(method, path, json=body) as r:
                    data = await r.json()
                    if r.status >= 400 and r.status != 409:  # 409: raced another claim
                        key = f"{method} {path.split('?')[0].rsplit('/', 1)[-1]} {r.status}"
                        stats.errors[key] = stats.errors.get(key, 0) + 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                stats.errors[type(exc).__name__] = stats.errors.get(type(exc).__name__, 0) + 1
                data = None
            stats.latencies.append(time.perf_counter() - t)
            stats.requests += 1
            return data

        async def one(i: int) -> None:
            page = await request("GET", "/v1/callbacks?status=scheduled&limit=50")
            if i % 10 == 9 and page and page.get("items"):
                cb = page["items"][0]["id"]
                claimed = await request("POST", f"/v1/callbacks/{cb}/claim", {"agent": "bench"})
                if claimed and claimed.get("status") == "claimed":
                    await request("POST", f"/v1/callbacks/{cb}/complete", {"outcome": "no_answer"})

        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while not stop.poll():
            if rps > 0:
                task = asyncio.create_task(one(i))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
                await asyncio.sleep(max(0.0, started + i / rps - loop.time()))
            else:
                await asyncio.sleep(0.1)
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(1.0)  # webhooks of the last calls
    stats.seconds = loop.time() - started
    await runner.cleanup()
    return stats


def _main(base: str, token: str, rps: float, hook_port: int, conn: Connection) -> None:
    stats = asyncio.run(_run(base, token, rps, hook_port, conn))
    conn.send(stats)


class ApiLoad:
    """`start()` before the calls, `stop()` after: returns what the load process saw."""

    def __init__(self, base: str, token: str, rps: float, hook_port: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_main, args=(base, token, rps, hook_port, child), daemon=True
        )

    def start(self) -> None:
        self._proc.start()
        if not self._conn.poll(30) or self._conn.recv() != "ready":
            raise SystemExit("API load process did not start")

    def stop(self) -> LoadStats:
        self._conn.send("stop")
        stats: LoadStats = self._conn.recv() if self._conn.poll(60) else LoadStats()
        self._proc.join(10)
        return stats
