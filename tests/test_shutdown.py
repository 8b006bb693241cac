"""A node's end on SIGTERM, against a real `ivr serve`: it takes no new calls, lets the calls
in progress end by themselves for up to IVR_DRAIN_SECONDS, cuts the rest (`server_shutdown`),
says each step in its log and exits 0. Also liveness (/livez) and readiness at capacity."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from live_server import FEED_TOKEN, LiveServer, live_server

from ivr.dial import Caller, CallerTurn

KNOWN = "+15551230001"


def get(server: LiveServer, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def until(cond: object, limit: float = 60.0) -> None:
    assert callable(cond)
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def wait_exit(server: LiveServer, limit: float) -> float:
    """Seconds until the process exited (its code must be 0)."""
    start = time.monotonic()
    assert server.proc.wait(timeout=limit) == 0, server.log_text()
    return time.monotonic() - start


def test_sigterm_lets_a_call_in_progress_finish(tmp_path: Path) -> None:
    with live_server(tmp_path, IVR_DRAIN_SECONDS="60") as server:
        caller = Caller(
            server.media_url,
            [CallerTurn(dtmf="1"), CallerTurn(dtmf="2")],  # balance, data; then hangs up
            KNOWN,
            out=None,
            token=FEED_TOKEN,
            max_seconds=90,
        )

        async def call_through_the_shutdown() -> None:
            call = asyncio.create_task(caller.run())
            await until(
                lambda: call.done() or any(e["event"] == "prompt" for e in caller.report.events)
            )
            assert not call.done(), (call.result(), server.log_text()[-3000:])
            server.proc.send_signal(signal.SIGTERM)
            await until(lambda: "shutdown: taking no new calls" in server.log_text())
            # draining: not ready, and a new call is turned away while this one goes on
            status, body = await asyncio.to_thread(get, server, "/readyz")
            assert status == 503 and body["shutting_down"] is True, body
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(server.media_url)
                assert refused.value.status == 503
            await call

        asyncio.run(call_through_the_shutdown())
        report = caller.report
        assert report.hangup == "caller_hangup", report.events  # it ended as the caller chose
        dtmf = [e["intent"] for e in report.events if e["event"] == "dtmf"]
        assert dtmf[:2] == ["balance", "data_usage"], report.events
        took = wait_exit(server, 30)
        log = server.log_text()
        assert "shutdown: taking no new calls; 1 in progress" in log, log
        assert "shutdown: every call ended" in log and "cutting" not in log, log
        assert log.index("every call ended") < log.index("shutdown: done"), log
        assert took < 15, took  # it did not wait out the 60 s once the call had ended
        with socket.socket() as s:  # and took no call meanwhile: nothing listens any more
            assert s.connect_ex(("127.0.0.1", server.audiosocket_port)) != 0


def test_sigterm_cuts_calls_still_up_after_the_drain(tmp_path: Path) -> None:
    with live_server(tmp_path, IVR_DRAIN_SECONDS="1") as server:
        silent = [CallerTurn(dtmf="-")] * 20  # never answers: only the server can end it
        caller = Caller(server.media_url, silent, KNOWN, out=None, token=FEED_TOKEN)

        async def cut() -> None:
            call = asyncio.create_task(caller.run())
            await until(
                lambda: call.done() or any(e["event"] == "prompt" for e in caller.report.events)
            )
            assert not call.done(), (call.result(), server.log_text()[-3000:])
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(call, 30)

        start = time.monotonic()
        asyncio.run(cut())
        took = wait_exit(server, 30) + time.monotonic() - start
        log = server.log_text()
        assert "shutdown: 1 s passed; cutting 1 calls" in log, log
        assert f"call {caller.call_sid} ended: server_shutdown" in log or (
            "ended: server_shutdown" in log
        ), log
        assert took < 20, took


def test_livez_and_readiness_at_capacity(tmp_path: Path) -> None:
    with live_server(tmp_path, IVR_MAX_CALLS="1") as server:
        assert get(server, "/livez") == (200, {"status": "alive"})
        status, body = get(server, "/readyz")
        assert status == 200 and body["at_capacity"] is False, body
        silent = [CallerTurn(dtmf="-")] * 3
        caller = Caller(server.media_url, silent, KNOWN, out=None, token=FEED_TOKEN)

        async def during_a_call() -> tuple[int, dict[str, object]]:
            call = asyncio.create_task(caller.run())
            await until(lambda: server.health()["active_calls"] == 1)
            during = await asyncio.to_thread(get, server, "/readyz")
            call.cancel()
            return during

        status, body = asyncio.run(during_a_call())
        assert status == 503 and body["at_capacity"] is True, body
        assert body["status"] == "unavailable"
