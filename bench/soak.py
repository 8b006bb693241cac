"""Soak: minutes of mixed legitimate calls against one `ivr serve`, with a share of callers
misbehaving and one store outage, checking that nothing leaks (issue 10, reliability).

    python bench/soak.py [--minutes 10] [--rate 0.5] [--misbehave 0.05]
                         [--outage-at SECONDS] [--outage-seconds 30] [--max-calls 64]
                         [--seed 1] [--keep]

A fresh server is started (temp IVR_DATA_DIR, SQLite store, IVR_API_TOKENS with a calls.read
token for the call feeds and the API) and warmed up (one call per script and known number,
not counted: fills the TTS prompt cache, starts the ASR workers). Then calls arrive as a
Poisson process at --rate per second for --minutes, and the bench waits until they have all
ended.

Legitimate callers (ivr.dial.Caller: real-time 20 ms frames, flite voices rms/slt/awb/kal
at 8 kHz via sox, the known demo numbers rotated) follow one of these scripts:
  balance_hangup  says "check my balance", hangs up at "anything else?"  → caller_hangup
  data_goodbye    says "data usage", then "goodbye then"                 → caller_goodbye
  agent_callback  keys 0 (agent), 1 (this number), 1 (asap), 1 (yes)     → callback_booked
  keypad_survey   keys 1 (balance), says "no thanks", keys 5 (survey)    → caller_goodbye
A call near the store outage may also end callback_not_booked (the booking's write failed:
the caller hears the flow's fallback); that is served, as the flow intends.

A --misbehave share of the calls (kinds in a shuffled rotation, Twilio Media Streams spoken
by hand with ivr.transports.twilio.TwilioClient over aiohttp):
  abort       TCP connection dropped (RST, no close handshake) 1 s into the greeting prompt
  deep_json   a 1.1 KB text of 1100 nested `[` mid-prompt
  duplicate   a second stream with the callSid of a (legitimate) call in progress
  oversize    a 2 MB text frame mid-prompt
  garbage     in turn: not JSON, an unknown event, a binary frame, a media payload not base64
  bad_caller  a whole call (ivr.dial.Caller) from `<script>alert(1)</script>`, keys 1, hangs up

The store outage: at --outage-at seconds (default: half-way) the bench holds SQLite's write
lock on IVR_DATA_DIR/ivr.db (`BEGIN EXCLUSIVE` from its own connection) for --outage-seconds,
then rolls back. Calls must keep being served; records written then may be lost (counted).
A call is "near the outage" when it overlapped [lock taken − 15 s, lock released + 45 s]:
its record's writes may have queued behind the lock (the recorder gives up on a call's
record 10 s after its end), so a record of it missing or left open is reported apart.

Once a minute (columns):
  min         minutes since the measured start (after the warm-up)
  placed      calls started so far (legitimate + misbehaving)
  legit ok    legitimate calls ended with their expected end / ended so far
  misb        misbehaving calls done so far
  active      /healthz active_calls now (calls holding a slot)
  open        call records with no end in the store now (SELECT ... ended_at IS NULL)
  RSS MB      mean RSS of the server's process tree over the minute (server, ASR/TTS
              workers; summed per process)
  p50/p95 ms  speech turn latency of the calls ended in the minute: the caller's end of
              speech → first bot audio, MINUS the configured end-of-speech silence
  underruns   /healthz `underruns` since the start (frames sent later than real time)
  errors      ERROR lines in the server log so far
  store       "OUTAGE" while the bench holds the lock

At the end: calls placed and served, misbehaving calls by kind and how they ended (as the
caller saw it / the end reason in the store), the outage's cost (records lost or left open),
turn latency, underruns, the server log's ERROR lines and tracebacks grouped by first line,
and PASS/FAIL for: 0 leaked slots (active_calls 0 after the last call), 0 calls left open in
the store (apart from calls near the outage, reported separately), every legitimate call
served, RSS flat (first vs last minute of arrivals within 10 %).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calls import free_port, healthz, spawn_server, stop_server, tree_pids, tree_usage
from common import pct

from ivr.api import token_entry
from ivr.dial import Caller, CallerTurn
from ivr.transports.messages import PlayAudio, SetMark
from ivr.transports.twilio import TwilioClient

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "soak-bench-token-0123456789abcdef"
NUMBERS = ["+15551230001", "+15551230002", "+15551230003"]
VOICES = ["rms", "slt", "awb", "kal"]
INTENTS = {  # what each spoken phrase should be heard as
    "check my balance": "balance",
    "data usage": "data_usage",
    "goodbye then": "goodbye",
    "no thanks": "no",
}
BAD_CALLER = "<script>alert(1)</script>"
FRAME_PCM = b"\x00" * 320  # 20 ms of 8 kHz 16-bit silence
NEAR_OUTAGE_S = 45.0  # after the outage ends, writes queued behind it may still be failing
NEAR_BEFORE_S = 15.0  # a call that ended this soon before it may have its end write in flight


# --- scripts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    name: str
    steps: tuple[str, ...]  # "say:<phrase>" or "key:<digits>"
    ends: frozenset[str]  # the expected end reasons
    outage_ends: frozenset[str] = frozenset()  # also expected for a call near the outage

    def turns(self, wavs: dict[tuple[str, str], Path], voice: str) -> list[CallerTurn]:
        out = []
        for step in self.steps:
            kind, _, arg = step.partition(":")
            out.append(CallerTurn(wav=wavs[voice, arg]) if kind == "say" else CallerTurn(dtmf=arg))
        return out


SCRIPTS = [
    Script("balance_hangup", ("say:check my balance",), frozenset({"caller_hangup"})),
    Script("data_goodbye", ("say:data usage", "say:goodbye then"), frozenset({"caller_goodbye"})),
    Script(
        "agent_callback",
        ("key:0", "key:1", "key:1", "key:1"),
        frozenset({"callback_booked"}),
        frozenset({"callback_not_booked"}),
    ),
    Script("keypad_survey", ("key:1", "say:no thanks", "key:5"), frozenset({"caller_goodbye"})),
]
MISBEHAVIOURS = ["abort", "deep_json", "duplicate", "oversize", "garbage", "bad_caller"]


def synthesize(out_dir: Path) -> dict[tuple[str, str], Path]:
    """flite → sox: 8 kHz mono 16-bit WAVs for every (voice, phrase)."""
    for tool in ("flite", "sox"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/soak.py needs `{tool}` (apt-get install {tool})")
    wavs = {}
    for voice in VOICES:
        for text in INTENTS:
            raw = out_dir / f"raw-{voice}-{text.replace(' ', '_')}.wav"
            wav = out_dir / f"{voice}-{text.replace(' ', '_')}.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True)
            subprocess.run(
                ["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed", str(wav)],
                check=True,
            )
            wavs[voice, text] = wav
    return wavs


# --- the server ------------------------------------------------------------------------------


@dataclass
class SoakServer:
    data_dir: Path
    log_path: Path
    max_calls: int
    end_silence_ms: int
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def media_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/media-stream"

    @property
    def db(self) -> Path:
        return self.data_dir / "ivr.db"

    def start(self, timeout: float = 90.0) -> None:
        self.port = free_port()
        env = dict(os.environ)
        for key in [k for k in env if k.startswith("IVR_")]:
            del env[key]  # the bench's settings only
        env.update(
            IVR_DATA_DIR=str(self.data_dir),
            IVR_END_SILENCE_MS=str(self.end_silence_ms),
            IVR_MAX_CALLS=str(self.max_calls),
            IVR_MAX_FEED_SUBSCRIBERS=str(2 * self.max_calls),  # each legit caller has one
            IVR_API_TOKENS=token_entry("soak", TOKEN, ["calls.read"]),
            IVR_BUSINESS_HOURS="24/7",
            IVR_TIMEZONE="UTC",
        )
        self.proc = spawn_server(env, self.port, self.log_path, timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        stop_server(self.proc, 30)


def open_in_store(db: Path) -> int | None:
    """Call records with no end (None if the database cannot be read now)."""
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
            row = conn.execute("SELECT COUNT(*) FROM calls WHERE ended_at IS NULL").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0])


# --- measurements in threads: RSS, the outage ------------------------------------------------


class RssSampler(threading.Thread):
    """The server tree's RSS (MB) every `interval` s, as (monotonic time, MB)."""

    def __init__(self, pid: int, interval: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            _, rss, _ = tree_usage(self.pid, tree_pids(self.pid))
            self.samples.append((time.monotonic(), rss))

    def mean(self, t0: float, t1: float) -> float | None:
        values = [mb for t, mb in self.samples if t0 <= t < t1]
        return sum(values) / len(values) if values else None

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


@dataclass
class Outage:
    """Holds the store's write lock for `seconds`, `at` seconds after the start."""

    db: Path
    at: float
    seconds: float
    started: float | None = None  # monotonic, once the lock is held
    ended: float | None = None
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.started is not None and self.ended is None

    def run(self, t0: float, halt: threading.Event) -> None:
        if halt.wait(max(0.0, t0 + self.at - time.monotonic())):
            return
        try:
            # Not chmod: the bench runs as root, whose writes a read-only file does not stop.
            conn = sqlite3.connect(self.db, timeout=15, isolation_level=None)
            try:
                conn.execute("BEGIN EXCLUSIVE")  # waits for the server's write in flight
                self.started = time.monotonic()
                halt.wait(self.seconds)
                conn.execute("ROLLBACK")
                self.ended = time.monotonic()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            self.error = repr(exc)
            if self.started is not None and self.ended is None:
                self.ended = time.monotonic()

    def near(self, start: float, end: float) -> bool:
        """Whether a call (monotonic start/end) overlapped the outage or its aftermath."""
        if self.started is None:
            return False
        until = (self.ended or time.monotonic()) + NEAR_OUTAGE_S
        return start <= until and end >= self.started - NEAR_BEFORE_S


# --- legitimate calls ------------------------------------------------------------------------


@dataclass
class LegitResult:
    index: int
    script: Script
    voice: str
    number: str
    call_sid: str
    started: float  # monotonic
    ended: float = 0.0
    call_id: str | None = None  # the server's, from the feed's call_started
    hangup: str | None = None
    error: str | None = None
    speech_lat: list[float] = field(default_factory=list)  # minus end silence
    dtmf_lat: list[float] = field(default_factory=list)
    misheard: list[str] = field(default_factory=list)
    record: dict[str, Any] | None = None  # the store's call, looked up at the end
    near_outage: bool = False

    @property
    def admitted(self) -> bool:
        return self.call_id is not None and self.call_id != self.call_sid

    @property
    def expected(self) -> bool:
        ends = self.script.ends | (self.script.outage_ends if self.near_outage else frozenset())
        return self.admitted and self.error is None and self.hangup in ends


def caller_kwargs() -> dict[str, Any]:
    """`token=` for Caller if it takes one (the call feed needs calls.read)."""
    return {"token": TOKEN} if "token" in inspect.signature(Caller).parameters else {}


async def legit_call(
    res: LegitResult,
    url: str,
    wavs: dict[tuple[str, str], Path],
    silence_s: float,
    max_seconds: float,
    live: dict[int, Caller],
) -> LegitResult:
    caller = Caller(
        url,
        res.script.turns(wavs, res.voice),
        res.number,
        out=None,
        max_seconds=max_seconds,
        **caller_kwargs(),
    )
    caller.call_sid = res.call_sid
    caller.report.call_id = res.call_sid
    live[res.index] = caller
    try:
        rep = await caller.run()
    except Exception as exc:  # connect failure, a feed refused: a failed call
        res.error = repr(exc)
        rep = caller.report
    finally:
        live.pop(res.index, None)
        res.ended = time.monotonic()
    res.call_id = rep.call_id
    res.hangup = rep.hangup
    kinds = [s.partition(":")[0] for s in res.script.steps]
    for kind, lat in zip(kinds, rep.latencies, strict=False):
        if kind == "say":
            res.speech_lat.append(lat - silence_s)
        else:
            res.dtmf_lat.append(lat)
    said = [s.partition(":")[2] for s in res.script.steps if s.startswith("say:")]
    heard = [e for e in rep.events if e.get("event") == "recognized"]
    for text, event in zip(said, heard, strict=False):
        if event.get("intent") != INTENTS[text]:
            res.misheard.append(f"{text!r} → {event.get('intent')} ({event.get('text')!r})")
    return res


# --- misbehaving calls -----------------------------------------------------------------------


class RawStream:
    """One Media Streams connection played by hand: real-time silence up, bot audio counted
    (marks acknowledged, as Twilio does), so a misbehaviour can be done at a chosen moment."""

    def __init__(self, url: str, call_sid: str, params: dict[str, str] | None = None) -> None:
        self.url, self.call_sid, self.params = url, call_sid, params or {}
        self.client = TwilioClient()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.bot_frames = 0
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.closed_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, http: aiohttp.ClientSession) -> None:
        self.ws = await http.ws_connect(self.url, max_msg_size=0)
        await self.ws.send_str(self.client.connected())
        await self.ws.send_str(
            self.client.start(self.call_sid, "MZ" + uuid.uuid4().hex, self.params)
        )
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._pump())]

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                for item in self.client.parse_server(msg.data):
                    if isinstance(item, PlayAudio):
                        self.bot_frames += len(item.pcm) // 320  # 20 ms frames
                    elif isinstance(item, SetMark):
                        await self.ws.send_str(self.client.ack_mark(item.name))
        self.close_code = self.ws.close_code
        self.closed_at = time.monotonic()
        self.closed.set()

    async def _pump(self) -> None:
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        with contextlib.suppress(Exception):
            while not self.ws.closed:
                for text in self.client.media(FRAME_PCM):
                    await self.ws.send_str(text)
                n += 1
                await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))

    async def heard(self, seconds: float, within: float = 30.0) -> bool:
        """Until `seconds` of bot audio have arrived (False if the socket closed first)."""
        deadline = time.monotonic() + within
        while self.bot_frames * 0.02 < seconds:
            if self.closed.is_set() or time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def send(self, data: str | bytes) -> None:
        assert self.ws is not None
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)

    async def wait_closed(self, within: float) -> str:
        """What the caller saw: the server's close (code, how long after `now`), or none."""
        t = time.monotonic()
        try:
            await asyncio.wait_for(self.closed.wait(), within)
        except TimeoutError:
            return f"still open after {within:g} s"
        return f"server closed ({self.close_code}) after {time.monotonic() - t:.1f} s"

    def abort(self) -> None:
        """Drop the TCP connection: RST, no WebSocket close frame."""
        assert self.ws is not None
        for task in self._tasks:
            task.cancel()
        sock = self.ws.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn = self.ws._response.connection
        if conn is not None:
            if conn.transport is not None:
                conn.transport.abort()
            conn.close()  # back to the session as dead, not left for the GC to warn about

    async def hang_up(self) -> None:
        """A polite end (stop, close) for a stream still open after its misbehaviour."""
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.send_str(self.client.stop())
                await asyncio.wait_for(self.ws.close(), 5)
        await self.cleanup()

    async def cleanup(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class MisResult:
    index: int
    kind: str
    call_sid: str
    started: float
    ended: float = 0.0
    detail: str = ""
    seen: str = ""  # what the misbehaving caller saw
    victim: int | None = None  # the legitimate call whose callSid was reused
    records: list[dict[str, Any]] = field(default_factory=list)  # the store's, by callSid
    error: str | None = None


GARBAGE = ["not JSON", "unknown event", "binary frame", "bad base64"]


def garbage(variant: str, stream_sid: str) -> str | bytes:
    if variant == "not JSON":
        return "}{ this is not json \x01\x02"
    if variant == "unknown event":
        return json.dumps({"event": "explode", "streamSid": stream_sid})
    if variant == "binary frame":
        return b"\x00\xff\xfe binary"
    return json.dumps(
        {"event": "media", "streamSid": stream_sid, "media": {"payload": "%%not base64%%"}}
    )


async def misbehave(
    res: MisResult, url: str, live: dict[int, Caller], max_seconds: float
) -> MisResult:
    try:
        async with aiohttp.ClientSession() as http:
            if res.kind == "bad_caller":
                caller = Caller(
                    url,
                    [CallerTurn(dtmf="1")],
                    BAD_CALLER,
                    out=None,
                    max_seconds=max_seconds,
                    **caller_kwargs(),
                )
                caller.call_sid = res.call_sid
                rep = await caller.run()
                res.seen = f"hangup {rep.hangup}"
            elif res.kind == "duplicate":
                await duplicate(res, url, http, live)
            else:
                stream = RawStream(url, res.call_sid, {"from": NUMBERS[res.index % 3]})
                await stream.open(http)
                try:
                    if not await stream.heard(1.0):
                        res.seen = "no bot audio before the misbehaviour"
                    elif res.kind == "abort":
                        stream.abort()
                        res.seen = f"aborted by us after {stream.bot_frames} bot frames"
                    else:
                        if res.kind == "deep_json":
                            await stream.send("[" * 1100)
                        elif res.kind == "oversize":
                            pad = "A" * (2 << 20)
                            await stream.send(
                                json.dumps(
                                    {
                                        "event": "media",
                                        "streamSid": stream.client.stream_sid,
                                        "media": {"payload": pad},
                                    }
                                )
                            )
                            res.detail = "2 MB text"
                        elif res.kind == "garbage":
                            await stream.send(garbage(res.detail, stream.client.stream_sid))
                        res.seen = await stream.wait_closed(15)
                finally:
                    await stream.hang_up()
    except Exception as exc:
        res.error = repr(exc)
    res.ended = time.monotonic()
    return res


async def duplicate(
    res: MisResult, url: str, http: aiohttp.ClientSession, live: dict[int, Caller]
) -> None:
    """A second stream with a live call's callSid: a legitimate call's if one is in
    progress (it must be unaffected), else one of our own first."""
    victims = [
        (i, c)
        for i, c in live.items()
        if c.report.call_id != c.call_sid and c.report.hangup is None
    ]
    first: RawStream | None = None
    if victims:
        res.victim, victim = victims[-1]  # the latest admitted: least likely to end now
        res.call_sid = victim.call_sid
        res.detail = f"callSid of legit call #{res.victim}"
    else:
        first = RawStream(url, res.call_sid, {"from": NUMBERS[0]})
        await first.open(http)
        await first.heard(0.5)
        res.detail = "callSid of our own first stream"
    second = RawStream(url, res.call_sid, {"from": NUMBERS[1]})
    await second.open(http)
    try:
        seen = await second.wait_closed(10)
        res.seen = f"{seen}, {second.bot_frames} bot frames"
    finally:
        await second.hang_up()
        if first is not None:
            res.seen += f"; first stream: {first.bot_frames} bot frames, "
            res.seen += "still open" if not first.closed.is_set() else "closed by the server"
            await first.hang_up()


# --- the server log --------------------------------------------------------------------------

_RECORD = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+ (\w+) ")
_IDS = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\b(?:CA|MZ)[0-9a-f]{32}\b"
)


