"""The aiohttp application: shared resources are created and closed through cleanup_ctx."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ivr.asr.engines import load_engine
from ivr.asr.runner import AsrRunner
from ivr.config import Settings

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
ASR = web.AppKey("asr", AsrRunner)


async def _asr_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    engine = load_engine(settings.asr_engine, settings.vosk_model, processes=settings.asr_workers)
    runner = AsrRunner(engine, settings.asr_workers, settings.asr_queue)
    log.info("ASR engine: %s", engine.describe())
    app[ASR] = runner
    yield
    runner.close()


async def healthz(request: web.Request) -> web.Response:
    """200 once the speech resources are loaded (cleanup_ctx runs before the server listens)."""
    runner = request.app[ASR]
    return web.json_response({"status": "ok", "asr": runner.engine.describe()})


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_asr_ctx)
    app.router.add_get("/healthz", healthz)
    return app


def run(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    web.run_app(create_app(settings), host=settings.host, port=settings.port)
