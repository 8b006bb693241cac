"""Prometheus metrics: the collector's arithmetic, then GET /metrics of a real `ivr serve`
after real calls (keys, flite speech, an Asterisk recording out of grammar, silence) with a
webhook URL that refuses connections."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from audio_fixtures import recording
from live_server import FEED_TOKEN, LiveServer, free_port, live_server
from prometheus_client.parser import text_string_to_metric_families
from speech import flite

from ivr.api import hash_token
from ivr.audio.pcm import write_wav
from ivr.dial import Caller, CallerTurn, CallReport
from ivr.metrics import OUTCOMES, Metrics, outcome

KNOWN = "+15551230001"
TOKEN = "metrics-token-0123456789"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of the exposition by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(got: Samples, metric: str, **labels: str) -> float:
    return got[(metric, frozenset(labels.items()))]


# --- the collector -------------------------------------------------------------------------


def test_outcomes_are_a_small_fixed_set() -> None:
    assert outcome("callback_booked") == "callback_booked"
    assert outcome("caller_hangup") == "caller_hangup"
    assert outcome("handoff: agent_requested") == "handoff"
    assert outcome("idle for 10 s") == "idle_timeout"
    assert outcome("protocol error: media payload is not valid base64") == "error"
    assert outcome("transport error: reset") == "error"
    assert outcome("expected the call to start, got Audio") == "error"
    assert outcome("flow_loop") == "other"
    assert outcome("a reason some flow made up") == "other"


def test_exposition_of_counters_and_histograms() -> None:
    m = Metrics()
    m.active_calls = lambda: 3
    m.flows = lambda: [("hotline", "abc123")]
    for reason in ("caller_hangup", "caller_hangup", "idle for 10 s", "weird"):
        m.call_ended(reason)
    for latency in (0.05, 0.3, 0.31, 99.0):
        m.turn_latency.observe(latency)
    m.asr_time("grammar", 0.2)
    m.dialog_turn("no_match", "main_menu")
    m.dialog_turn("no_input", "main_menu")
    m.dialog_turn("prompt", "main_menu")  # not counted
    m.webhook_attempt(False)
    m.webhook_attempt(True)
    m.flow_reload(False)
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    got = samples(body.decode())
    assert value(got, "ivr_active_calls") == 3
    assert value(got, "ivr_calls_total", outcome="caller_hangup") == 2
    assert value(got, "ivr_calls_total", outcome="idle_timeout") == 1
    assert value(got, "ivr_calls_total", outcome="other") == 1
    assert {labels for name, labels in got if name == "ivr_calls_total"} == {
        frozenset({("outcome", o)}) for o in OUTCOMES
    }
    assert value(got, "ivr_turn_latency_seconds_bucket", le="0.1") == 1
    assert value(got, "ivr_turn_latency_seconds_bucket", le="0.3") == 2  # bounds inclusive
    assert value(got, "ivr_turn_latency_seconds_bucket", le="5.0") == 3
    assert value(got, "ivr_turn_latency_seconds_bucket", le="+Inf") == 4
    assert value(got, "ivr_turn_latency_seconds_count") == 4
    assert abs(value(got, "ivr_turn_latency_seconds_sum") - 99.66) < 1e-9
    assert value(got, "ivr_asr_seconds_count", mode="grammar") == 1
    assert value(got, "ivr_asr_seconds_count", mode="free") == 0
    assert value(got, "ivr_no_match_total", node="main_menu") == 1
    assert value(got, "ivr_no_input_total", node="main_menu") == 1
    assert value(got, "ivr_webhook_deliveries_total") == 2
    assert value(got, "ivr_webhook_delivery_failures_total") == 1
    assert value(got, "ivr_flow_reloads_total", result="rejected") == 1
    assert value(got, "ivr_flow_reloads_total", result="ok") == 0
    assert value(got, "ivr_flow_info", name="hotline", version="abc123") == 1
    # Each Metrics has its own registry: a second one starts from zero.
    other = samples(Metrics().render()[0].decode())
    assert value(other, "ivr_calls_total", outcome="caller_hangup") == 0


# --- a real server --------------------------------------------------------------------------


def scrape(server: LiveServer) -> tuple[Samples, str]:
    """GET /metrics without a token (the API has tokens configured: this is not the API)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
        return samples(r.read().decode()), r.headers["Content-Type"]


async def calls(server: LiveServer, tmp: Path) -> dict[str, Any]:
    wav = tmp / "balance.wav"
    write_wav(wav, flite("balance", wav, voice="rms"))

    def caller(turns: list[CallerTurn]) -> Caller:
        return Caller(server.media_url, turns, KNOWN, out=None, max_seconds=60, token=FEED_TOKEN)

    scenarios = {
        "keyed": caller([CallerTurn(dtmf="1")]),
        "speech": caller([CallerTurn(wav=wav)]),
        "out_of_grammar": caller([CallerTurn(wav=recording("vm-password"))]),  # "password"
        "silent": caller([CallerTurn(dtmf="-")]),  # one no-input, then hangs up at the reprompt
    }
    tasks = {name: asyncio.create_task(c.run()) for name, c in scenarios.items()}
    keyed = scenarios["keyed"]
    for _ in range(500):  # until the calls are under way
        if any(e["event"] == "prompt" for e in keyed.report.events):
            break
        await asyncio.sleep(0.02)
    during = await asyncio.to_thread(scrape, server)
    reports: dict[str, Any] = {name: await task for name, task in tasks.items()}
    reports["during"] = during
    return reports


def test_metrics_after_real_calls(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    env = {"IVR_WEBHOOK_URLS": closed, "IVR_API_TOKENS": f"ops:{hash_token(TOKEN)}:*"}
    with live_server(tmp_path, **env) as server:
        r = asyncio.run(calls(server, tmp_path))
        version = server.health()["flow_version"]
        got: Samples = {}
        for _ in range(100):  # webhook attempts run on their own schedule
            got, content_type = scrape(server)
            if got.get(("ivr_webhook_delivery_failures_total", frozenset())):
                break
            time.sleep(0.1)
        unauthorized = asyncio.run(get_v1_flows_without_token(server))

    reports: dict[str, CallReport] = {k: v for k, v in r.items() if k != "during"}
    for name, report in reports.items():
        assert report.hangup == "caller_hangup", (name, report.events)
    during, _ = r["during"]
    assert value(during, "ivr_active_calls") >= 1
    assert content_type.startswith("text/plain")
    assert value(got, "ivr_active_calls") == 0
    assert value(got, "ivr_calls_total", outcome="caller_hangup") == 4
    assert value(got, "ivr_turn_latency_seconds_count") > 0
    assert value(got, "ivr_asr_seconds_count", mode="free") > 0  # the main menu: free speech
    assert value(got, "ivr_no_input_total", node="main_menu") >= 1
    assert value(got, "ivr_no_match_total", node="main_menu") >= 1
    assert value(got, "ivr_webhook_delivery_failures_total") >= 1
    assert value(got, "ivr_webhook_deliveries_total") >= value(
        got, "ivr_webhook_delivery_failures_total"
    )
    assert value(got, "ivr_flow_info", name="hotline", version=version) == 1
    assert value(got, "ivr_flow_reloads_total", result="ok") == 0
    assert value(got, "process_resident_memory_bytes") > 0
    assert unauthorized == 401  # the token-free /metrics does not open the API


async def get_v1_flows_without_token(server: LiveServer) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.port}/v1/flows") as resp,
    ):
        return resp.status