def _key(line: str) -> str:
    text = _IDS.sub("<id>", line)
    return re.sub(r"\d+", "#", text)[:150]


@dataclass
class LogSummary:
    levels: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # ERROR/CRITICAL lines by text
    tracebacks: Counter[str] = field(default_factory=Counter)  # by record line | exception
    unparsed_tracebacks: int = 0


def read_log(path: Path) -> LogSummary:
    out = LogSummary()
    if not path.exists():
        return out
    records: list[tuple[str, str, list[str]]] = []  # (level, first line, continuation)
    for line in path.read_text(errors="replace").splitlines():
        m = _RECORD.match(line)
        if m:
            records.append((m.group(1), line[m.end() :], []))
        elif records:
            records[-1][2].append(line)
        elif line.startswith("Traceback"):
            out.unparsed_tracebacks += 1
    for level, first, rest in records:
        out.levels[level] += 1
        if level in ("ERROR", "CRITICAL"):
            out.errors[_key(first)] += 1
        if any(r.strip().startswith("Traceback") for r in rest):
            last = next((r.strip() for r in reversed(rest) if r.strip()), "")
            out.tracebacks[f"{_key(first)} | {_key(last)}"] += 1
    return out


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Plan:
    offset: float  # seconds after the start
    kind: str  # a script name, or a misbehaviour


