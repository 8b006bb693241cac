"""Prometheus metrics: the collector's arithmetic, the store sampler, then GET /metrics of a
real `ivr serve` after real calls (keys, flite speech, an Asterisk recording out of grammar,
silence, a callback booked by keypad) with a webhook URL that refuses connections; and the
Grafana dashboard (deploy/grafana), whose every query must name metrics that scrape has."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import platform
import re
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from audio_fixtures import recording
from live_server import FEED_TOKEN, LiveServer, free_port, live_server
from prometheus_client.parser import text_string_to_metric_families
from speech import flite

import ivr
from ivr.api import hash_token
from ivr.asr.pocketsphinx_engine import PocketsphinxEngine
from ivr.asr.runner import AsrRunner
from ivr.audio.pcm import write_wav
from ivr.dial import Caller, CallerTurn, CallReport
from ivr.metrics import OUTCOMES, OVERDUE_GRACE, Metrics, StoreSampler, outcome
from ivr.store import PARKED_UNTIL, Store, StoreUnavailable

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "ivr-dashboard.json"
KNOWN = "+15551230001"
BOOKS = "+15551230002"  # the caller who books a callback
EVENTS = 11  # webhook events at least: call.started and call.ended of 5 calls, a booking
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
    assert value(got, "ivr_webhook_deliveries_total", result="delivered") == 1
    assert value(got, "ivr_webhook_deliveries_total", result="failed") == 1
    assert value(got, "ivr_webhook_delivery_failures_total") == 1  # deprecated, one release
    assert ("ivr_webhook_deliveries_total", frozenset()) not in got  # only the labelled ones
    assert value(got, "ivr_flow_reloads_total", result="rejected") == 1
    assert value(got, "ivr_flow_reloads_total", result="ok") == 0
    assert value(got, "ivr_flow_info", name="hotline", version="abc123") == 1
    (build,) = [labels for name, labels in got if name == "ivr_build_info"]
    assert dict(build) == {
        "version": ivr.__version__,
        "python": platform.python_version(),
        "engine": "",  # no ASR runner yet
    }
    # Without a runner or a store sample: no ASR load, no counts, and a sample age of +Inf.
    assert not [name for name, _ in got if name.startswith(("ivr_asr_jobs", "ivr_outbox"))]
    assert value(got, "ivr_store_sample_age_seconds") == math.inf
    # Each Metrics has its own registry: a second one starts from zero.
    other = samples(Metrics().render()[0].decode())
    assert value(other, "ivr_calls_total", outcome="caller_hangup") == 0


def test_asr_load_is_read_from_the_runner_at_scrape() -> None:
    m = Metrics()
    runner = AsrRunner(PocketsphinxEngine(), workers=2, queue=3)
    try:
        m.asr_runner = runner
        runner.in_flight, runner.waiting, runner.jobs, runner.busy_s = 5, 4, 17, 8.5
        got = samples(m.render()[0].decode())
    finally:
        runner.close()
    assert value(got, "ivr_asr_workers") == 2
    assert value(got, "ivr_asr_slots") == 5
    assert value(got, "ivr_asr_jobs_in_flight") == 5
    assert value(got, "ivr_asr_jobs_waiting") == 4
    assert value(got, "ivr_asr_jobs_total") == 17
    assert value(got, "ivr_asr_busy_seconds_total") == 8.5
    (build,) = [dict(labels) for name, labels in got if name == "ivr_build_info"]
    assert build["engine"] == "pocketsphinx"


# --- the store sampler ---------------------------------------------------------------------


async def test_sampler_counts_outbox_and_callbacks(store: Store) -> None:
    now = datetime.now(UTC)
    for i in range(3):
        await store.add_event("call.ended", {"i": i}, now=now - timedelta(seconds=1))
    (parked, retried) = await store.claim_due_events(2, now, timedelta(seconds=30))
    await store.mark_failed(parked.id, "HTTP 500", PARKED_UNTIL)
    await store.mark_failed(retried.id, "HTTP 500", now + timedelta(minutes=1))
    await store.upsert_open_callback("+15550601", now - OVERDUE_GRACE - timedelta(seconds=1))
    await store.upsert_open_callback("+15550602", now - OVERDUE_GRACE + timedelta(minutes=1))
    held, _ = await store.upsert_open_callback("+15550603", now - timedelta(days=1))
    await store.claim(held.id, "agent-1")
    m = Metrics()
    sampler = StoreSampler(store, m, clock=lambda: now)
    assert await sampler.sample()
    got = samples(m.render()[0].decode())
    assert value(got, "ivr_outbox_events", state="due") == 1
    assert value(got, "ivr_outbox_events", state="pending") == 1
    assert value(got, "ivr_outbox_events", state="parked") == 1
    assert value(got, "ivr_callbacks_open", status="scheduled") == 2
    assert value(got, "ivr_callbacks_open", status="claimed") == 1
    assert value(got, "ivr_callbacks_overdue") == 1  # the one past the grace, not the claimed
    assert 0 <= value(got, "ivr_store_sample_age_seconds") < 5


async def test_sampler_keeps_the_last_counts_when_the_store_fails(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.add_event("call.ended", {}, now=datetime.now(UTC) - timedelta(seconds=1))
    m = Metrics()
    sampler = StoreSampler(store, m)
    assert await sampler.sample()
    assert m.store_sample is not None
    m.store_sample = replace(m.store_sample, at=m.store_sample.at - 100)  # 100 s ago

    async def down(*args: object) -> None:
        raise StoreUnavailable("database: connection refused", "ConnectionRefusedError")

    monkeypatch.setattr(store, "outbox_counts", down)
    with caplog.at_level(logging.INFO, logger="ivr.metrics"):
        assert not await sampler.sample()
        assert not await sampler.sample()  # still down: logged once
        got = samples(m.render()[0].decode())
        assert value(got, "ivr_outbox_events", state="due") == 1  # kept
        assert value(got, "ivr_store_sample_age_seconds") >= 100  # and says how old
        monkeypatch.undo()
        assert await sampler.sample()
    lines = [r.getMessage() for r in caplog.records if r.name == "ivr.metrics"]
    assert len(lines) == 2, lines
    assert "cannot count the outbox and callbacks (database: connection refused)" in lines[0]
    assert "keeping the last counts (from 100 s ago)" in lines[0]
    assert lines[1] == "metrics: the outbox and callbacks are counted again"
    assert value(samples(m.render()[0].decode()), "ivr_store_sample_age_seconds") < 5


async def test_sampler_task_samples_until_closed(store: Store) -> None:
    m = Metrics()
    sampler = StoreSampler(store, m, interval_s=0.01)
    sampler.start()
    try:
        for _ in range(200):
            if m.store_sample is not None:
                break
            await asyncio.sleep(0.01)
        first = m.store_sample
        assert first is not None
        await asyncio.sleep(0.05)
        assert m.store_sample is not None and m.store_sample.at > first.at  # again and again
    finally:
        await sampler.close()
    last = m.store_sample
    await asyncio.sleep(0.05)
    assert m.store_sample is last  # stopped


# --- a real server --------------------------------------------------------------------------


def scrape(server: LiveServer) -> tuple[Samples, str]:
    """GET /metrics without a token (the API has tokens configured: this is not the API)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
        return samples(r.read().decode()), r.headers["Content-Type"]


