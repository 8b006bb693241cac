"""Concurrent calls: N simulated callers at once against one `ivr serve`, end to end over the
WebSocket media stream or SIP and RTP (VAD → ASR → dialog → TTS → paced playback).

    python bench/calls.py [--n 10 50 100] [--end-silence-ms 600] [--caller-procs 0]
                          [--api-rps 0 100] [--repeat 3] [--transport websocket sip]
                          [--url ws://HOST:PORT/v1/media-stream]

`--transport websocket sip` runs every N once per transport, each on a fresh server, and
prints their rows one under the other: SIP callers (ivr.sip.dial) INVITE the server's SIP
port and send and receive RTP (PCMU, 20 ms) on 127.0.0.1, keys as RFC 4733 events.

Each caller (the known demo numbers rotated) says "balance", "data usage", "what are your
opening hours" (flite voices rms/slt/awb rotated, 8 kHz mono 16-bit via sox), then keys 0
(agent), 1 (call me on this number), 1 (as soon as possible), 1 (yes): the call ends having
booked (or, for a repeat number, updated) a callback, with its webhooks sent to a local
receiver. With `--api-rps R1 R2 ...` every N is run once per rate with that much integration
traffic beside the calls (bench/api_load.py: callback list polls, 1 in 10 a claim+complete),
and the turn latency p95 of each rate is compared with the first. Call starts are spread evenly
over --stagger seconds (default 30,
as calls arrive at a real hotline; `--stagger 2.5` is the lock-step worst case); all N calls
overlap. Unless --url is given, a fresh server is started for every N (temp IVR_DATA_DIR
shared by the runs) and stopped at the end. Before each measured run, three warm-up calls (one
per known number, full flow, ~50 s; not counted) fill the TTS prompt cache and get the
decoder worker processes started (they spawn lazily: without this the first calls' turns
take ~1.5 s more). With --url only latency, underruns, calls and accuracy are measured.

Columns (per N):
  speech turn latency  p50/p95 of the caller's end of speech (last speech frame sent) → first
                       bot audio frame received, MINUS the configured end-of-speech silence
                       (the endpointer waits that long by design), i.e. what the server adds.
                       The DTMF turn is reported separately (no endpointer wait).
  underruns            delta of /healthz `underruns` over the run (frames the server's player
                       sent later than real time).
  srv CPU s/call-min   CPU time (user+sys) of the server process tree (server, pocketsphinx
                       worker processes, TTS worker) over the run / total simulated call minutes.
  caller CPU s/call-min  the same for the caller simulator process(es) (they share the machine).
  RSS MB/call          (peak RSS of the server tree during the run − idle RSS before) / N.
                       RSS is summed over the tree's processes (shared pages counted per process).
  ok / failed          calls that ended "callback_booked" / all others.
  accuracy             `recognized` events whose intent was the expected one / all recognized.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import ApiLoad, LoadStats
from common import pct

from ivr.dial import Caller, CallerTurn
from ivr.sip.dial import SipCaller

ROOT = Path(__file__).resolve().parent.parent
NUMBERS = ["+15551230001", "+15551230002", "+15551230003"]
VOICES = ["rms", "slt", "awb"]
# (text, expected intent) per spoken turn, in call order; then DTMF "0" → agent and the
# keypad answers that book a callback.
PHRASES = [
    ("balance", "balance"),
    ("data usage", "data_usage"),
    ("what are your opening hours", "opening_hours"),
]
BOOKING_KEYS = ["0", "1", "1", "1"]
API_TOKEN = "bench-token"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- audio -------------------------------------------------------------------------------


def synthesize(out_dir: Path) -> dict[tuple[str, str], Path]:
    """flite → sox: 8 kHz mono 16-bit WAVs for every (voice, phrase)."""
    for tool in ("flite", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/calls.py needs `{tool}` (apt-get install {tool})")
    wavs = {}
    for voice in VOICES:
        for text, _ in PHRASES:
            raw = out_dir / f"raw-{voice}-{text.replace(' ', '_')}.wav"
            wav = out_dir / f"{voice}-{text.replace(' ', '_')}.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True)
            subprocess.run(
                ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", str(wav)],
                check=True,
            )
            wavs[voice, text] = wav
    return wavs


# --- the process tree's CPU and memory (/proc) -------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2 :].split()  # fields from 3 (state) on


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat(int(name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_usage(root: int, pids: list[int] | None = None) -> tuple[float, float, int]:
    """(CPU seconds user+sys incl. reaped children, RSS MB summed, process count)."""
    cpu = rss = 0.0
    pids = tree_pids(root) if pids is None else pids
    for pid in pids:
        fields = _stat(pid)
        if fields is None:
            continue
        # stat fields 14-17 (utime stime cutime cstime) are at index 11-14 here
        ticks = int(fields[11]) + int(fields[12])
        if pid == root:
            ticks += int(fields[13]) + int(fields[14])  # children already waited for
        cpu += ticks / CLK_TCK
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss += int(f.read().split()[1]) * PAGE / 1e6
        except OSError:
            pass
    return cpu, rss, len(pids)


def healthz(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def server_histograms(base: str) -> dict[str, dict[float, float]]:
    """The server's histograms (labels summed): cumulative count per bound, by name."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if family.type == "histogram" and s.name.endswith("_bucket"):
                cum = out.setdefault(family.name, {})
                le = float(s.labels["le"])
                cum[le] = cum.get(le, 0.0) + s.value
    return out


