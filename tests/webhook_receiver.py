"""A real webhook receiver for tests: an aiohttp server on a loopback socket, in its own
thread (so it answers while a test blocks, e.g. waiting for an `ivr serve` subprocess)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

HANG = -1
"""A `respond` result: never answer (the sender's timeout has to end the request)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival
    mono: float  # time.monotonic() on arrival

    @property
    def doc(self) -> Any:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.headers["X-IVR-Event-Id"]


class Receiver:
    """`respond(hit) -> status` (or HANG) decides each answer; default 200. Every request,
    answered or not, is in `hits`. `start()` / `stop()` may be called repeatedly; the port
    stays the same, so a sender configured with `url()` sees it go down and come back."""

    def __init__(self, respond: Callable[[Hit], int] | None = None) -> None:
        self.respond: Callable[[Hit], int] = respond or (lambda hit: 200)
        self.port = free_port()
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def snapshot(self, path: str | None = None) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if path is None or h.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        hit = Hit(request.path, dict(request.headers), body, time.time(), time.monotonic())
        with self._lock:
            self.hits.append(hit)
        status = self.respond(hit)
        if status == HANG:
            await asyncio.sleep(3600)
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    def start(self) -> Receiver:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("webhook receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        loop, runner = self._loop, self._runner

        async def shutdown() -> None:
            if runner is not None:
                await runner.cleanup()
            # requests still hanging: end them, or they are destroyed pending with the loop
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    """Block until `cond()` holds (AssertionError naming `what` after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


async def until(cond: Callable[[], bool], limit_s: float, what: str, step: float = 0.01) -> None:
    """`wait_until` for async tests (yields to the event loop between checks)."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(step)
