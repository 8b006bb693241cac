"""The aiohttp application: shared resources are created and closed through cleanup_ctx."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

from ivr.api import API, ApiContext, add_api_routes
from ivr.api.analytics import DATA_DIR
from ivr.api.limits import ClientLimits
from ivr.api.live import RECORDINGS, call_events, live_feed
from ivr.asr.base import Engine
from ivr.asr.engines import engine_from_settings
from ivr.asr.grammar import GrammarError, warm_meaning
from ivr.asr.runner import AsrRunner
from ivr.call.recorder import StoreWriter
from ivr.call.registry import CallRegistry
from ivr.call.session import CallLimits, CallServices
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.callbacks.dispatcher import Dispatcher
from ivr.clock import shifted_clock
from ivr.config import Settings
from ivr.console import add_console_routes
from ivr.dialog.flow import Flow, FlowError
from ivr.dialog.store import FlowStore
from ivr.dialog.when import BusinessHours
from ivr.flows_watch import SERVED_FLOWS, FlowWatcher
from ivr.fulfillment import Fulfillment
from ivr.metrics import METRICS, Metrics, serve_metrics
from ivr.retention import AudioRetention
from ivr.server.audiosocket import AudioSocketServer
from ivr.server.http import server_options
from ivr.server.softphone import softphone
from ivr.server.websocket import SERVICES, media_stream
from ivr.store import open_store
from ivr.tts import PromptCache, PromptRenderer, TtsEngine
from ivr.webhooks import WebhookDeliverer

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
AUDIOSOCKET_PORT = web.AppKey("audiosocket_port", int)
WEBHOOKS = web.AppKey("webhooks", WebhookDeliverer)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    flows = FlowStore(settings.flow_path, settings.grammar_dir)  # a bad flow stops start-up
    engine = engine_from_settings(settings, processes=settings.asr_workers)
    # ... and so does a word the engine cannot say; reloads are checked the same way.
    flows.check = functools.partial(check_flow_grammars, engine=engine)
    flows.check(flows.flow)
    flow = flows.flow
    metrics = app[METRICS]
    warm = getattr(engine, "warm", None)
    if warm is not None:  # worker processes up, the flow's grammars compiled in each
        grammars = flow.listen_grammars()
        await asyncio.get_running_loop().run_in_executor(None, warm, grammars)
    asr = AsrRunner(engine, settings.asr_workers, settings.asr_queue)
    tts = TtsEngine(default_voice=settings.tts_voice or "en-us", default_speed=settings.tts_speed)
    await tts.synthesize("ready")  # start the worker now, not on the first call
    prompts = PromptRenderer(tts, PromptCache(settings.cache_dir / "prompts"), settings.prompts_dir)
    store = await open_store(settings.store_url)
    clock = shifted_clock(settings.clock_start)
    records = StoreWriter(store)
    callbacks = Callbacks(store, CallbackPolicy.from_settings(settings))
    app[API] = ApiContext(callbacks, store, settings.api_tokens, callbacks.policy.tz)
    http = aiohttp.ClientSession()
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
    )
    app[SERVICES] = services
    metrics.active_calls = lambda: services.registry.active
    metrics.flows = lambda: [(flows.name, flows.flow.version)]
    watcher = FlowWatcher(flows, on_result=metrics.flow_reload)  # file edits → new calls
    app[SERVED_FLOWS] = {flows.name: watcher}
    audiosocket = AudioSocketServer(services)
    app[AUDIOSOCKET_PORT] = await audiosocket.start(settings.host, settings.audiosocket_port)
    webhooks = app[WEBHOOKS] = WebhookDeliverer(
        store,
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
    dispatcher.start()
    watcher.start()
    retention = AudioRetention(settings.data_dir, settings.audio_retention_days)
    retention.start()
    # Everything loaded so far lives as long as the server: keep it out of the garbage
    # collector's scans, which otherwise pause every call's event loop as calls add objects.
    gc.collect()
    gc.freeze()
    log.info(
        "ASR engine: %s; flow %s (version %s); AudioSocket on port %d",
        engine.describe(),
        flow.name,
        flow.version,
        app[AUDIOSOCKET_PORT],
    )
    try:
        yield
    finally:
        await retention.close()
        await watcher.close()
        await audiosocket.close()
        await dispatcher.close()  # first: it produces events for the deliverer
        await webhooks.close()  # before the HTTP session and the store it uses
        await http.close()
        await records.close()  # after the calls: their teardowns wrote their ends
        await store.close()
        tts.close()
        asr.close()


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


async def healthz(request: web.Request) -> web.Response:
    """200 once the server can take calls (cleanup_ctx runs before the server listens)."""
    services = request.app[SERVICES]
    return web.json_response(
        {
            "status": "ok",
            "asr": services.asr.engine.describe(),
            "flow": services.flow.name,
            "flow_version": services.flow.version,
            **services.registry.stats(),
            "audiosocket_port": request.app[AUDIOSOCKET_PORT],
            "webhooks": request.app[WEBHOOKS].stats(),
            "dispatcher": request.app[DISPATCHER].stats(),
        }
    )


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[METRICS] = Metrics()  # one registry per app: tests run several apps in a process
    app.cleanup_ctx.append(_services_ctx)
    app.on_shutdown.append(_shutting_down)
    app.router.add_get("/healthz", healthz)
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


def run(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        **server_options(settings),  # the header timeout (ivr/server/http.py)
    )
