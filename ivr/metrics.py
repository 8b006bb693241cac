"""Prometheus metrics of one server (``GET /metrics``, no token: it is for the monitoring
system).

The call path only adds to plain Python numbers: every update happens on the event loop's
thread, so they need no locks (prometheus-client's own metric classes take a mutex on every
update). A collector turns the numbers into metric families when Prometheus scrapes. Each
app has its own CollectorRegistry, so several apps in one process (tests) do not clash.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ivr.appkeys import METRICS

OUTCOMES = (
    "callback_booked",
    "callback_not_booked",
    "caller_goodbye",
    "caller_hangup",
    "handoff",
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
        self.webhook_deliveries = 0
        self.webhook_failures = 0
        self.flow_reloads = {"ok": 0, "rejected": 0}
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
        self.webhook_deliveries += 1
        self.webhook_failures += not ok

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
        yield from _call_metrics(m)
        yield from _timing_metrics(m)
        yield from _dialog_metrics(m)
        yield from _webhook_metrics(m)
        yield from _flow_metrics(m)
        yield from _store_metrics(m)


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
    """Webhook delivery attempts and failures."""
    yield CounterMetricFamily(
        "ivr_webhook_deliveries",
        "Webhook delivery attempts (an event sent to its URLs), failed or not",
        value=m.webhook_deliveries,
    )
    yield CounterMetricFamily(
        "ivr_webhook_delivery_failures",
        "Webhook delivery attempts that failed (some URL did not accept the event)",
        value=m.webhook_failures,
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


async def serve_metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})