def bucket_pct(cum: dict[float, float], q: float) -> float | None:
    """The bound of the bucket holding the q-th percentile (an upper estimate)."""
    if not cum or not cum.get(math.inf):
        return None
    want = cum[math.inf] * q / 100
    return next(le for le in sorted(cum) if cum[le] >= want)


class Sampler(threading.Thread):
    """Peak RSS of the server tree and peak active_calls, every `interval` seconds."""

    def __init__(self, pid: int | None, base: str, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.base, self.interval = pid, base, interval
        self.peak_rss = 0.0
        self.peak_active = 0
        self.procs = 0
        self.rtt_ms: list[float] = []
        self.cpu = 0.0  # this thread's own CPU time (it runs in the callers' process)
        self._halt = threading.Event()

    def run(self) -> None:
        n = 0
        pids: list[int] = []
        t = time.thread_time()
        while not self._halt.wait(self.interval):
            if self.pid is not None:
                if n % 8 == 0:  # the /proc scan for children costs ~2 ms: not every time
                    pids = tree_pids(self.pid)
                _, rss, procs = tree_usage(self.pid, pids)
                self.peak_rss = max(self.peak_rss, rss)
                self.procs = max(self.procs, procs)
            n += 1
            if n % 4 == 0:  # also a probe of the server's event loop lag: /healthz time
                with contextlib.suppress(Exception):
                    t0 = time.perf_counter()
                    active = healthz(self.base)["active_calls"]
                    self.rtt_ms.append((time.perf_counter() - t0) * 1000)
                    self.peak_active = max(self.peak_active, active)
        self.cpu = time.thread_time() - t

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


# --- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    data_dir: Path
    end_silence_ms: int
    max_calls: int
    asr_workers: int | None
    log_path: Path
    verbose: bool = False
    hook_port: int = 0  # webhooks go to the API load process's receiver here
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    sip_port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        self.port, self.sip_port = free_port(), free_port()
        env = dict(os.environ)
        env.update(
            IVR_SIP_PORT=str(self.sip_port),  # SIP calls' RTP: the default range, 10000-20000
            IVR_DATA_DIR=str(self.data_dir),
            IVR_END_SILENCE_MS=str(self.end_silence_ms),
            IVR_MAX_CALLS=str(self.max_calls),
            IVR_MAX_FEED_SUBSCRIBERS=str(self.max_calls),  # each caller reads its call's feed
            IVR_API_TOKENS=f"bench:{hashlib.sha256(API_TOKEN.encode()).hexdigest()}:*",
            IVR_WEBHOOK_URLS=f"http://127.0.0.1:{self.hook_port}/hook",
            IVR_WEBHOOK_SECRET="bench",
            IVR_BUSINESS_HOURS="24/7",
        )
        if self.asr_workers:
            env["IVR_ASR_WORKERS"] = str(self.asr_workers)
        self.proc = spawn_server(env, self.port, self.log_path, timeout, self.verbose)

    def stop(self) -> None:
        stop_server(self.proc, 20)


def spawn_server(
    env: dict[str, str], port: int, log_path: Path, timeout: float, verbose: bool = False
) -> subprocess.Popen[bytes]:
    """`ivr serve` on 127.0.0.1:`port` with `env`, logging to `log_path`, once healthy."""
    cmd = [sys.executable, "-m", "ivr", *(["-v"] if verbose else []), "serve"]
    cmd += ["--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--audiosocket-port", str(free_port())]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); see {log_path}")
        with contextlib.suppress(Exception):
            healthz(f"http://127.0.0.1:{port}")
            return proc
        time.sleep(0.25)
    raise SystemExit(f"server not healthy after {timeout:g} s; see {log_path}")