def make_plan(args: argparse.Namespace, rng: random.Random) -> list[Plan]:
    plan: list[Plan] = []
    t, k = 0.0, 0
    kinds: list[str] = []
    while True:
        t += rng.expovariate(args.rate)
        if t >= args.minutes * 60:
            return plan
        if rng.random() < args.misbehave:
            if not kinds:
                kinds = list(MISBEHAVIOURS)
                rng.shuffle(kinds)
            plan.append(Plan(t, kinds.pop()))
        else:
            plan.append(Plan(t, SCRIPTS[k % len(SCRIPTS)].name))
            k += 1


@dataclass
class Soak:
    args: argparse.Namespace
    server: SoakServer
    wavs: dict[tuple[str, str], Path]
    legit: list[LegitResult] = field(default_factory=list)
    mis: list[MisResult] = field(default_factory=list)
    live: dict[int, Caller] = field(default_factory=dict)
    placed: int = 0
    minutes: list[dict[str, Any]] = field(default_factory=list)
    rss: RssSampler | None = None  # from the measured start

    @property
    def silence_s(self) -> float:
        return float(self.args.end_silence_ms) / 1000

    async def warm_up(self) -> None:
        tasks = []
        for i, script in enumerate(SCRIPTS):
            for j, number in enumerate(NUMBERS):
                res = LegitResult(
                    -1,
                    script,
                    VOICES[(i + j) % len(VOICES)],
                    number,
                    "CA" + uuid.uuid4().hex,
                    time.monotonic(),
                )
                tasks.append(
                    legit_call(res, self.server.media_url, self.wavs, self.silence_s, 150, {})
                )
                await asyncio.sleep(0.5)
        done = await asyncio.gather(*tasks)
        ok = sum(1 for r in done if r.expected)
        print(f"warm-up: {ok}/{len(done)} calls ended as expected", flush=True)
        for r in done:
            if not r.expected:
                print(f"   warm-up {r.script.name}: {r.hangup} {r.error or ''} {r.misheard}")

    async def run(self, t0: float, plan: list[Plan], outage: Outage, log: Path) -> None:
        url = self.server.media_url
        tasks: list[asyncio.Task[Any]] = []
        monitor = asyncio.create_task(self.monitor(t0, outage, log))
        n_legit = 0
        for i, item in enumerate(plan):
            await asyncio.sleep(max(0.0, t0 + item.offset - time.monotonic()))
            if not self.server.alive():
                print("server process exited: stopping the arrivals", flush=True)
                break
            self.placed += 1
            script = next((s for s in SCRIPTS if s.name == item.kind), None)
            if script is not None:
                voice = VOICES[n_legit % len(VOICES)]
                number = NUMBERS[(n_legit // len(VOICES) + n_legit) % len(NUMBERS)]
                n_legit += 1
                lres = LegitResult(
                    i, script, voice, number, "CA" + uuid.uuid4().hex, time.monotonic()
                )
                self.legit.append(lres)
                coro: Any = legit_call(
                    lres, url, self.wavs, self.silence_s, self.args.max_call_seconds, self.live
                )
            else:
                mres = MisResult(i, item.kind, "CA" + uuid.uuid4().hex, time.monotonic())
                if item.kind == "garbage":  # the variants in turn, so each gets sent
                    mres.detail = GARBAGE[sum(m.kind == "garbage" for m in self.mis) % 4]
                self.mis.append(mres)
                coro = misbehave(mres, url, self.live, self.args.max_call_seconds)
            tasks.append(asyncio.create_task(coro))
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.args.max_call_seconds + 60)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor

    async def monitor(self, t0: float, outage: Outage, log: Path) -> None:
        print(
            " min placed legit ok/done  misb active  open  RSS MB  p50 ms  p95 ms underruns "
            "errors store",
            flush=True,
        )
        h0 = await asyncio.to_thread(healthz, self.server.base)
        minute = 0
        while True:
            minute += 1
            await asyncio.sleep(max(0.0, t0 + 60 * minute - time.monotonic()))
            self.minutes.append(
                await asyncio.to_thread(self.minute_row, minute, t0, h0, outage, log)
            )

    def minute_row(
        self, minute: int, t0: float, h0: dict[str, Any], outage: Outage, log: Path
    ) -> dict[str, Any]:
        lo, hi = t0 + 60 * (minute - 1), t0 + 60 * minute
        rss = self.rss.mean(lo, hi) if self.rss is not None else None
        row: dict[str, Any] = {"minute": minute, "rss": rss}
        try:
            h = healthz(self.server.base)
            row["active"] = h["active_calls"]
            row["underruns"] = h["underruns"] - h0["underruns"]
        except Exception:
            row["active"] = row["underruns"] = None
        row["open"] = open_in_store(self.server.db)
        done = [r for r in self.legit if r.ended]
        for r in done:
            r.near_outage = outage.near(r.started, r.ended)
        ended_now = [r for r in done if lo <= r.ended < hi]
        lat = [x for r in ended_now for x in r.speech_lat]
        errors = sum(read_log(log).errors.values())

        def f(x: float | None, spec: str) -> str:
            return "-" if x is None else format(x, spec)

        print(
            f"{minute:>4} {self.placed:>6} {sum(r.expected for r in done):>5}/{len(done):<5} "
            f"{sum(1 for m in self.mis if m.ended):>5} {f(row['active'], '6')} "
            f"{f(row['open'], '5')} {f(row['rss'], '7.0f')} "
            f"{f(pct(lat, 50) * 1000 if lat else None, '7.0f')} "
            f"{f(pct(lat, 95) * 1000 if lat else None, '7.0f')} {f(row['underruns'], '9')} "
            f"{errors:>6} {'OUTAGE' if outage.active else ''}"
            + ("" if self.server.alive() else "  SERVER EXITED"),
            flush=True,
        )
        return row


async def lookup_records(base: str, call_sids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """GET /v1/calls?provider_call_id=… for each callSid: the store's records of it."""
    out: dict[str, list[dict[str, Any]]] = {}
    sem = asyncio.Semaphore(8)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one(sid: str) -> None:
            async with sem:
                for attempt in range(3):
                    try:
                        async with http.get(
                            f"{base}/v1/calls", params={"provider_call_id": sid, "limit": "10"}
                        ) as resp:
                            resp.raise_for_status()
                            out[sid] = (await resp.json())["items"]
                            return
                    except Exception:
                        await asyncio.sleep(1 + attempt)

        await asyncio.gather(*(one(s) for s in set(call_sids)))
    return out


def wait_idle(base: str, timeout: float = 30.0) -> tuple[int | None, float]:
    """(active_calls, seconds waited) once it is 0, or its value at the timeout."""
    t = time.monotonic()
    active = None
    while time.monotonic() - t < timeout:
        with contextlib.suppress(Exception):
            active = int(healthz(base)["active_calls"])
            if active == 0:
                break
        time.sleep(1)
    return active, time.monotonic() - t


def live_calls(base: str) -> int | None:
    req = urllib.request.Request(
        f"{base}/v1/live/calls", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return len(json.loads(resp.read())["items"])
    except Exception:
        return None


# --- the report ------------------------------------------------------------------------------


def counts(items: Iterable[str]) -> str:
    c = Counter(items)
    return ", ".join(f"{k} ×{v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) or "-"


def report(soak: Soak, outage: Outage, t0: float, log: LogSummary, final: dict[str, Any]) -> bool:
    print()
    report_placed(soak, t0)
    report_outage(outage, t0)
    served = report_legit(soak.legit)
    report_records(soak.legit)
    report_misbehaving(soak.mis, soak.legit)
    report_latency(soak, final)
    change = report_rss(soak)
    report_log(log)
    criteria = pass_criteria(soak.legit, served, change, final)
    print()
    for name, ok, why in criteria:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {why}")
    return all(ok for _, ok, _ in criteria)


def report_placed(soak: Soak, t0: float) -> None:
    args, legit, mis = soak.args, soak.legit, soak.mis
    wall = max([r.ended for r in legit] + [m.ended for m in mis] + [t0]) - t0
    print(
        f"calls placed {soak.placed} in {args.minutes:g} min at {args.rate:g}/s "
        f"(legitimate {len(legit)}, misbehaving {len(mis)}); last call ended {wall:.0f} s "
        f"after the start"
    )


def report_outage(outage: Outage, t0: float) -> None:
    if outage.started is not None:
        end = outage.ended or time.monotonic()
        print(
            f"store outage: write lock held {end - outage.started:.1f} s from "
            f"{outage.started - t0:.0f} s" + (f" ({outage.error})" if outage.error else "")
        )
    else:
        print(f"store outage: NOT HELD ({outage.error or 'the run ended first'})")


def report_legit(legit: list[LegitResult]) -> list[LegitResult]:
    """The legitimate calls, by script; returns those served with their expected end."""
    served = [r for r in legit if r.expected]
    print(
        f"legitimate calls: {len(served)}/{len(legit)} served with their expected end; "
        f"admitted {sum(r.admitted for r in legit)}/{len(legit)}"
    )
    for script in SCRIPTS:
        mine = [r for r in legit if r.script is script]
        if mine:
            print(
                f"   {script.name:<15} {sum(r.expected for r in mine):>4}/{len(mine):<4} "
                f"ends: {counts(r.error or str(r.hangup) for r in mine)}"
            )
    degraded = [r for r in served if r.hangup in r.script.outage_ends]
    if degraded:
        print(f"   of them near the outage with its fallback end: {len(degraded)}")
    for r in [r for r in legit if not r.expected][:15]:
        print(
            f"   NOT SERVED #{r.index} {r.script.name} {r.voice} {r.number} sid {r.call_sid}: "
            f"hangup {r.hangup} error {r.error} admitted {r.admitted} "
            f"near outage {r.near_outage} misheard {r.misheard or '-'}"
        )
    misheard = [m for r in legit for m in r.misheard]
    if misheard:
        print(f"   misheard turns: {counts(misheard)}")
    return served


def report_records(legit: list[LegitResult]) -> None:
    """The store's records of the legitimate calls."""
    admitted = [r for r in legit if r.admitted]
    no_record = [r for r in admitted if not r.record]
    open_rec = [r for r in admitted if r.record and r.record.get("ended_at") is None]
    wrong = [
        r
        for r in admitted
        if r.record and r.record.get("ended_at") and r.record.get("end_reason") != r.hangup
    ]
    print(
        f"store records of admitted legitimate calls: {len(admitted) - len(no_record)}/"
        f"{len(admitted)} found; open {len(open_rec)}; end reason ≠ the feed's {len(wrong)}"
    )
    for label, group in (("missing", no_record), ("open", open_rec), ("wrong end", wrong)):
        if group:
            near = sum(r.near_outage for r in group)
            print(f"   {label}: {len(group)} ({near} near the outage, {len(group) - near} not)")


def report_misbehaving(mis: list[MisResult], legit: list[LegitResult]) -> None:
    print(f"misbehaving calls: {len(mis)}")
    for kind in MISBEHAVIOURS:
        of_kind = [m for m in mis if m.kind == kind]
        if not of_kind:
            continue
        print(f"   {kind:<10} ×{len(of_kind)}")
        for m in of_kind:
            report_misbehaving_call(m, legit)


def report_misbehaving_call(m: MisResult, legit: list[LegitResult]) -> None:
    ends = [f"{x.get('end_reason') or 'OPEN'}" for x in m.records if x.get("id") is not None]
    what = f" [{m.detail}]" if m.detail else ""
    print(
        f"      #{m.index}{what}: saw {m.error or m.seen}; store: "
        f"{', '.join(ends) if ends else 'no record'}"
    )
    if m.kind == "duplicate" and m.victim is not None:
        victim = next((r for r in legit if r.index == m.victim), None)
        if victim is not None:
            print(
                f"         victim #{victim.index} {victim.script.name}: hangup "
                f"{victim.hangup}, {'served' if victim.expected else 'NOT served'}"
            )
    if m.kind == "bad_caller":
        stored = {x.get("caller") for x in m.records}
        print(f"         stored caller: {sorted(map(str, stored))}")


def latency(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"p50 {pct(values, 50) * 1000:.0f} ms p95 {pct(values, 95) * 1000:.0f} ms (n={len(values)})"
    )


def report_latency(soak: Soak, final: dict[str, Any]) -> None:
    """Turn latencies as the callers measured them, and the server's own figures."""
    legit = soak.legit
    far = [r for r in legit if not r.near_outage]
    print(
        f"speech turn latency (minus {soak.args.end_silence_ms} ms end silence): "
        f"{latency([x for r in legit for x in r.speech_lat])}; calls not near the outage "
        f"{latency([x for r in far for x in r.speech_lat])}"
    )
    print(
        f"DTMF turn latency (a booking waits for the store): "
        f"{latency([x for r in legit for x in r.dtmf_lat])}; calls not near the outage "
        f"{latency([x for r in far for x in r.dtmf_lat])}"
    )
    h = final.get("healthz") or {}
    print(
        f"server: underruns {final.get('underruns')} over the run; calls_total "
        f"{h.get('calls_total')} rejected {h.get('calls_rejected')}; turn latency p50 "
        f"{h.get('turn_latency_p50_ms')} ms p95 {h.get('turn_latency_p95_ms')} ms (its own)"
    )


def report_rss(soak: Soak) -> float | None:
    """The server tree's memory per minute; returns its change from the first minute to the
    last, in percent (None with fewer than two minutes)."""
    rss = [m["rss"] for m in soak.minutes if m["rss"] is not None][: int(soak.args.minutes)]
    print("server tree RSS MB per minute (mean): " + " ".join(f"{x:.1f}" for x in rss))
    change = (rss[-1] - rss[0]) / rss[0] * 100 if len(rss) >= 2 else None
    if change is not None:
        print(f"   first → last minute: {rss[0]:.1f} → {rss[-1]:.1f} MB ({change:+.1f} %)")
    if soak.rss is not None and soak.rss.samples:
        mbs = [mb for _, mb in soak.rss.samples]
        print(f"   samples every {soak.rss.interval:g} s: min {min(mbs):.1f} max {max(mbs):.1f} MB")
    return change


def report_log(log: LogSummary) -> None:
    print(
        f"server log: {counts(f'{k}' for k, v in log.levels.items() for _ in range(v))}"
        + (
            f"; {log.unparsed_tracebacks} tracebacks outside records"
            if log.unparsed_tracebacks
            else ""
        )
    )
    for title, counter in (("ERROR lines", log.errors), ("tracebacks", log.tracebacks)):
        if counter:
            print(f"   {title} by first line ({sum(counter.values())}):")
            for k, v in counter.most_common(20):
                print(f"      ×{v} {k}")


def pass_criteria(
    legit: list[LegitResult],
    served: list[LegitResult],
    change: float | None,
    final: dict[str, Any],
) -> list[tuple[str, bool, str]]:
    """The soak's criteria: (name, met, why)."""
    open_near = final["open_ids_near"]
    open_far = final["open_ids_far"]
    return [
        (
            "0 leaked slots",
            final["active"] == 0 and final.get("live") in (0, None),
            f"active_calls {final['active']} after the last call (waited "
            f"{final['waited']:.0f} s), live calls listed {final.get('live')}",
        ),
        (
            "0 calls left open",
            final["open"] is not None and not open_far,
            f"{final['open']} open records in the store: {len(open_far)} not near the outage, "
            f"{len(open_near)} near it (start recorded, end lost; reported, not counted)",
        ),
        (
            "every legitimate call served",
            bool(legit) and len(served) == len(legit),
            f"{len(served)}/{len(legit)}",
        ),
        (
            "RSS flat within 10 %",
            change is not None and abs(change) <= 10,
            f"{change:+.1f} %" if change is not None else "not enough minutes",
        ),
    ]


def open_records(db: Path) -> list[tuple[str, str | None]]:
    with contextlib.closing(sqlite3.connect(db, timeout=15)) as conn:
        rows = conn.execute(
            "SELECT id, provider_call_id FROM calls WHERE ended_at IS NULL"
        ).fetchall()
    return [(str(a), b) for a, b in rows]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="of call arrivals")
    p.add_argument(
        "--rate",
        type=float,
        default=0.5,
        help="new calls per second (calls last ~15-45 s: 0.5/s keeps ~15 in progress)",
    )
    p.add_argument("--misbehave", type=float, default=0.05, help="share of misbehaving calls")
    p.add_argument("--outage-at", type=float, help="seconds after the start (default: half-way)")
    p.add_argument("--outage-seconds", type=float, default=30.0, help="0: no outage")
    p.add_argument("--max-calls", type=int, default=64, help="IVR_MAX_CALLS")
    p.add_argument("--end-silence-ms", type=int, default=600, help="IVR_END_SILENCE_MS")
    p.add_argument("--max-call-seconds", type=float, default=180.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (server log, db)")
    return p


def main() -> None:
    args = parser().parse_args()
    outage_at = args.minutes * 30 if args.outage_at is None else args.outage_at

    tmp = Path(tempfile.mkdtemp(prefix="ivr-bench-soak-"))
    server = SoakServer(tmp / "data", tmp / "server.log", args.max_calls, args.end_silence_ms)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    ok = False
    try:
        ok = soak_run(args, tmp, server, outage_at)
        print(f"\n{'PASS' if ok else 'FAIL'}: soak of {args.minutes:g} min")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        server.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


def soak_run(args: argparse.Namespace, tmp: Path, server: SoakServer, outage_at: float) -> bool:
    """Start the server, warm it up, place the planned calls with the outage, then report:
    whether the criteria held."""
    wavs = synthesize(tmp)
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    print(
        f"soak: {args.minutes:g} min of calls at {args.rate:g}/s, {args.misbehave:.0%} "
        f"misbehaving, store outage of {args.outage_seconds:g} s at {outage_at:g} s; "
        f"IVR_MAX_CALLS={args.max_calls}; {os.cpu_count()} CPUs; server log {server.log_path}",
        flush=True,
    )
    server.start()
    assert server.proc is not None
    soak = Soak(args, server, wavs)
    asyncio.run(soak.warm_up())
    plan = make_plan(args, random.Random(args.seed))
    bad = counts(x.kind for x in plan if x.kind in MISBEHAVIOURS)
    print(f"plan: {len(plan)} calls, misbehaving {bad}", flush=True)
    time.sleep(2)  # the warm-up's teardowns
    h0 = healthz(server.base)
    soak.rss = RssSampler(server.proc.pid)
    soak.rss.start()
    t0 = time.monotonic()
    outage = Outage(server.db, outage_at, args.outage_seconds)
    run_with_outage(soak, plan, outage, t0)
    final = final_state(soak, outage, h0)
    server.stop()
    return report(soak, outage, t0, read_log(server.log_path), final)


def run_with_outage(soak: Soak, plan: list[Plan], outage: Outage, t0: float) -> None:
    """Place the calls while the outage (a thread) holds the store's write lock on time."""
    assert soak.rss is not None
    halt = threading.Event()
    outage_thread = threading.Thread(target=outage.run, args=(t0, halt), daemon=True)
    if soak.args.outage_seconds > 0:
        outage_thread.start()
    try:
        asyncio.run(soak.run(t0, plan, outage, soak.server.log_path))
    finally:
        halt.set()
        if outage_thread.is_alive():
            outage_thread.join(10)
        soak.rss.stop()


def final_state(soak: Soak, outage: Outage, h0: dict[str, Any]) -> dict[str, Any]:
    """After the last call: slots, the server's counters, the store's records (attached to
    the calls) and the calls it left open, by nearness to the outage."""
    server = soak.server
    active, waited = wait_idle(server.base)
    final: dict[str, Any] = {
        "active": active,
        "waited": waited,
        "live": live_calls(server.base),
    }
    with contextlib.suppress(Exception):
        final["healthz"] = h1 = healthz(server.base)
        final["underruns"] = h1["underruns"] - h0["underruns"]
    for r in soak.legit:
        r.near_outage = outage.near(r.started, r.ended)
    attach_records(soak)
    opened = open_records(server.db)
    final["open"] = len(opened)
    near = {r.call_sid: r.near_outage for r in soak.legit}
    near.update({m.call_sid: outage.near(m.started, m.ended) for m in soak.mis})
    final["open_ids_near"] = [i for i, sid in opened if sid is not None and near.get(sid)]
    final["open_ids_far"] = [i for i, sid in opened if not (sid is not None and near.get(sid))]
    return final


def attach_records(soak: Soak) -> None:
    """Each call's records in the store, looked up by callSid."""
    sids = [r.call_sid for r in soak.legit] + [m.call_sid for m in soak.mis]
    records = asyncio.run(lookup_records(soak.server.base, sids))
    for r in soak.legit:
        mine = [x for x in records.get(r.call_sid, []) if x.get("id") == r.call_id]
        r.record = mine[0] if mine else None
    for m in soak.mis:
        m.records = records.get(m.call_sid, [])
        if m.kind == "duplicate" and m.victim is not None:
            # the victim's own record has this callSid too: not the duplicate's
            victim = next((r for r in soak.legit if r.index == m.victim), None)
            m.records = [x for x in m.records if victim is None or x.get("id") != victim.call_id]


if __name__ == "__main__":
    main()
