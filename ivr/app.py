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
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from ivr.api import ApiContext, GrammarTools, add_api_routes
from ivr.api.conversations import text_channels
from ivr.api.limits import ClientLimits
from ivr.appkeys import (
    API,
    AUDIOSOCKET_PORT,
    CALL_LISTENERS,
    CONVERSATIONS,
    DISPATCHER,
    LISTENING,
    METRICS,
    SERVICES,
    SETTINGS,
    STORE_PROBE,
    TOKEN_GUARD,
    WEBHOOKS,
)
from ivr.asr.base import Engine
from ivr.asr.engines import engine_from_settings
from ivr.asr.runner import AsrRunner
from ivr.call.recorder import StoreWriter
from ivr.call.recording import RecordingFiles, recover_partial
from ivr.call.recovery import close_crashed_calls
from ivr.call.registry import CallRegistry
from ivr.call.services import TransferSettings
from ivr.call.session import CallLimits, CallServices
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.callbacks.dispatcher import Dispatcher
from ivr.clock import shifted_clock
from ivr.config import Settings, ensure_node_id
from ivr.console import add_console_routes
from ivr.dialog.flow import Flow, FlowError
from ivr.dialog.store import FlowStore
from ivr.dialog.when import DEFAULT_QUEUE
from ivr.flows_watch import FlowWatcher
from ivr.fulfillment import Fulfillment
from ivr.grammar import GrammarError, warm_meaning
from ivr.health import add_health_routes, drain_on_sigterm, mark_shutting_down
from ivr.metrics import Metrics, StoreSampler, serve_metrics
from ivr.nlu.complaint import default_language
from ivr.retention import AudioRetention
from ivr.server.chat import add_chat_routes
from ivr.server.http import server_options
from ivr.server.stream import StreamServer
from ivr.server.transports import AUDIOSOCKET, add_call_routes
from ivr.sip.endpoint import check_sip_port, start_sip
from ivr.store import Store, StoreError, open_store
from ivr.store.health import StoreProbe
from ivr.token_guard import RevocationPoller
from ivr.tts import PromptCache, PromptRenderer, TtsEngine
from ivr.webhooks import WebhookDeliverer

log = logging.getLogger(__name__)


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
        log.info("shutdown: stopping the services (the outbox keeps undelivered events)")
    log.info("shutdown: done")


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
    """Everything calls and the API use, started in dependency order; `stack` stops them."""
    settings, metrics = app[SETTINGS], app[METRICS]
    _check_call_ports(settings)  # in use: say so now, not after the models load
    node_id = ensure_node_id(settings)
    # The store first: it is quick to open, and a broken one stops start-up before the
    # models load; then what a crash of the previous run left, before any call.
    store = await _open_store(app, stack, node_id)
    flows, asr = await _load_flow_and_asr(settings, stack)
    prompts = await _start_prompts(settings, stack)
    records = StoreWriter(store)
    stack.push_async_callback(records.close)  # after the calls: their teardowns wrote ends
    callbacks = Callbacks(store, CallbackPolicy.from_settings(settings))
    calendar = settings.business_calendar()  # each queue's hours, holidays and closures
    http = aiohttp.ClientSession()
    stack.push_async_callback(http.close)
    services = app[SERVICES] = CallServices(
        asr=asr,
        prompts=prompts,
        fulfillment=Fulfillment(http),
        registry=CallRegistry(settings.max_calls),
        flow_store=flows,
        records=records,
        callbacks=callbacks,
        metrics=metrics,
        limits=_call_limits(settings),
        store=store,
        hours=calendar[DEFAULT_QUEUE],
        queues=calendar,
        clock=shifted_clock(settings.clock_start),
        region=settings.default_region,  # caller IDs in E.164
        recordings=_recordings_dir(settings) if settings.record_calls else None,
        data_dir=settings.data_dir,  # unrecognized utterances' audio (DATA_DIR/audio)
        node_id=node_id,  # on each call record: after a crash, this node closes its own
        transfers=_transfers(settings),  # transfer nodes' agents (IVR_AGENT_URI)
    )
    metrics.active_calls = lambda: services.registry.active
    metrics.flows = lambda: [(flows.name, flows.flow.version)]
    watcher = FlowWatcher(flows, on_result=metrics.flow_reload)  # file edits → new calls
    app[API] = _api_context(settings, services, callbacks, watcher)
    app[CONVERSATIONS] = text_channels(  # chat and SMS: the calls' flow, lookups, callbacks
        settings, store, flows, services.fulfillment, callbacks, services.clock, services.hours
    )
    _start_background(app, stack, callbacks, http, watcher)
    # Calls last, once everything they use runs; at shutdown they stop first.
    await _start_call_listeners(app, services, stack)
    # Everything loaded so far lives as long as the server: keep it out of the garbage
    # collector's scans, which otherwise pause every call's event loop as calls add objects.
    gc.collect()
    gc.freeze()
    log.info(
        "ASR engine: %s; flow %s (version %s); node %s; event loop %s",
        asr.engine.describe(),
        flows.flow.name,
        flows.flow.version,
        node_id,
        type(asyncio.get_running_loop()).__module__.split(".")[0],
    )


