"""The aiohttp application: shared resources are created and closed through cleanup_ctx.

Start-up is all or nothing: each resource is closed again (an exit stack) if a later one
fails, and the failure leaves `run()` as one StartupError, so `ivr serve` exits at once with
the reason instead of living on with worker processes and a store thread but no listener.
Before it takes calls, a node closes what its previous run left open after a crash: its
calls (`ivr.call.recovery`) and half-written recordings (`ivr.call.recording`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import re
import socket
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from ivr.api import API, ApiContext, add_api_routes
from ivr.api.analytics import DATA_DIR
from ivr.api.limits import ClientLimits
from ivr.api.live import RECORDINGS, call_events, live_feed
from ivr.asr.base import Engine
from ivr.asr.engines import engine_from_settings
from ivr.asr.runner import AsrRunner
from ivr.call.recorder import StoreWriter
from ivr.call.recording import recover_partial
from ivr.call.recovery import close_crashed_calls
from ivr.call.registry import CallRegistry
from ivr.call.session import CallLimits, CallServices
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.callbacks.dispatcher import Dispatcher
from ivr.clock import shifted_clock
from ivr.config import Settings, ensure_node_id
from ivr.console import add_console_routes
from ivr.dialog.flow import Flow, FlowError
from ivr.dialog.store import FlowStore
from ivr.dialog.when import BusinessHours
from ivr.flows_watch import SERVED_FLOWS, FlowWatcher
from ivr.fulfillment import Fulfillment
from ivr.grammar import GrammarError, warm_meaning
from ivr.metrics import METRICS, Metrics, serve_metrics
from ivr.retention import AudioRetention
from ivr.server.audiosocket import AudioSocketServer
from ivr.server.http import server_options
from ivr.server.softphone import softphone
from ivr.server.websocket import SERVICES, media_stream
from ivr.store import open_store
from ivr.store.health import StoreProbe
from ivr.tts import PromptCache, PromptRenderer, TtsEngine
from ivr.webhooks import WebhookDeliverer

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
AUDIOSOCKET_PORT = web.AppKey("audiosocket_port", int)
WEBHOOKS = web.AppKey("webhooks", WebhookDeliverer)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
STORE_PROBE = web.AppKey("store_probe", StoreProbe)


class StartupError(Exception):
    """`ivr serve` could not start: the reason, one line. What had started is stopped."""


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:  # closes in reverse order of starting
        try:
            await _start_services(app, stack)
        except Exception as exc:
            log.debug("start-up failed", exc_info=exc)  # the traceback, with -v
            raise StartupError(_one_line(exc)) from exc
        yield


def _one_line(exc: Exception) -> str:
    """The reason a start-up failed: the message of the errors that explain themselves (a
    bad flow, store, model or port), else the error's kind too."""
    from ivr.asr.models import ModelError
    from ivr.config import ConfigError
    from ivr.grammar import GrammarError
    from ivr.store import StoreError
    from ivr.tts import TtsError

    explained = (StartupError, StoreError, GrammarError, ModelError, ConfigError, TtsError)
    if isinstance(exc, FlowError):
        return str(exc)  # a problem per line, as `ivr grammar check` lists them
    text = str(exc) if isinstance(exc, explained) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


