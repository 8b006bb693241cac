"""Prometheus metrics of one server (``GET /metrics``, no token: it is for the monitoring
system).

The call path only adds to plain Python numbers: every update happens on the event loop's
thread, so they need no locks (prometheus-client's own metric classes take a mutex on every
update). A collector turns the numbers into metric families when Prometheus scrapes. Each
app has its own CollectorRegistry, so several apps in one process (tests) do not clash.

A scrape never waits for the database: what only the store knows (the outbox's undelivered
events, the open callbacks) is counted by `StoreSampler` every `SAMPLE_SECONDS` and the
collector reads the last counts, with their age (`ivr_store_sample_age_seconds`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import platform
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

import ivr
from ivr.appkeys import METRICS
from ivr.store import PARKED_UNTIL, CallbackCounts, OutboxCounts, Store, StoreError
from ivr.tasks import cancel_and_wait

if TYPE_CHECKING:
    from ivr.asr.runner import AsrRunner
    from ivr.token_guard import TokenGuard

log = logging.getLogger(__name__)

OUTCOMES = (
    "callback_booked",
    "callback_not_booked",
    "caller_goodbye",
    "caller_hangup",
    "handoff",
    "transferred",  # put through to an agent (a transfer node)
    "busy",
    "idle_timeout",
    "max_duration",
    "error",
    "other",
)
"""`ivr_calls_total{outcome}`: a small fixed set (every one is exported, zeros included)."""

_ERRORS = (
    "protocol error",
    "transport error",
    "internal_error",
    "no start message",
    "expected the call",
)
LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
ASR_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0)
ASR_MODES = ("grammar", "free")
INBOUND_LAG_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
WEBHOOK_RESULTS = ("delivered", "failed")
SAMPLE_SECONDS = 15.0
"""How often `StoreSampler` counts the outbox and the callbacks (`IVR_METRICS_SAMPLE_SECONDS`):
a fraction of a typical scrape interval's alerting window, and two small indexed queries."""
OVERDUE_GRACE = timedelta(minutes=5)
"""A scheduled callback is overdue this long after its due time. The dispatcher hands due
callbacks out every second, so one still scheduled 5 minutes late was not handed out: the
dispatcher is not running or not keeping up, or the callback is out of attempts (a
rescheduled one) and waits for an agent to claim it."""


def outcome(reason: str) -> str:
    """A call's end reason (free text, partly from the flow) → one of OUTCOMES."""
    if reason in OUTCOMES:
        return reason
    if reason.startswith("handoff"):
        return "handoff"
    if reason.startswith("idle for"):
        return "idle_timeout"
    if reason.startswith(_ERRORS):
        return "error"
    return "other"


class Histogram:
    """Observations counted into fixed buckets (upper bounds, inclusive)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative counts per bound, as the exposition format has them."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, None), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound is None else repr(float(bound)), float(running)))
        return out


class Metrics:
    """What the server counts; the hooks are cheap enough for every call event."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.turn_latency = Histogram(LATENCY_BUCKETS)
        self.asr = {mode: Histogram(ASR_BUCKETS) for mode in ASR_MODES}
        self.inbound_lag = Histogram(INBOUND_LAG_BUCKETS)
        self.no_match: Counter[str] = Counter()
        self.no_input: Counter[str] = Counter()
        self.webhook_results = dict.fromkeys(WEBHOOK_RESULTS, 0)
        self.flow_reloads = {"ok": 0, "rejected": 0}
        self.store_sample: StoreSample | None = None  # by StoreSampler
        self.asr_runner: AsrRunner | None = None  # its load, read at scrape (set by the app)
        self.token_guard: TokenGuard | None = None  # failed token attempts (set by the app)
        # Read at scrape time from the owners of the state (set by the app).
        self.active_calls: Callable[[], int] = lambda: 0
        self.flows: Callable[[], Iterable[tuple[str, str]]] = lambda: ()
        self.store_up: Callable[[], bool] = lambda: True  # readiness: see ivr.store.health
        self.store_errors: Callable[[], int] = lambda: 0
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)  # CPU, memory, open files (read at scrape)

    # --- hooks ------------------------------------------------------------------------

    def call_ended(self, reason: str) -> None:
        self.calls[outcome(reason)] += 1

    def dialog_turn(self, kind: str, node: str) -> None:
        """A dialog Turn; only no-match and no-input are counted (per node)."""
        if kind == "no_match":
            self.no_match[node] += 1
        elif kind == "no_input":
            self.no_input[node] += 1

    def asr_time(self, mode: str, seconds: float) -> None:
        self.asr[mode].observe(seconds)

    def inbound_lag_sample(self, seconds: float) -> None:
        self.inbound_lag.observe(seconds)

    def webhook_attempt(self, ok: bool) -> None:
        """An event sent to every URL: accepted by all (delivered) or not (failed)."""
        self.webhook_results["delivered" if ok else "failed"] += 1

    def flow_reload(self, ok: bool) -> None:
        self.flow_reloads["ok" if ok else "rejected"] += 1

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition (Prometheus text, or OpenMetrics if `accept` asks) and its type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


