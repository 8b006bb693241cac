"""Health and the end of a node's life: liveness (`/livez`, and `/healthz` with the node's
state), readiness (`/readyz`) and the drain on SIGTERM.

On SIGTERM (or SIGINT) `drain` runs first, with HTTP still up: the node takes no new calls
(readiness answers 503, the call endpoints refuse calls, the AudioSocket listener closes) and
gives the calls in progress up to IVR_DRAIN_SECONDS to end by themselves. Then aiohttp's
shutdown: it stops listening, cuts the calls still up (they end as `server_shutdown`), and
the start-up's exit stack stops the rest in reverse: webhook deliveries in flight get their
grace, undelivered events stay in the outbox for the next process. Each step is one log
line.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from pathlib import PurePosixPath

from aiohttp import web

from ivr.appkeys import (
    AUDIOSOCKET_PORT,
    CALL_LISTENERS,
    DISPATCHER,
    SERVICES,
    SETTINGS,
    STORE_PROBE,
    WEBHOOKS,
)

log = logging.getLogger(__name__)


_PATH = re.compile(r"(?<![\w.])/[^\s,()]*")


def _without_paths(text: str) -> str:
    """A description for anyone who asks: each file path cut to its last part (the model's
    name stays, the server's directory layout does not)."""
    return _PATH.sub(lambda m: PurePosixPath(m[0]).name or "/", text)


async def livez(request: web.Request) -> web.Response:
    """Liveness, and nothing else: 200 while the process serves HTTP."""
    return web.json_response({"status": "alive"})


async def healthz(request: web.Request) -> web.Response:
    """Liveness with the node's state: 200 while the server runs (cleanup_ctx runs before
    the server listens), whatever the database does: restarting a node mends no database,
    and would cut its calls. `ready` is what /readyz answers."""
    services = request.app[SERVICES]
    dispatcher = request.app[DISPATCHER].stats()
    if dispatcher.get("last_error"):
        dispatcher["last_error"] = _without_paths(str(dispatcher["last_error"]))
    return web.json_response(
        {
            "status": "ok",
            "ready": _ready(request.app),
            "asr": _without_paths(services.asr.engine.describe()),
            "flow": services.flow.name,
            "flow_version": services.flow.version,
            # IVR_TIMEZONE: the zone the API's times are given in (their offsets say only
            # how far from UTC), which the console shows every time in
            "timezone": request.app[SETTINGS].timezone,
            **services.registry.stats(),
            "audiosocket_port": request.app[AUDIOSOCKET_PORT],
            "webhooks": request.app[WEBHOOKS].stats(),
            "dispatcher": dispatcher,
        }
    )


def _ready(app: web.Application) -> bool:
    return app[STORE_PROBE].ready and not app[SERVICES].shutting_down and not _full(app)


def _full(app: web.Application) -> bool:
    registry = app[SERVICES].registry
    return registry.active >= registry.max_calls


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 while this node should get calls, 503 while its store does not take
    writes (its heartbeat fails or hangs; ready again with the first that gets through, no
    restart), while it has IVR_MAX_CALLS calls (a balancer sends the next one elsewhere) or
    while it is shutting down. The store's state comes along, without error messages
    (they may name files or hosts)."""
    ready = _ready(request.app)
    body = {
        "status": "ready" if ready else "unavailable",
        "store": request.app[STORE_PROBE].status(),
        "shutting_down": request.app[SERVICES].shutting_down,
        "at_capacity": _full(request.app),
    }
    return web.json_response(body, status=200 if ready else 503)


def add_health_routes(app: web.Application) -> None:
    app.router.add_get("/livez", livez)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def drain_on_sigterm(app: web.Application) -> None:
    """Let SIGTERM (and SIGINT) drain the node before aiohttp shuts it down: installed over
    aiohttp's own handlers, once the services run. A second signal stops at once."""
    loop = asyncio.get_running_loop()
    draining: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        if draining:
            log.warning("shutdown: signalled again; not waiting for the calls")
            raise web.GracefulExit
        draining.append(loop.create_task(_drain_then_exit(app), name="drain"))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)


async def _drain_then_exit(app: web.Application) -> None:
    try:
        await drain(app)
    finally:
        # Raised from a loop callback, GracefulExit (a SystemExit) leaves run_app's loop,
        # as aiohttp's own signal handler does: the shutdown proper starts.
        asyncio.get_running_loop().call_soon(_exit)


def _exit() -> None:
    raise web.GracefulExit


async def drain(app: web.Application) -> None:
    """No new calls (readiness 503, the call endpoints refuse them, the AudioSocket
    listener closes), then up to IVR_DRAIN_SECONDS for those in progress to end."""
    services, limit = app[SERVICES], app[SETTINGS].drain_seconds
    services.shutting_down = True
    for listener in app.get(CALL_LISTENERS, []):
        listener.stop_listening()
    registry = services.registry
    log.info("shutdown: taking no new calls; %d in progress", registry.active)
    if not registry.active:
        return
    log.info("shutdown: waiting up to %g s for the calls in progress to end", limit)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while registry.active and loop.time() - start < limit:  # noqa: ASYNC110 (a count, no event)
        await asyncio.sleep(0.1)
    if registry.active:
        log.warning("shutdown: %g s passed; cutting %d calls", limit, registry.active)
    else:
        log.info("shutdown: every call ended, after %.1f s", loop.time() - start)


async def mark_shutting_down(app: web.Application) -> None:
    """aiohttp's shutdown (after the drain, or without one): calls cut from now on end as
    `server_shutdown`, not as a lost connection."""
    if SERVICES in app:
        app[SERVICES].shutting_down = True