async def calls(server: LiveServer, tmp: Path) -> dict[str, Any]:
    wav = tmp / "balance.wav"
    write_wav(wav, flite("balance", wav, voice="rms"))

    def caller(turns: list[CallerTurn], number: str = KNOWN) -> Caller:
        return Caller(server.media_url, turns, number, out=None, max_seconds=60, token=FEED_TOKEN)

    scenarios = {
        "keyed": caller([CallerTurn(dtmf="1")]),
        "speech": caller([CallerTurn(wav=wav)]),
        "out_of_grammar": caller([CallerTurn(wav=recording("vm-password"))]),  # "password"
        "silent": caller([CallerTurn(dtmf="-")]),  # one no-input, then hangs up at the reprompt
        # agent, yes, "tomorrow afternoon", yes: a callback booked for tomorrow 14:00
        "callback": caller([CallerTurn(dtmf=k) for k in "0141"], BOOKS),
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


def settled(got: Samples) -> bool:
    """The webhook attempts (on their own schedule) have all failed and parked, and the
    store sampler has counted the callback since."""
    failed = got.get(("ivr_webhook_deliveries_total", frozenset({("result", "failed")})), 0)
    parked = got.get(("ivr_outbox_events", frozenset({("state", "parked")})), 0)
    booked = got.get(("ivr_callbacks_open", frozenset({("status", "scheduled")})), 0)
    return failed >= EVENTS and parked == failed and booked >= 1


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Five real calls (one books a callback) on a live server whose webhook URL refuses
    connections and which parks an event after one failed attempt; then its /metrics."""
    tmp = tmp_path_factory.mktemp("metrics")
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    env = {
        "IVR_WEBHOOK_URLS": closed,
        "IVR_WEBHOOK_MAX_ATTEMPTS": "1",
        "IVR_METRICS_SAMPLE_SECONDS": "0.2",
        "IVR_API_TOKENS": f"ops:{hash_token(TOKEN)}:*",
    }
    with live_server(tmp, **env) as server:
        r = asyncio.run(calls(server, tmp))
        health = server.health()
        got: Samples = {}
        for _ in range(150):
            got, content_type = scrape(server)
            if settled(got):
                break
            time.sleep(0.1)
        unauthorized = asyncio.run(get_v1_flows_without_token(server))
    return {
        "reports": r,
        "health": health,
        "got": got,
        "content_type": content_type,
        "unauthorized": unauthorized,
    }


def test_metrics_after_real_calls(served: dict[str, Any]) -> None:
    r, got = served["reports"], served["got"]
    reports: dict[str, CallReport] = {k: v for k, v in r.items() if k != "during"}
    for name, report in reports.items():
        expected = "callback_booked" if name == "callback" else "caller_hangup"
        assert report.hangup == expected, (name, report.events)
    during, _ = r["during"]
    assert value(during, "ivr_active_calls") >= 1
    assert served["content_type"].startswith("text/plain")
    assert value(got, "ivr_active_calls") == 0
    assert value(got, "ivr_calls_total", outcome="caller_hangup") == 4
    assert value(got, "ivr_calls_total", outcome="callback_booked") == 1
    assert value(got, "ivr_turn_latency_seconds_count") > 0
    assert value(got, "ivr_asr_seconds_count", mode="free") > 0  # the main menu: free speech
    assert value(got, "ivr_no_input_total", node="main_menu") >= 1
    assert value(got, "ivr_no_match_total", node="main_menu") >= 1
    version = served["health"]["flow_version"]
    assert value(got, "ivr_flow_info", name="hotline", version=version) == 1
    assert value(got, "ivr_flow_reloads_total", result="ok") == 0
    assert value(got, "process_resident_memory_bytes") > 0
    assert served["unauthorized"] == 401  # the token-free /metrics does not open the API


def test_operator_metrics_after_a_call_books_a_callback(served: dict[str, Any]) -> None:
    got = served["got"]
    sampled = {k: v for k, v in got.items() if k[0].startswith(("ivr_outbox", "ivr_callbacks"))}
    assert settled(got), sampled
    # Webhooks: every attempt failed (nothing listens), and each event was parked at once.
    failed = value(got, "ivr_webhook_deliveries_total", result="failed")
    assert failed >= EVENTS and value(got, "ivr_webhook_deliveries_total", result="delivered") == 0
    assert value(got, "ivr_webhook_delivery_failures_total") == failed  # the deprecated name
    assert value(got, "ivr_outbox_events", state="parked") == failed
    assert value(got, "ivr_outbox_events", state="due") == 0
    assert value(got, "ivr_outbox_events", state="pending") == 0
    # The booked callback: scheduled for tomorrow, so not overdue; sampled moments ago.
    assert value(got, "ivr_callbacks_open", status="scheduled") == 1
    assert value(got, "ivr_callbacks_open", status="claimed") == 0
    assert value(got, "ivr_callbacks_overdue") == 0
    assert 0 <= value(got, "ivr_store_sample_age_seconds") < 5
    # ASR: jobs ran and ended; their time is some of the recognition time the calls saw.
    assert value(got, "ivr_asr_workers") >= 1
    assert value(got, "ivr_asr_slots") > value(got, "ivr_asr_workers")
    assert value(got, "ivr_asr_jobs_in_flight") == 0 and value(got, "ivr_asr_jobs_waiting") == 0
    assert value(got, "ivr_asr_jobs_total") >= value(got, "ivr_asr_seconds_count", mode="free")
    recognizing = sum(value(got, "ivr_asr_seconds_sum", mode=m) for m in ("grammar", "free"))
    assert 0 < value(got, "ivr_asr_busy_seconds_total") <= recognizing + 0.5
    (build,) = [dict(labels) for name, labels in got if name == "ivr_build_info"]
    assert build["version"] == ivr.__version__ and build["python"] == platform.python_version()
    assert build["engine"] and build["engine"] in served["health"]["asr"]
    assert value(got, "ivr_store_up") == 1


async def get_v1_flows_without_token(server: LiveServer) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.port}/v1/flows") as resp,
    ):
        return resp.status


# --- the Grafana dashboard -----------------------------------------------------------------

_NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
_NOT_METRICS |= {"and", "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or Grafana's label_values()) reads: what is
    left of it without strings, Grafana variables, label matchers, ranges, grouping labels,
    function names and keywords."""
    expr = re.sub(r"label_values\(([^,)]*)[^)]*\)", r"\1", expr)  # its label is no metric
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", expr):
        if not expr[m.end() :].lstrip().startswith("(") and m.group().lower() not in _NOT_METRICS:
            names.add(m.group())
    return names


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def queries(doc: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and the variables' queries."""
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]
            exprs.append(q["query"] if isinstance(q, dict) else q)
    return exprs


def test_metric_names_of_a_promql_expression() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, mode) (rate(ivr_asr_seconds_bucket{instance=~"$i",'
        ' mode!="x{y}"}[$__rate_interval]))) / on (instance) group_left(version) ivr_build_info'
        " > bool 1e3 or vector(0) * sum(ivr_a_total) by (node) unless process_cpu_seconds_total"
    )
    assert metric_names(expr) == {
        "ivr_asr_seconds_bucket",
        "ivr_build_info",
        "ivr_a_total",
        "process_cpu_seconds_total",
    }
    assert metric_names("label_values(ivr_build_info, instance)") == {"ivr_build_info"}


def test_the_dashboard_is_a_grafana_dashboard_on_a_prometheus_variable() -> None:
    doc = dashboard()
    assert doc["schemaVersion"] >= 39 and doc["uid"] and doc["title"] and doc["id"] is None
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    for p in panels:
        assert p["datasource"] == source and p["targets"], p["title"]
        assert all(t["datasource"] == source and t["expr"] for t in p["targets"]), p["title"]
        box = p["gridPos"]
        assert box["x"] + box["w"] <= 24 and box["h"] > 0, p["title"]
    # What issue 13 asks the dashboard to show.
    used = set().union(*map(metric_names, queries(doc)))
    assert used >= {
        "ivr_calls_total",
        "ivr_turn_latency_seconds_bucket",
        "ivr_asr_seconds_bucket",
        "ivr_asr_jobs_in_flight",
        "ivr_asr_jobs_waiting",
        "ivr_asr_busy_seconds_total",
        "ivr_inbound_lag_seconds_bucket",
        "ivr_outbox_events",
        "ivr_callbacks_open",
        "ivr_callbacks_overdue",
        "ivr_store_up",
        "ivr_webhook_deliveries_total",
        "ivr_flow_reloads_total",
        "ivr_build_info",
    }
    exprs = " ".join(queries(doc))
    assert "histogram_quantile(0.5, " in exprs and "histogram_quantile(0.95, " in exprs
    assert "ivr_webhook_delivery_failures_total" not in exprs  # the deprecated name


def test_every_dashboard_query_names_a_metric_the_server_exports(served: dict[str, Any]) -> None:
    """So the dashboard cannot drift from the server: each name in each query is a sample
    name in the live server's scrape."""
    exported = {name for name, _ in served["got"]}
    for expr in queries(dashboard()):
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, (expr, names - exported)