async def _start_call_listeners(
    app: web.Application, services: CallServices, stack: contextlib.AsyncExitStack
) -> None:
    """AudioSocket, then SIP (IVR_SIP_PORT, ivr/sip), each stopped by `stack`; what they
    listen on goes in app[LISTENING] for the start-up line."""
    settings = app[SETTINGS]
    audiosocket = StreamServer(services, AUDIOSOCKET)
    try:
        app[AUDIOSOCKET_PORT] = await audiosocket.start(settings.host, settings.audiosocket_port)
    except OSError as exc:
        raise _port_error("AudioSocket", settings.audiosocket_port, exc) from exc
    stack.push_async_callback(audiosocket.close)
    app[CALL_LISTENERS] = [audiosocket]
    listening = app[LISTENING] = [f"audiosocket tcp {address(*a)}" for a in audiosocket.addresses]
    sip = await start_sip(services, settings, stack)
    if sip is not None:
        listening.append(f"sip udp+tcp {address(*sip.transport.address)}")


def _api_context(
    settings: Settings, services: CallServices, callbacks: Callbacks, watcher: FlowWatcher
) -> ApiContext:
    """The API's narrow view: the store, callbacks, the call event bus, the served flow, the
    recognizer and the recordings; never the calls themselves."""
    asr = services.asr
    return ApiContext(
        callbacks,
        callbacks.store,
        settings.api_tokens,
        callbacks.policy.tz,
        calls=services.registry,
        flows={watcher.store.name: watcher},
        grammar=GrammarTools(
            asr, functools.partial(word_checker, asr.engine), settings.grammar_dir
        ),
        recordings=RecordingFiles(_recordings_dir(settings), settings.data_dir),
    )


def _call_limits(settings: Settings) -> CallLimits:
    return CallLimits(
        max_call_s=settings.max_call_seconds,
        idle_s=settings.idle_timeout_seconds,
        interdigit_ms=settings.interdigit_ms,
        end_silence_ms=settings.end_silence_ms,
    )


def _transfers(settings: Settings) -> TransferSettings:
    return TransferSettings(
        agents=settings.agent_uri,
        timeout_s=settings.transfer_timeout_seconds,
        api_url=settings.api_url,
    )


def _recordings_dir(settings: Settings) -> Path:
    return settings.data_dir / "recordings"


def _port_error(what: str, port: int, exc: OSError) -> StartupError:
    return StartupError(f"{what} port {port}: {exc.strerror or exc}")


def _check_call_ports(settings: Settings) -> None:
    if settings.audiosocket_port:
        _check_port_free(settings.host, settings.audiosocket_port)
    check_sip_port(settings)