def stop_server(proc: subprocess.Popen[bytes] | None, wait_s: float) -> None:
    """SIGTERM, then SIGKILL after `wait_s`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# --- the callers -------------------------------------------------------------------------


class Timed:
    """A Caller that also times each turn's stages: end of speech → `recognized` event
    (endpointer silence + ASR + queueing) → first bot audio after it (dialog, prompt render,
    playout start). Hooks the base class's attribute writes; no copied logic."""

    stages: list[dict[str, float]]
    _await_reply: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stages: list[dict[str, float]] = []
        self._await_reply = False
        super().__init__(*args, **kwargs)

    @property
    def _speech_ended_at(self) -> float | None:
        return self.__dict__.get("_sea")

    @_speech_ended_at.setter
    def _speech_ended_at(self, value: float | None) -> None:
        self.__dict__["_sea"] = value
        if value is not None and hasattr(self, "stages"):
            self.stages.append({"end": value})

    @property
    def _last_bot_audio(self) -> float:
        return float(self.__dict__.get("_lba", 0.0))

    @_last_bot_audio.setter
    def _last_bot_audio(self, value: float) -> None:  # set on every bot audio frame
        self.__dict__["_lba"] = value
        if value and self._await_reply:
            self._await_reply = False
            self.stages[-1]["reply"] = value

    def _emit(self, event: dict[str, Any]) -> None:
        if event.get("event") == "recognized" and self.stages and "rec" not in self.stages[-1]:
            self.stages[-1]["rec"] = time.perf_counter()
            self._await_reply = True
        super()._emit(event)  # type: ignore[misc]


class TimedCaller(Timed, Caller):
    """Over the WebSocket media stream."""


class TimedSipCaller(Timed, SipCaller):
    """Over SIP and RTP."""


@dataclass
class CallSpec:
    index: int
    offset: float  # seconds after t0
    number: str
    wavs: list[str]


def call_turns(spec: CallSpec) -> list[CallerTurn]:
    return [
        *(CallerTurn(wav=Path(w)) for w in spec.wavs),
        *(CallerTurn(dtmf=k) for k in BOOKING_KEYS),
    ]


async def _loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.02)
        samples.append(loop.time() - t - 0.02)


def failed_call(index: int, error: str, started: float) -> dict[str, Any]:
    """The result of a call that did not run to its end (what `run_callers` returns for it)."""
    return {
        "index": index,
        "error": error,
        "started": started,
        "ended": time.time(),
        "latencies": [],
        "events": [],
        "hangup": None,
        "stages": [],
    }


def timed_caller(url: str, spec: CallSpec, max_seconds: float) -> Timed:
    """A WebSocket caller for ws://…; for a SIP URI (`sip:user@host:port|http://host:port`,
    the server's HTTP base for the call's feed after the bar), a SIP caller."""
    turns, kw = call_turns(spec), {"out": None, "max_seconds": max_seconds, "token": API_TOKEN}
    if url.startswith("sip:"):
        uri, http = url.split("|", 1)
        return TimedSipCaller(uri, http, turns, spec.number, **kw)
    return TimedCaller(url, turns, spec.number, **kw)


async def one_call(url: str, spec: CallSpec, t0: float, max_seconds: float) -> dict[str, Any]:
    """Place one call at its offset after `t0`; its result."""
    await asyncio.sleep(max(0.0, t0 + spec.offset - time.time()))
    caller = timed_caller(url, spec, max_seconds)
    assert isinstance(caller, Caller)
    started = time.time()
    try:
        rep = await caller.run()
    except Exception as exc:  # connect failure etc.: a failed call, not a crash
        return failed_call(spec.index, repr(exc), started)
    return {
        "index": spec.index,
        "started": started,
        "ended": time.time(),
        "latencies": rep.latencies,
        "events": rep.events,
        "hangup": rep.hangup,
        "stages": caller.stages,
    }


async def run_callers_async(
    url: str, specs: list[CallSpec], t0: float, max_seconds: float, hard_timeout: float
) -> dict[str, Any]:
    cpu0 = time.process_time()
    lag: list[float] = []
    stop = asyncio.Event()
    lag_task = asyncio.create_task(_loop_lag(lag, stop))
    tasks = [asyncio.create_task(one_call(url, s, t0, max_seconds)) for s in specs]
    done, pending = await asyncio.wait(tasks, timeout=hard_timeout)
    for task in pending:
        task.cancel()
    results = []
    for spec, task in zip(specs, tasks, strict=True):
        if task in done and task.exception() is None:
            results.append(task.result())
        else:
            results.append(failed_call(spec.index, "bench hard timeout", t0))
    await asyncio.gather(*pending, return_exceptions=True)
    stop.set()
    await lag_task
    return {"results": results, "cpu": time.process_time() - cpu0, "lag": lag}


def run_callers(
    url: str, specs: list[CallSpec], t0: float, max_seconds: float, hard_timeout: float
) -> dict[str, Any]:
    """Entry point of a caller worker process (also used in-process). On uvloop when it is
    installed, as the server: the simulated provider shares the machine and its CPU."""
    coro = run_callers_async(url, specs, t0, max_seconds, hard_timeout)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    out: dict[str, Any] = uvloop.run(coro)
    return out


