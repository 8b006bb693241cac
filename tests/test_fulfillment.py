"""Fulfillment against a real local HTTP endpoint (the integrator's system) and the demo data."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.dialog.types import Fetch
from ivr.fulfillment import Fulfillment


async def integrator() -> TestServer:
    async def account(request: web.Request) -> web.Response:
        if request.query.get("account") == "404":
            return web.json_response({"error": "no such account"}, status=404)
        if request.query.get("account") == "slow":
            await asyncio.sleep(2)
        if request.query.get("account") == "broken":
            return web.Response(text="<html>oops</html>", status=500)
        return web.json_response({"balance": "12 dollars", "item": request.query["item"], "n": 3})

    app = web.Application()
    app.router.add_get("/account", account)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def fetch(url: str, account: str, timeout_ms: int = 1000) -> Fetch:
    return Fetch("http", "balance", url, {"account": account}, timeout_ms)


async def test_http_fetch_values_timeout_and_errors() -> None:
    server = await integrator()
    url = str(server.make_url("/account"))
    try:
        async with aiohttp.ClientSession() as http:
            f = Fulfillment(http)
            done = await f.fetch(fetch(url, "1234"))
            assert done.error is None
            assert done.values == {"balance": "12 dollars", "item": "balance", "n": "3"}
            assert (await f.fetch(fetch(url, "404"))).error == "not_found"
            assert (await f.fetch(fetch(url, "slow", timeout_ms=200))).error == "timeout"
            assert (await f.fetch(fetch(url, "broken"))).error == "http 500"
            dead = "http://127.0.0.1:9/account"  # nothing listens on the discard port
            assert (await f.fetch(fetch(dead, "1"))).error.startswith("http error")  # type: ignore[union-attr]
    finally:
        await server.close()


async def test_demo_fetch() -> None:
    async with aiohttp.ClientSession() as http:
        f = Fulfillment(http)
        done = await f.fetch(Fetch("demo", "balance", None, {"caller": "+15551230001"}, 1000))
        assert done.values is not None and "23 dollars" in done.values["balance"]
        missing = await f.fetch(Fetch("demo", "balance", None, {"caller": "+1000"}, 1000))
        assert missing.error == "not_found"
        unknown = await f.fetch(Fetch("carrier-pigeon", "balance", None, {}, 1000))
        assert unknown.error is not None and "unknown source" in unknown.error