def _check_port_free(host: str, port: int) -> None:
    try:
        for sock in listen(host, port):
            sock.close()
    except OSError as exc:
        raise _port_error("AudioSocket", port, exc) from exc


async def _open_store(
    app: web.Application, stack: contextlib.AsyncExitStack, node_id: str
) -> Store:
    """The store, with what the previous run's crash left closed, and its health probe."""
    settings, metrics = app[SETTINGS], app[METRICS]
    store = await open_store(settings.store_url)
    stack.push_async_callback(store.close)
    await close_crashed_calls(store, node_id, ZoneInfo(settings.timezone))
    done, removed = await asyncio.to_thread(recover_partial, _recordings_dir(settings))
    if done or removed:
        log.warning("crash recovery: %d recordings completed, %d empty ones removed", done, removed)
    await store.node_seen(node_id, started=True)
    probe = app[STORE_PROBE] = StoreProbe(store, node_id, settings.store_probe_seconds)
    metrics.store_up = lambda: probe.ready
    metrics.store_errors = lambda: store.health.errors
    probe.start()
    stack.push_async_callback(probe.close)
    await _start_revocations(app, stack, store)
    return store


async def _load_flow_and_asr(
    settings: Settings, stack: contextlib.AsyncExitStack
) -> tuple[FlowStore, AsrRunner]:
    """The served flow and the recognizer, checked against each other: a bad flow, or a
    word the engine cannot say, stops start-up; reloads are checked the same way."""
    flows = FlowStore(settings.flow_path, settings.grammar_dir)
    engine = engine_from_settings(settings, processes=settings.asr_workers)
    asr = AsrRunner(engine, settings.asr_workers, settings.asr_queue)
    stack.callback(asr.close)  # the engine's worker processes too
    grammars_ok = functools.partial(check_flow_grammars, engine=engine)
    queues = frozenset([DEFAULT_QUEUE, *settings.queues])

    def check(flow: Flow) -> None:
        check_flow_queues(flow, queues)
        grammars_ok(flow)

    flows.check = check
    flows.check(flows.flow)
    await asyncio.to_thread(default_language)  # the complaint detector's examples, embedded
    warm = getattr(engine, "warm", None)
    if warm is not None:  # worker processes up, the flow's grammars compiled in each
        grammars = flows.flow.listen_grammars()
        await asyncio.get_running_loop().run_in_executor(None, warm, grammars)
    return flows, asr


async def _start_prompts(settings: Settings, stack: contextlib.AsyncExitStack) -> PromptRenderer:
    tts = TtsEngine(default_voice=settings.tts_voice or "en-us", default_speed=settings.tts_speed)
    stack.callback(tts.close)
    await tts.synthesize("ready")  # start the worker now, not on the first call
    return PromptRenderer(tts, PromptCache(settings.cache_dir / "prompts"), settings.prompts_dir)


