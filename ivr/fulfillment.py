"""Fulfillment: answering a dialog's Fetch from the demo data or the integrator's HTTP endpoint."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from ivr.dialog.demo import DemoProvider
from ivr.dialog.types import Fetch, FetchDone

log = logging.getLogger(__name__)


class Fulfillment:
    def __init__(self, http: aiohttp.ClientSession, demo: DemoProvider | None = None) -> None:
        self._http = http
        self._demo = demo or DemoProvider()

    def segment(self, variables: dict[str, str]) -> str | None:
        """The caller's customer segment (e.g. "vip"), from the demo accounts."""
        account = self._demo.find(variables)
        return account.segment if account is not None else None

    async def fetch(self, action: Fetch) -> FetchDone:
        try:
            if action.source == "demo":
                values = self._demo.lookup(action.item, action.params)
                return FetchDone(values) if values is not None else FetchDone(error="not_found")
            if action.source == "http" and action.url:
                return await self._http_fetch(action)
            return FetchDone(error=f"unknown source {action.source!r}")
        except Exception as exc:  # a provider bug must not end the call: the flow falls back
            log.exception("fetch %s/%s failed", action.source, action.item)
            return FetchDone(error=f"error: {exc}")

    async def _http_fetch(self, action: Fetch) -> FetchDone:
        assert action.url is not None
        timeout = aiohttp.ClientTimeout(total=action.timeout_ms / 1000)
        try:
            async with self._http.get(
                action.url, params={"item": action.item, **action.params}, timeout=timeout
            ) as resp:
                if resp.status == 404:
                    return FetchDone(error="not_found")
                if resp.status != 200:
                    return FetchDone(error=f"http {resp.status}")
                body: Any = await resp.json(content_type=None)
        except TimeoutError:
            return FetchDone(error="timeout")
        except (aiohttp.ClientError, ValueError) as exc:
            return FetchDone(error=f"http error: {exc}")
        if not isinstance(body, dict):
            return FetchDone(error="http body is not a JSON object")
        return FetchDone({str(k): str(v) for k, v in body.items()})