async def _start_services(app: web.Application, stack: contextlib.AsyncExitStack) -> None:
    settings = app[SETTINGS]
    metrics = app[METRICS]
    if settings.audiosocket_port:  # in use: say so now, not after the models load
        try:
            for sock in listen(settings.host, settings.audiosocket_port):
                sock.close()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StartupError(f"AudioSocket port {settings.audiosocket_port}: {reason}") from exc
    node_id = ensure_node_id(settings)
    # The store first: it is quick to open, and a broken one stops start-up before the
    # models load; then what a crash of the previous run left, before any call.
    store = await open_store(settings.store_url)
    stack.push_async_callback(store.close)
    tz = ZoneInfo(settings.timezone)
    await close_crashed_calls(store, node_id, tz)
    done, removed = await asyncio.to_thread(recover_partial, app[RECORDINGS])
    if done or removed:
        log.warning("crash recovery: %d recordings completed, %d empty ones removed", done, removed)
    await store.node_seen(node_id, started=True)
    probe = app[STORE_PROBE] = StoreProbe(store, node_id, settings.store_probe_seconds)
    metrics.store_up = lambda: probe.ready
    metrics.store_errors = lambda: store.health.errors

    flows = FlowStore(settings.flow_path, settings.grammar_dir)  # a bad flow stops start-up
    engine = engine_from_settings(settings, processes=settings.asr_workers)
    asr = AsrRunner(engine, settings.asr_workers, settings.asr_queue)
    stack.callback(asr.close)  # the engine's worker processes too
    # ... and so does a word the engine cannot say; reloads are checked the same way.
    flows.check = functools.partial(check_flow_grammars, engine=engine)
    flows.check(flows.flow)
    flow = flows.flow
    warm = getattr(engine, "warm", None)
    if warm is not None:  # worker processes up, the flow's grammars compiled in each
        grammars = flow.listen_grammars()
        await asyncio.get_running_loop().run_in_executor(None, warm, grammars)
    tts = TtsEngine(default_voice=settings.tts_voice or "en-us", default_speed=settings.tts_speed)
    stack.callback(tts.close)
    await tts.synthesize("ready")  # start the worker now, not on the first call
    prompts = PromptRenderer(tts, PromptCache(settings.cache_dir / "prompts"), settings.prompts_dir)
    clock = shifted_clock(settings.clock_start)
    records = StoreWriter(store)
    stack.push_async_callback(records.close)  # after the calls: their teardowns wrote ends
    callbacks = Callbacks(store, CallbackPolicy.from_settings(settings))
    app[API] = ApiContext(callbacks, store, settings.api_tokens, callbacks.policy.tz)
    http = aiohttp.ClientSession()
    stack.push_async_callback(http.close)
    limits = CallLimits(
        max_call_s=settings.max_call_seconds,
        idle_s=settings.idle_timeout_seconds,
        interdigit_ms=settings.interdigit_ms,
        end_silence_ms=settings.end_silence_ms,
    )
    services = CallServices(
        asr=asr,
        prompts=prompts,
        fulfillment=Fulfillment(http),
        registry=CallRegistry(settings.max_calls),
        flow_store=flows,
        metrics=metrics,
        limits=limits,
        store=store,
        records=records,
        callbacks=callbacks,
        hours=BusinessHours.parse(settings.business_hours, settings.timezone),
        clock=clock,
        recordings=app[RECORDINGS] if settings.record_calls else None,
        data_dir=settings.data_dir,  # unrecognized utterances' audio (DATA_DIR/audio)
        node_id=node_id,  # on each call record: after a crash, this node closes its own
    )
    app[SERVICES] = services
    metrics.active_calls = lambda: services.registry.active
    metrics.flows = lambda: [(flows.name, flows.flow.version)]
    watcher = FlowWatcher(flows, on_result=metrics.flow_reload)  # file edits → new calls
    app[SERVED_FLOWS] = {flows.name: watcher}
    webhooks = app[WEBHOOKS] = WebhookDeliverer(
        store,
        http,
        settings.webhook_urls,
        settings.webhook_secret,
        settings.webhook_timeout_seconds,
        settings.webhook_max_attempts,
        tz=tz,
        on_attempt=metrics.webhook_attempt,
    )
    dispatcher = app[DISPATCHER] = Dispatcher(
        callbacks, settings.dispatch_interval_seconds, on_events=webhooks.wake
    )
    callbacks.on_events = webhooks.wake  # API and booking events go out at once
    webhooks.start()  # does not run without URLs: events wait in the outbox
    stack.push_async_callback(webhooks.close)  # before the HTTP session and the store
    dispatcher.start()
    stack.push_async_callback(dispatcher.close)  # before the deliverer: it makes events
    watcher.start()
    stack.push_async_callback(watcher.close)
    retention = AudioRetention(settings.data_dir, settings.audio_retention_days)
    retention.start()
    stack.push_async_callback(retention.close)
    probe.start()
    stack.push_async_callback(probe.close)
    # Calls last, once everything they use runs; at shutdown they stop first.
    audiosocket = AudioSocketServer(services)
    try:
        app[AUDIOSOCKET_PORT] = await audiosocket.start(settings.host, settings.audiosocket_port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(f"AudioSocket port {settings.audiosocket_port}: {reason}") from exc
    stack.push_async_callback(audiosocket.close)
    # Everything loaded so far lives as long as the server: keep it out of the garbage
    # collector's scans, which otherwise pause every call's event loop as calls add objects.
    gc.collect()
    gc.freeze()
    log.info(
        "ASR engine: %s; flow %s (version %s); AudioSocket on port %d; node %s; event loop %s",
        engine.describe(),
        flow.name,
        flow.version,
        app[AUDIOSOCKET_PORT],
        node_id,
        type(asyncio.get_running_loop()).__module__.split(".")[0],
    )


async def _shutting_down(app: web.Application) -> None:
    """Calls cut from now on end as `server_shutdown`, not as a lost connection."""
    if SERVICES in app:
        app[SERVICES].shutting_down = True


def check_flow_grammars(flow: Flow, engine: Engine) -> None:
    """Every grammar the flow listens with must compile for this engine (e.g. all words in
    its vocabulary): fail at start-up, not in the middle of a call."""
    errors = []
    for grammar in flow.listen_grammars():
        try:
            engine.create(grammar)
        except GrammarError as exc:
            errors.append(str(exc))
    if errors:
        raise FlowError([f"{flow.source}: {e}" for e in errors])
    # Checked: embed its examples now (start-up, or the reload's thread), not on a call.
    warm_meaning([*flow.listen_grammars(), *filter(None, [flow.faq_grammar])])


_PATH = re.compile(r"(?<![\w.])/[^\s,()]*")


def _without_paths(text: str) -> str:
    """A description for anyone who asks: each file path cut to its last part (the model's
    name stays, the server's directory layout does not)."""
    return _PATH.sub(lambda m: PurePosixPath(m[0]).name or "/", text)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: 200 while the server runs (cleanup_ctx runs before the server listens),
    whatever the database does: restarting a node mends no database, and would cut its
    calls. `ready` is what /readyz answers."""
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
            **services.registry.stats(),
            "audiosocket_port": request.app[AUDIOSOCKET_PORT],
            "webhooks": request.app[WEBHOOKS].stats(),
            "dispatcher": dispatcher,
        }
    )


def _ready(app: web.Application) -> bool:
    return app[STORE_PROBE].ready and not app[SERVICES].shutting_down


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 while this node should get calls, 503 while its store does not take
    writes (its heartbeat fails or hangs; ready again with the first that gets through, no
    restart) or it is shutting down. The store's state comes along, without error messages
    (they may name files or hosts)."""
    ready = _ready(request.app)
    body = {
        "status": "ready" if ready else "unavailable",
        "store": request.app[STORE_PROBE].status(),
        "shutting_down": request.app[SERVICES].shutting_down,
    }
    return web.json_response(body, status=200 if ready else 503)


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[METRICS] = Metrics()  # one registry per app: tests run several apps in a process
    app.cleanup_ctx.append(_services_ctx)
    app.on_shutdown.append(_shutting_down)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", serve_metrics)  # Prometheus; no token
    app.router.add_get("/v1/media-stream", media_stream)
    app.router.add_get("/v1/calls/{call_id}/events", call_events)  # token: see ivr/api/live
    app[RECORDINGS] = settings.data_dir / "recordings"
    app[DATA_DIR] = settings.data_dir  # turns' audio paths are relative to it
    app.router.add_get("/v1/live", live_feed)  # every call's events (token: see ivr/api/live)
    app.router.add_get("/v1/softphone", softphone)  # a call from the browser
    add_api_routes(app, ClientLimits.from_settings(settings))  # REST API under /v1 (ivr/api)
    add_console_routes(app)  # the web console at /console
    return app


def listen(host: str, port: int) -> list[socket.socket]:
    """The HTTP server's sockets, bound before anything loads (as aiohttp would: every
    address `host` resolves to), so that a port in use fails start-up at once."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """The server's event loop: asyncio's, or uvloop when asked for (IVR_EVENT_LOOP)."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            raise StartupError("IVR_EVENT_LOOP=uvloop, but uvloop is not installed") from exc
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


def run(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM. A start-up that fails raises StartupError (the reason,
    one line) once everything it started has stopped again."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"data directory: {exc}") from exc
    try:
        socks = listen(settings.host, settings.port)
    except OSError as exc:
        raise StartupError(f"HTTP port {settings.port}: {exc.strerror or exc}") from exc
    try:
        web.run_app(
            create_app(settings),
            sock=socks,
            print=None,
            loop=new_event_loop(settings.event_loop),
            **server_options(settings),  # the header timeout (ivr/server/http.py)
        )
    except OSError as exc:  # the sockets' listen(), after the services started and stopped
        raise StartupError(f"HTTP port {settings.port}: {exc.strerror or exc}") from exc
    finally:
        for sock in socks:
            sock.close()