class _Collector:
    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterable[Metric]:
        m = self.m
        yield from _build_metrics(m)
        yield from _call_metrics(m)
        yield from _timing_metrics(m)
        yield from _asr_load_metrics(m)
        yield from _dialog_metrics(m)
        yield from _webhook_metrics(m)
        yield from _flow_metrics(m)
        yield from _store_metrics(m)
        yield from _sampled_metrics(m)
        if m.token_guard is not None:
            yield from m.token_guard.metrics()


def _build_metrics(m: Metrics) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "ivr_build_info",
        "The server's version, Python and ASR engine (always 1)",
        labels=["version", "python", "engine"],
    )
    engine = m.asr_runner.engine.name if m.asr_runner is not None else ""
    info.add_metric([ivr.__version__, platform.python_version(), engine], 1)
    yield info


def _call_metrics(m: Metrics) -> Iterator[Metric]:
    """Calls in progress and ended."""
    active = GaugeMetricFamily("ivr_active_calls", "Calls in progress")
    active.add_metric([], m.active_calls())
    yield active
    calls = CounterMetricFamily("ivr_calls", "Calls ended, by outcome", labels=["outcome"])
    for name, count in m.calls.items():
        calls.add_metric([name], count)
    yield calls


def _timing_metrics(m: Metrics) -> Iterator[Metric]:
    """Histograms: turn latency, recognition time, inbound lag."""
    yield HistogramMetricFamily(
        "ivr_turn_latency_seconds",
        "From the caller's input being decided (end of speech, keys complete) to the"
        " first frame of the bot's answer",
        buckets=m.turn_latency.buckets(),
        sum_value=m.turn_latency.total,
    )
    asr = HistogramMetricFamily(
        "ivr_asr_seconds",
        "Time to recognize one utterance (waiting for a worker included), by grammar or"
        " free-speech mode",
        labels=["mode"],
    )
    for mode, hist in m.asr.items():
        asr.add_metric([mode], hist.buckets(), hist.total)
    yield asr
    yield HistogramMetricFamily(
        "ivr_inbound_lag_seconds",
        "How far behind real time the server handles callers' audio (sampled once a"
        " second per call): the far end sends in real time, so a growing lag means the"
        " server is not keeping up and ends of speech are heard late",
        buckets=m.inbound_lag.buckets(),
        sum_value=m.inbound_lag.total,
    )


def _asr_load_metrics(m: Metrics) -> Iterator[Metric]:
    """The recognizer's jobs (`AsrRunner`): absent until the app has one."""
    asr = m.asr_runner
    if asr is None:
        return
    for name, text, number in (
        ("ivr_asr_workers", "ASR workers (IVR_ASR_WORKERS)", asr.workers),
        (
            "ivr_asr_slots",
            "Recognition jobs let in at once (IVR_ASR_WORKERS + IVR_ASR_QUEUE); the ones"
            " past the workers queue for a worker",
            asr.slots,
        ),
        ("ivr_asr_jobs_in_flight", "Recognition jobs holding a slot", asr.in_flight),
        (
            "ivr_asr_jobs_waiting",
            "Recognition jobs waiting for a slot: every slot is taken, callers wait",
            asr.waiting,
        ),
    ):
        yield GaugeMetricFamily(name, text, value=number)
    yield CounterMetricFamily("ivr_asr_jobs", "Recognition jobs finished", value=asr.jobs)
    yield CounterMetricFamily(
        "ivr_asr_busy_seconds",
        "Recognition jobs' durations summed (slot taken → result): its rate is the jobs in"
        " flight on average, over ivr_asr_workers the workers' load",
        value=asr.busy_s,
    )


def _dialog_metrics(m: Metrics) -> Iterator[Metric]:
    """No-match and no-input counts by dialog node."""
    for name, counts, text in (
        ("ivr_no_match", m.no_match, "Speech or keys that matched nothing, by dialog node"),
        ("ivr_no_input", m.no_input, "Prompts the caller did not answer, by dialog node"),
    ):
        family = CounterMetricFamily(name, text, labels=["node"])
        for node, count in sorted(counts.items()):
            family.add_metric([node], count)
        yield family