# --- one run -----------------------------------------------------------------------------


@dataclass
class RunResult:
    n: int
    procs: int
    transport: str = "websocket"
    api_rps: float = 0.0
    api: LoadStats | None = None
    speech_lat: list[float] = field(default_factory=list)  # s, minus end silence
    dtmf_lat: list[float] = field(default_factory=list)
    to_rec: list[float] = field(default_factory=list)  # end of speech → recognized, − silence
    rec_to_audio: list[float] = field(default_factory=list)  # recognized → first bot audio
    early: int = 0  # speech turns whose "latency" was < end silence: audio of an earlier prompt
    barge_ins: int = 0
    srv_main_cpu: float | None = None
    healthz_ms: list[float] = field(default_factory=list)
    underruns: int | None = None
    frames: int | None = None
    srv_cpu: float | None = None
    caller_cpu: float = 0.0
    call_min: float = 0.0
    rss_idle: float | None = None
    rss_peak: float | None = None
    ok: int = 0
    failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    rec_ok: int = 0
    rec_total: int = 0
    misrec: dict[str, int] = field(default_factory=dict)
    overlap_s: float = 0.0
    peak_active: int = 0
    lag_p99_ms: float = 0.0
    lag_max_ms: float = 0.0
    wall: float = 0.0
    hists: dict[str, dict[float, float]] = field(default_factory=dict)  # server's, over the run