def _start_background(
    app: web.Application,
    stack: contextlib.AsyncExitStack,
    callbacks: Callbacks,
    http: aiohttp.ClientSession,
    watcher: FlowWatcher,
) -> None:
    """The tasks that run beside the calls: webhooks, callback dispatch, flow reloads, audio
    retention and the metrics' store counts, each stopped by `stack`."""
    settings, metrics = app[SETTINGS], app[METRICS]
    webhooks = app[WEBHOOKS] = WebhookDeliverer(
        callbacks.store,
        http,
        settings.webhook_urls,
        settings.webhook_secret,
        settings.webhook_timeout_seconds,
        settings.webhook_max_attempts,
        tz=ZoneInfo(settings.timezone),
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
    metrics.asr_runner = app[SERVICES].asr  # its queue and busy time, read at scrape
    sampler = StoreSampler(callbacks.store, metrics, settings.metrics_sample_seconds)
    sampler.start()  # the outbox and callback counts of /metrics
    stack.push_async_callback(sampler.close)


async def _start_revocations(
    app: web.Application, stack: contextlib.AsyncExitStack, store: Store
) -> None:
    """`ivr token revoke`, honoured without a restart: the revoked tokens read before the
    first request (a revoked token never works), then every few seconds."""
    revocations = RevocationPoller(
        app[TOKEN_GUARD],
        _revoked_digests(store),
        app[SETTINGS].token_revocation_poll_seconds,
        errors=(StoreError,),
    )
    app[METRICS].token_guard = app[TOKEN_GUARD]
    await revocations.start()
    stack.push_async_callback(revocations.close)


def _revoked_digests(store: Store) -> Callable[[], Awaitable[list[str]]]:
    async def load() -> list[str]:
        return [r.sha256 for r in await store.revoked_tokens()]

    return load


def word_checker(engine: Engine) -> Engine:
    """The engine to ask about a client's words. The built-in one remembers each grammar it
    has checked, right for the served flow's few but not for any text a client sends, so a
    fresh in-process one (no worker processes, the same dictionary) answers instead."""
    if engine.name == "pocketsphinx":
        from ivr.asr.pocketsphinx_engine import PocketsphinxEngine

        return PocketsphinxEngine()
    return engine


def check_flow_queues(flow: Flow, queues: frozenset[str]) -> None:
    """Every queue the flow's nodes name (`queue:`) must be configured (IVR_QUEUES), so a
    misspelt one is no silent default hours."""
    errors = [
        f"{flow.source}: nodes.{name}.queue: {node.queue!r} is not a configured queue"
        f" (IVR_QUEUES; there are: {', '.join(sorted(queues))})"
        for name, node in flow.spec.nodes.items()
        if node.queue is not None and node.queue not in queues
    ]
    if errors:
        raise FlowError(errors)


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


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[METRICS] = Metrics()  # one registry per app: tests run several apps in a process
    app.cleanup_ctx.append(_services_ctx)
    app.on_shutdown.append(mark_shutting_down)
    add_health_routes(app)  # /livez, /healthz, /readyz
    app.router.add_get("/metrics", serve_metrics)  # Prometheus; no token
    add_call_routes(app)  # the calls' WebSockets: /v1/media-stream, /v1/softphone
    # REST API and the live feeds under /v1 (ivr/api)
    add_api_routes(app, ClientLimits.from_settings(settings))
    add_console_routes(app)  # the web console at /console
    add_chat_routes(app)  # the web chat: its widget at /chat, its WebSocket /v1/chat
    return app


async def _drain_on_sigterm(app: web.Application) -> None:
    drain_on_sigterm(app)


def address(host: str, port: int, *_: object) -> str:
    """`host:port`, an IPv6 host in brackets (a socket's address: its flow info and scope
    id ignored)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def log_listening(app: web.Application, socks: list[socket.socket]) -> None:
    """The start-up line naming every address the server listens on, once all of them do
    (ports of 0 as the ones bound): ``listening: http://127.0.0.1:8080 audiosocket tcp
    127.0.0.1:9092 sip udp+tcp 127.0.0.1:5060``."""
    http = [f"http://{address(*sock.getsockname())}" for sock in socks]
    where = [*http, *app.get(LISTENING, [])]
    log.info("listening: %s", " ".join(where), extra={"event": "listening", "addresses": where})


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
        app = create_app(settings)
        app.on_startup.append(_drain_on_sigterm)  # after the services started (cleanup_ctx)
        web.run_app(
            app,
            sock=socks,
            # Called once every site listens (instead of aiohttp's "Running on" banner).
            print=lambda _banner: log_listening(app, socks),
            loop=new_event_loop(settings.event_loop),
            **server_options(settings),  # the header timeout (ivr/server/http.py)
        )
    except OSError as exc:  # the sockets' listen(), after the services started and stopped
        raise StartupError(f"HTTP port {settings.port}: {exc.strerror or exc}") from exc
    finally:
        for sock in socks:
            sock.close()