def _webhook_metrics(m: Metrics) -> Iterator[Metric]:
    """Webhook delivery attempts by result (parked events: `ivr_outbox_events`)."""
    attempts = CounterMetricFamily(
        "ivr_webhook_deliveries",
        "Webhook delivery attempts (an event sent to its URLs): delivered (every URL accepted"
        " it) or failed (some URL did not; it is retried, or parked when out of attempts)",
        labels=["result"],
    )
    for result, count in m.webhook_results.items():
        attempts.add_metric([result], count)
    yield attempts
    yield CounterMetricFamily(
        "ivr_webhook_delivery_failures",
        'Deprecated, removed in the next release: ivr_webhook_deliveries_total{result="failed"}',
        value=m.webhook_results["failed"],
    )


def _flow_metrics(m: Metrics) -> Iterator[Metric]:
    """Flow reloads and the served flows' versions."""
    reloads = CounterMetricFamily(
        "ivr_flow_reloads",
        "Attempts to switch a served flow to a new version",
        labels=["result"],
    )
    for result, count in m.flow_reloads.items():
        reloads.add_metric([result], count)
    yield reloads
    info = GaugeMetricFamily(
        "ivr_flow_info",
        "The served version of each flow (always 1)",
        labels=["name", "version"],
    )
    for name, version in m.flows():
        info.add_metric([name, version], 1)
    yield info


def _store_metrics(m: Metrics) -> Iterator[Metric]:
    """The database's health."""
    yield GaugeMetricFamily(
        "ivr_store_up",
        "1 while the database takes writes (the node's heartbeat gets through), else 0",
        value=int(m.store_up()),
    )
    yield CounterMetricFamily(
        "ivr_store_errors",
        "Database errors the store met (I/O, disk full, locks, lost connections...)",
        value=m.store_errors(),
    )


def _sampled_metrics(m: Metrics) -> Iterator[Metric]:
    """The store's counts, as `StoreSampler` last saw them (absent before its first)."""
    sample = m.store_sample
    age = math.inf if sample is None else time.monotonic() - sample.at
    yield GaugeMetricFamily(
        "ivr_store_sample_age_seconds",
        "Age of the outbox and callback counts (sampled every IVR_METRICS_SAMPLE_SECONDS;"
        " a sample the store fails keeps the last counts; +Inf before the first)",
        value=age,
    )
    if sample is None:
        return
    outbox = GaugeMetricFamily(
        "ivr_outbox_events",
        "Undelivered webhook events: due (waiting for the deliverer), pending (in flight or"
        " waiting to be retried), parked (out of attempts, kept for replay)",
        labels=["state"],
    )
    for state in ("due", "pending", "parked"):
        outbox.add_metric([state], getattr(sample.outbox, state))
    yield outbox
    callbacks = GaugeMetricFamily(
        "ivr_callbacks_open", "Open agent callbacks, by status", labels=["status"]
    )
    callbacks.add_metric(["scheduled"], sample.callbacks.scheduled)
    callbacks.add_metric(["claimed"], sample.callbacks.claimed)
    yield callbacks
    yield GaugeMetricFamily(
        "ivr_callbacks_overdue",
        f"Callbacks still scheduled {OVERDUE_GRACE.total_seconds() / 60:g} minutes or more"
        " after they were due: nobody took them",
        value=sample.callbacks.overdue,
    )


@dataclass(frozen=True, slots=True)
class StoreSample:
    outbox: OutboxCounts
    callbacks: CallbackCounts
    at: float
    """time.monotonic() when they were counted."""


class StoreSampler:
    """Counts the outbox and the open callbacks every `interval_s` into `metrics`, in a
    background task; `start()`, then `close()`. A sample the store fails keeps the last
    counts (their age grows), logged once until a sample succeeds again."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        interval_s: float = SAMPLE_SECONDS,
        *,
        grace: timedelta = OVERDUE_GRACE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.metrics = store, metrics
        self.interval_s, self.grace, self.clock = interval_s, grace, clock
        self.failing = False
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> bool:
        """One sample into `metrics`; False if the store failed it."""
        now = self.clock()
        try:
            outbox = await self.store.outbox_counts(now, PARKED_UNTIL)
            callbacks = await self.store.callback_counts(now - self.grace)
        except Exception as exc:
            if not self.failing:
                self._log_failure(exc)
            self.failing = True
            return False
        if self.failing:
            log.info("metrics: the outbox and callbacks are counted again")
            self.failing = False
        self.metrics.store_sample = StoreSample(outbox, callbacks, time.monotonic())
        return True

    def _log_failure(self, exc: Exception) -> None:
        """Once per outage: a store error in one line, anything else (a bug) with its trace."""
        last = self.metrics.store_sample
        kept = "none yet" if last is None else f"from {time.monotonic() - last.at:.0f} s ago"
        known = isinstance(exc, StoreError)
        log.warning(
            "metrics: cannot count the outbox and callbacks (%s); keeping the last counts (%s)",
            exc if known else repr(exc),
            kept,
            exc_info=None if known else exc,
        )

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="metrics-sampler")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


async def serve_metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})