def make_specs(n: int, wavs: dict[tuple[str, str], Path], stagger: float) -> list[CallSpec]:
    specs = []
    for i in range(n):
        voice = VOICES[i % len(VOICES)]
        number = NUMBERS[(i // len(VOICES) + i) % len(NUMBERS)]  # vary voice × number pairs
        specs.append(
            CallSpec(
                i,
                stagger * i / max(1, n - 1) if n > 1 else 0.0,
                number,
                [str(wavs[voice, text]) for text, _ in PHRASES],
            )
        )
    return specs


def dispatch(
    url: str, specs: list[CallSpec], procs: int, max_seconds: float, hard_timeout: float
) -> tuple[list[dict[str, Any]], float, list[float]]:
    """Run the callers (in this process, or `procs` worker processes); results by index."""
    if procs <= 1:
        out = run_callers(url, specs, time.time() + 0.5, max_seconds, hard_timeout)
        return out["results"], out["cpu"], out["lag"]
    shares = [specs[i::procs] for i in range(procs)]
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(procs, mp_context=ctx)
    try:
        t0 = time.time() + 3.0  # time for the workers to start and import
        futures = [
            pool.submit(run_callers, url, share, t0, max_seconds, hard_timeout) for share in shares
        ]
        results: list[dict[str, Any]] = []
        cpu, lag = 0.0, []
        for share, fut in zip(shares, futures, strict=True):
            try:
                out = fut.result(timeout=max(1.0, t0 - time.time()) + hard_timeout + 30)
            except (FutureTimeout, Exception) as exc:
                results += [failed_call(s.index, f"worker: {exc!r}", t0) for s in share]
                continue
            results += out["results"]
            cpu += out["cpu"]
            lag += out["lag"]
        return sorted(results, key=lambda r: r["index"]), cpu, lag
    finally:
        workers = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in workers:  # only our own workers, by handle, if any hung
            p.join(5)
            if p.is_alive():
                p.kill()


@dataclass
class ServerMark:
    """The server's counters before a run."""

    healthz: dict[str, Any]
    hists: dict[str, dict[float, float]]
    cpu: float = 0.0  # of the process tree
    main_cpu: float = 0.0  # of the server process alone
    rss: float | None = None


def server_mark(base: str, server_pid: int | None) -> ServerMark:
    hist0: dict[str, dict[float, float]] = {}
    h0 = healthz(base)
    with contextlib.suppress(Exception):  # a server without /metrics: no such lines
        hist0 = server_histograms(base)
    mark = ServerMark(h0, hist0)
    if server_pid is not None:
        time.sleep(1.0)  # let the warm-up's garbage settle
        mark.cpu, mark.rss, _ = tree_usage(server_pid)
        mark.main_cpu, _, _ = tree_usage(server_pid, [server_pid])
    return mark


def measure(
    n: int,
    url: str,
    base: str,
    server_pid: int | None,
    wavs: dict[tuple[str, str], Path],
    args: argparse.Namespace,
) -> RunResult:
    procs = args.caller_procs or max(1, math.ceil(n / args.callers_per_proc))
    res = RunResult(n, procs)
    specs = make_specs(n, wavs, args.stagger)
    silence = args.end_silence_ms / 1000

    mark = server_mark(base, server_pid)
    res.rss_idle = mark.rss
    sampler = Sampler(server_pid, base)
    sampler.start()
    t = time.monotonic()
    try:
        results, res.caller_cpu, lag = dispatch(
            url, specs, procs, args.max_call_seconds, args.max_call_seconds + args.stagger + 30
        )
    finally:
        sampler.stop()
    if procs <= 1:
        res.caller_cpu -= sampler.cpu  # the sampler thread shares the callers' process
    res.wall = time.monotonic() - t
    if args.dump_dir is not None:
        (args.dump_dir / f"calls-n{n}.json").write_text(json.dumps(results, indent=1))
    server_delta(res, mark, base, server_pid, sampler, lag)
    for r in results:
        tally_call(res, r, silence)
    starts = [r["started"] for r in results]
    ends = [r["ended"] for r in results]
    res.overlap_s = min(ends) - max(starts)
    return res


def server_delta(
    res: RunResult,
    mark: ServerMark,
    base: str,
    server_pid: int | None,
    sampler: Sampler,
    lag: list[float],
) -> None:
    """The server's side of a run: its counters since `mark`, what the sampler saw, and the
    callers' loop lag."""
    if server_pid is not None:
        cpu1, _, _ = tree_usage(server_pid)
        res.srv_cpu = cpu1 - mark.cpu
        res.srv_main_cpu = tree_usage(server_pid, [server_pid])[0] - mark.main_cpu
        res.rss_peak = sampler.peak_rss
    h1 = healthz(base)
    with contextlib.suppress(Exception):
        for name, cum in server_histograms(base).items():
            before = mark.hists.get(name, {})
            res.hists[name] = {le: n - before.get(le, 0.0) for le, n in cum.items()}
    res.underruns = h1["underruns"] - mark.healthz["underruns"]
    res.frames = h1["frames_sent"] - mark.healthz["frames_sent"]
    res.peak_active = sampler.peak_active
    res.healthz_ms = sampler.rtt_ms
    if lag:
        res.lag_p99_ms = pct(lag, 99) * 1000
        res.lag_max_ms = max(lag) * 1000


def tally_call(res: RunResult, r: dict[str, Any], silence: float) -> None:
    """Add one call's result (from `run_callers`) to the run's."""
    reason = r.get("error") or r["hangup"] or "no hangup"
    res.reasons[reason] = res.reasons.get(reason, 0) + 1
    if r["hangup"] == "callback_booked" and not r.get("error"):
        res.ok += 1
    else:
        res.failed += 1
    res.call_min += (r["ended"] - r["started"]) / 60
    lats = r["latencies"]
    res.speech_lat += [x - silence for x in lats[: len(PHRASES)]]
    res.dtmf_lat += lats[len(PHRASES) :]
    res.early += sum(1 for x in lats[: len(PHRASES)] if x < silence)
    for st in r["stages"][: len(PHRASES)]:
        if "rec" in st:
            res.to_rec.append(st["rec"] - st["end"] - silence)
            if "reply" in st:
                res.rec_to_audio.append(st["reply"] - st["rec"])
    res.barge_ins += sum(1 for e in r["events"] if e.get("event") == "barge_in")
    recognized = [e for e in r["events"] if e.get("event") == "recognized"]
    for k, e in enumerate(recognized):
        expected = PHRASES[k][1] if k < len(PHRASES) else None
        res.rec_total += 1
        if e.get("intent") == expected:
            res.rec_ok += 1
        else:
            key = f"{expected}→{e.get('intent')} ({e.get('text')!r})"
            res.misrec[key] = res.misrec.get(key, 0) + 1


# --- output ------------------------------------------------------------------------------


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def row(r: RunResult) -> str:
    lat = r.speech_lat
    p50 = pct(lat, 50) * 1000 if lat else None
    p95 = pct(lat, 95) * 1000 if lat else None
    srv = r.srv_cpu / r.call_min if r.srv_cpu is not None and r.call_min else None
    clr = r.caller_cpu / r.call_min if r.call_min else None
    rss = (r.rss_peak - r.rss_idle) / r.n if r.rss_peak is not None and r.rss_idle else None
    acc = r.rec_ok / r.rec_total if r.rec_total else None
    api = r.api.requests / r.api.seconds if r.api and r.api.seconds else 0.0
    return (
        f"{r.transport:>9} {r.n:>4} {api:>7.0f} {r.procs:>5} {fmt(p50, '8.0f')} {fmt(p95, '8.0f')} "
        f"{fmt(r.underruns, '9')} "
        f"{fmt(srv, '10.3f')} {fmt(clr, '10.3f')} {fmt(rss, '8.2f')} {r.ok:>5} {r.failed:>6} "
        f"{fmt(acc, '8.3f')} {r.rec_ok:>4}/{r.rec_total:<4}"
    )


HEADER = (
    "transport    N api r/s procs  p50 ms   p95 ms underruns srvCPU s/  clrCPU s/  RSS MB/"
    "    ok failed accuracy   rec\n"
    "                                                          call-min   call-min     call"
)


def details(r: RunResult, silence_ms: int) -> list[str]:
    return [
        *latency_details(r, silence_ms),
        *load_details(r),
        *server_details(r),
        *outcome_details(r),
    ]


def latency_details(r: RunResult, silence_ms: int) -> list[str]:
    """Turn latencies against the target, split by stage; early turns; DTMF."""
    out = []
    if r.speech_lat:
        p95 = pct(r.speech_lat, 95) * 1000
        out.append(
            f"N={r.n}: p95 {p95:.0f} ms vs 300 ms target: {p95 / 300:.2f}x "
            f"({'meets' if p95 <= 300 else 'misses'} target); raw (incl. {silence_ms} ms "
            f"endpointer silence) p95 {p95 + silence_ms:.0f} ms"
        )
    if r.to_rec:
        out.append(
            f"   split per speech turn: end of speech → `recognized` event, minus {silence_ms} ms"
            f" (endpointing lag + ASR + queueing) p50 {pct(r.to_rec, 50) * 1000:.0f} ms p95 "
            f"{pct(r.to_rec, 95) * 1000:.0f} ms; `recognized` → next bot audio (dialog + prompt "
            f"render + playout start) p50 {pct(r.rec_to_audio, 50) * 1000:.0f} ms p95 "
            f"{pct(r.rec_to_audio, 95) * 1000:.0f} ms"
            if r.rec_to_audio
            else "   split: -"
        )
    if r.early or r.barge_ins:
        out.append(
            f"   {r.early} speech turns timed < {silence_ms} ms (bot audio before the endpointer "
            f"could end the utterance: the caller heard a >0.3 s gap in a prompt, took it for "
            f"the end and spoke over the rest); server barge-in events: {r.barge_ins}"
        )
    if r.dtmf_lat:
        # Caller starts the DTMF clock 120 ms after the key (its inter-key pause); a reply
        # that starts within that pause shows as a few ms (the next frame's arrival).
        out.append(
            f"   DTMF turn (clock starts 120 ms after the key; no endpointer wait): p50 "
            f"{pct(r.dtmf_lat, 50) * 1000:.0f} ms p95 {pct(r.dtmf_lat, 95) * 1000:.0f} ms"
            " (< 20 ms means the reply started within the 120 ms)"
        )
    return out


def load_details(r: RunResult) -> list[str]:
    """How much was running, and what it cost the server: memory and CPU."""
    out = [
        f"   {r.call_min:.1f} call-min in {r.wall:.0f} s wall; all {r.n} calls overlapped for "
        f"{r.overlap_s:.0f} s (peak active_calls seen {r.peak_active}); frames sent "
        f"{r.frames}; caller loop lag p99 {r.lag_p99_ms:.1f} ms max {r.lag_max_ms:.0f} ms"
    ]
    if r.rss_peak is not None:
        out.append(f"   server tree RSS idle {r.rss_idle:.0f} MB → peak {r.rss_peak:.0f} MB")
    if r.srv_cpu and r.srv_main_cpu is not None:
        out.append(
            f"   server CPU {r.srv_cpu:.1f} s over {r.wall:.0f} s wall "
            f"({r.srv_cpu / r.wall:.2f} cores): main process (event loop) {r.srv_main_cpu:.1f} s "
            f"({r.srv_main_cpu / r.wall:.2f} cores), ASR/TTS worker processes "
            f"{r.srv_cpu - r.srv_main_cpu:.1f} s; callers {r.caller_cpu:.1f} s"
        )
    return out


def server_details(r: RunResult) -> list[str]:
    """The server's own figures: recognition time, inbound lag, /healthz response time."""
    out = []
    asr = r.hists.get("ivr_asr_seconds", {})
    if utterances := asr.get(math.inf, 0.0):
        a50, a95 = bucket_pct(asr, 50), bucket_pct(asr, 95)
        worker = (
            f"; worker CPU per utterance {(r.srv_cpu - r.srv_main_cpu) / utterances * 1000:.0f} ms"
            " (ASR decodes, and any TTS beyond the cached prompts)"
            if r.srv_cpu and r.srv_main_cpu is not None
            else ""
        )
        out.append(
            f"   server-side recognition (queue + decode + sentence embedding), "
            f"{utterances:.0f} utterances: p50 ≤ {a50:g} s, p95 ≤ {a95:g} s{worker}"
        )
    lag = r.hists.get("ivr_inbound_lag_seconds", {})
    if lag.get(math.inf):
        out.append(
            f"   server inbound lag (caller audio handled behind real time, per call-second): "
            f"p50 ≤ {bucket_pct(lag, 50):g} s, p95 ≤ {bucket_pct(lag, 95):g} s, "
            f"p99 ≤ {bucket_pct(lag, 99):g} s"
        )
    if r.healthz_ms:
        out.append(
            f"   /healthz response time during the run (server loop lag probe): p50 "
            f"{pct(r.healthz_ms, 50):.0f} ms max {max(r.healthz_ms):.0f} ms"
        )
    return out


def outcome_details(r: RunResult) -> list[str]:
    """How the calls ended, the API traffic beside them, and what was misrecognized."""
    out = ["   endings: " + ", ".join(f"{k} ×{v}" for k, v in sorted(r.reasons.items()))]
    if r.api is not None:
        a = r.api
        lat = (
            f"p50 {pct(a.latencies, 50) * 1000:.0f} ms p95 {pct(a.latencies, 95) * 1000:.0f} ms"
            if a.latencies
            else "-"
        )
        out.append(
            f"   API traffic: {a.requests} requests in {a.seconds:.0f} s "
            f"({a.requests / max(a.seconds, 1e-9):.0f}/s, {lat}); errors {a.errors or 'none'}; "
            f"webhooks received {a.webhooks} {dict(sorted(a.webhook_types.items()))}"
        )
    if r.misrec:
        out.append("   misrecognized: " + "; ".join(f"{k} ×{v}" for k, v in r.misrec.items()))
    return out


def compare_rates(runs: list[RunResult], n: int) -> list[str]:
    """Speech turn p95 at each API rate against the first rate, each rate's turns pooled over
    its runs; with a bootstrap 90 % interval of the ratio (turns resampled per rate)."""
    pooled: dict[float, list[float]] = {}
    for r in runs:
        pooled.setdefault(r.api_rps, []).extend(r.speech_lat)
    if len(pooled) < 2:
        return []
    rates = list(pooled)
    base = np.asarray(pooled[rates[0]])
    rng = np.random.default_rng(0)
    out = [f"N={n}: speech turn p95 by API rate, turns pooled over runs (per-run p95 in ms):"]
    for rate in rates:
        per_run = [f"{pct(r.speech_lat, 95) * 1000:.0f}" for r in runs if r.api_rps == rate]
        lat = pooled[rate]
        out.append(
            f"   {rate:g}/s: p95 {pct(lat, 95) * 1000:.0f} ms over {len(lat)} turns "
            f"(runs: {', '.join(per_run)})"
        )
    for rate in rates[1:]:
        other = np.asarray(pooled[rate])
        boot = [
            np.percentile(rng.choice(other, other.size), 95)
            / np.percentile(rng.choice(base, base.size), 95)
            for _ in range(2000)
        ]
        lo, hi = np.percentile(boot, [5, 95])
        ratio = np.percentile(other, 95) / np.percentile(base, 95)
        out.append(
            f"N={n}: speech turn p95 at {rate:g}/s vs {rates[0]:g}/s: {ratio:.2f}x "
            f"(bootstrap 90 % interval {lo:.2f}–{hi:.2f}x; target ≤ 1.10x)"
        )
    return out


def log_problems(path: Path, limit: int = 8) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text(errors="replace").splitlines()
    bad = [ln for ln in lines if any(w in ln for w in ("WARNING", "ERROR", "Traceback"))]
    bad = [ln for ln in bad if "No Vosk model configured" not in ln]
    if not bad:
        return ["server log: no warnings or errors"]
    kinds: dict[str, int] = {}
    for ln in bad:
        key = ln.split(" ", 3)[-1][:110]
        key = "".join("#" if c.isdigit() else c for c in key)
        kinds[key] = kinds.get(key, 0) + 1
    return [f"server log: {len(bad)} warning/error lines ({path}):"] + [
        f"   ×{v} {k}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:limit]
    ]


# --- main --------------------------------------------------------------------------------


def warm_up(url: str, wavs: dict[tuple[str, str], Path]) -> None:
    """One call per known number and voice (fills the prompt cache, starts decoders)."""
    specs = [
        CallSpec(i, 0.3 * i, NUMBERS[i], [str(wavs[VOICES[i], t]) for t, _ in PHRASES])
        for i in range(len(NUMBERS))
    ]
    run_callers(url, specs, time.time(), 120.0, 150.0)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("--url", help="target a running server's media-stream URL (ws://…)")
    p.add_argument(
        "--transport",
        nargs="+",
        choices=("websocket", "sip"),
        default=["websocket"],
        help="how the callers connect: the WebSocket media stream, SIP and RTP (UDP), or "
        "each in turn for every N (one row each, on its own fresh server)",
    )
    p.add_argument("--end-silence-ms", type=int, default=600, help="IVR_END_SILENCE_MS")
    p.add_argument("--asr-workers", type=int, help="IVR_ASR_WORKERS (default: server's)")
    p.add_argument(
        "--stagger",
        type=float,
        default=30.0,
        help="spread call starts over this many seconds (calls last ~60 s, so all N overlap); "
        "2.5 puts every caller in lock-step, a worst case where all N speak at once",
    )
    p.add_argument(
        "--caller-procs",
        type=int,
        default=0,
        help="caller worker processes (0: one per --callers-per-proc callers)",
    )
    p.add_argument("--callers-per-proc", type=int, default=50)
    p.add_argument("--max-call-seconds", type=float, default=180.0)
    p.add_argument(
        "--api-rps",
        type=float,
        nargs="+",
        default=[0.0],
        help="run every N once per rate of integration API requests beside the calls",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the --api-rps rates this many times, interleaved (0, 100, 0, 100, …): "
        "the comparison pools each rate's turns, as one run's p95 moves with machine noise",
    )
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--server-verbose", action="store_true", help="run `ivr -v serve`")
    p.add_argument(
        "--keep", action="store_true", help="keep the temp dir (server logs, per-call JSON)"
    )
    return p


def main() -> None:
    args = parser().parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ivr-bench-calls-"))
    running: list[Server] = []  # the server of the run in progress, stopped on the way out

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    rows: list[RunResult] = []
    notes: list[str] = []
    try:
        args.dump_dir = tmp if args.keep else None
        wavs = synthesize(tmp)
        print_intro(args)
        for n in args.n:
            for transport in args.transport:
                for rps in [r for _ in range(args.repeat) for r in args.api_rps]:
                    r, more = run_one(n, rps, args, tmp, wavs, running, transport)
                    rows.append(r)
                    notes += more
        if len(args.api_rps) > 1:
            for n in args.n:
                for transport in args.transport:
                    same = [r for r in rows if r.n == n and r.transport == transport]
                    notes += compare_rates([r for r in same if r.speech_lat], n)
        print()
        for ln in notes:
            print(ln)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        for server in running:
            server.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def print_intro(args: argparse.Namespace) -> None:
    print(
        "calls bench: flow hotline, turns balance → data usage → opening hours → keys "
        "0 1 1 1 (callback booked); "
        f"starts staggered over {args.stagger:g} s; IVR_END_SILENCE_MS={args.end_silence_ms}"
    )
    print(
        f"latency = caller end of speech → first bot audio MINUS the {args.end_silence_ms} ms "
        "end-of-speech silence the endpointer waits (speech turns only)"
    )
    print(f"machine: {os.cpu_count()} CPUs; callers run in this script's process(es)\n")
    print(HEADER)


def run_one(
    n: int,
    rps: float,
    args: argparse.Namespace,
    tmp: Path,
    wavs: dict[tuple[str, str], Path],
    running: list[Server],
    transport: str = "websocket",
) -> tuple[RunResult, list[str]]:
    """One measured run of `n` calls with `rps` API requests a second beside them, on a
    fresh server unless --url: its row (printed) and its notes."""
    hook_port = free_port()
    server: Server | None = None
    if args.url:
        url = args.url
        base = "http://" + url.split("://", 1)[1].split("/", 1)[0]
        pid = None
    else:
        server = Server(
            tmp / "data",
            args.end_silence_ms,
            max(args.n) + 50,
            args.asr_workers,
            tmp / f"server-n{n}-api{rps:g}.log",
            args.server_verbose,
            hook_port,
        )
        running.append(server)
        server.start()
        url = f"ws://127.0.0.1:{server.port}/v1/media-stream"
        base = server.base
        pid = server.proc.pid if server.proc else None
    load = ApiLoad(base, API_TOKEN, rps, hook_port)
    load.start()  # its webhook receiver too: before the warm-up's calls
    if not args.no_warmup:
        warm_up(url, wavs)
    if transport == "sip":
        if server is None:
            raise SystemExit("--transport sip needs a server of the bench's own (no --url)")
        url = f"sip:hotline@127.0.0.1:{server.sip_port}|{base}"
    try:
        r = measure(n, url, base, pid, wavs, args)
    finally:
        stats = load.stop()
    r.api_rps, r.api, r.transport = rps, stats, transport
    print(row(r), flush=True)
    notes = details(r, args.end_silence_ms)
    if server is not None:
        server.stop()
        notes += [f"N={n} api {rps:g}/s " + ln for ln in log_problems(server.log_path)]
        running.remove(server)
    return r, notes


if __name__ == "__main__":
    main()
