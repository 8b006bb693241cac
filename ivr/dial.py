"""A caller simulator: dials the service over the WebSocket media stream like a telephony
provider would, answers each bot prompt with the next WAV or DTMF keys, and prints what
happened as JSON lines (the call's events from the server's live feed).

Audio flows both ways in real time, as on a phone line: the caller sends 20 ms frames
continuously (silence between its utterances); bot audio is played out (and recorded) as it
arrives.

The live feed needs an API token with calls.read (`--token`, or IVR_TOKEN): the events are
the call's transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import numpy as np
import numpy.typing as npt

from ivr.audio.pcm import Audio as PcmAudio
from ivr.audio.pcm import frame_bytes, read_wav, write_wav
from ivr.auth import BEARER_PREFIX, PROTOCOL
from ivr.transports.messages import FRAME_MS, ClearAudio, PlayAudio, SetMark
from ivr.transports.twilio import TwilioClient

RATE = 8000
FRAME = frame_bytes(RATE, FRAME_MS)  # one frame of 16-bit PCM
EVENTS: dict[str, str] = {
    "prompt": "the bot said `text` at `node` (null: before the flow, e.g. the busy prompt)",
    "recognized": "the caller's speech at `node`: `text` as heard, the `intent` it matched"
    " (null: none) and the recognizer's `confidence` (0-1)",
    "dtmf": "keys the caller pressed at `node`: `digits`, the `intent` they chose (null: none)",
    "no_input": "the caller said and keyed nothing in time at `node`; `text` says why",
    "no_match": "what the caller said or keyed at `node` matched nothing; `text` says why",
    "barge_in": "the caller spoke over a prompt at `node`, which stopped: its `text`, how much"
    " of it was heard (`heard_ms` of `prompt_ms`) and how that is known (`heard_by`: `mark`,"
    " echoed by the simulator, or `sent`)",
    "caller_hangup": "the simulator hung up: its turns were all used",
    "hangup": "the call ended: its `reason` (caller_hangup, the flow's own when it ends the"
    " call, busy, max_duration...; `simulator timeout` when --max-seconds ran"
    " out first)",
}
"""Every event `ivr dial` prints (one JSON object a line, `event` naming it), and its fields."""
PRINTED = set(EVENTS) - {"caller_hangup"}
"""The call's own events (from its feed) that are printed; caller_hangup is the simulator's."""


@dataclass(frozen=True)
class CallerTurn:
    """What the caller does when the bot next listens: speak a WAV, key digits, or nothing."""

    wav: Path | None = None
    dtmf: str | None = None  # "-" means: send no input this turn

    @property
    def silent(self) -> bool:
        return self.dtmf == "-"


@dataclass
class CallReport:
    call_id: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # caller end of speech → bot audio
    bot_frames: int = 0
    hangup: str | None = None


def events_url(media_url: str, call_sid: str) -> str:
    parts = urlsplit(media_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/v1/calls/{call_sid}/events", "", ""))


class Caller:
    def __init__(
        self,
        url: str,
        turns: list[CallerTurn],
        caller: str | None = None,
        *,
        out: TextIO | None = sys.stdout,
        barge_in_after: float | None = None,
        record: Path | None = None,
        max_seconds: float = 300.0,
        token: str | None = None,
    ) -> None:
        self.url = url
        self.token = token  # for the call's feed: an API token with calls.read
        self.turns = list(turns)
        self.caller = caller
        self.out = out
        self.barge_in_after = barge_in_after
        self.record = record
        self.max_seconds = max_seconds
        self.call_sid = "CA" + uuid.uuid4().hex
        self.report = CallReport(call_id=self.call_sid)
        self._client = TwilioClient()
        self._media: aiohttp.ClientWebSocketResponse | None = None
        self._speech: list[bytes] = []  # frames still to send for the current utterance
        self._spoken = asyncio.Event()  # set when the current utterance has been sent
        self._listening = asyncio.Event()
        self._last_bot_audio = 0.0
        self._answered = False  # bot audio arrived since the caller's last input
        self._bot_audio_since: float | None = None
        self._speech_ended_at: float | None = None
        self._ended = asyncio.Event()
        self._sent: list[bytes] = []
        self._heard: list[tuple[float, bytes]] = []  # (seconds into the call, bot audio)
        self._t0 = time.perf_counter()

    async def run(self) -> CallReport:
        async with aiohttp.ClientSession() as http:
            # The token as a subprotocol, as the console sends it: kept out of access logs.
            protocols = (PROTOCOL, BEARER_PREFIX + self.token) if self.token else ()
            feed = await http.ws_connect(self.feed_url(), protocols=protocols)
            tasks: list[asyncio.Task[None]] = []
            try:
                await self._connect(http)
                tasks = [
                    asyncio.create_task(self._read_feed(feed)),
                    *(asyncio.create_task(c) for c in self._media_tasks()),
                    asyncio.create_task(self._send_audio()),
                    asyncio.create_task(self._converse()),
                ]
                await asyncio.wait_for(self._ended.wait(), self.max_seconds)
            except TimeoutError:
                self._emit({"event": "hangup", "reason": "simulator timeout"})
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                with contextlib.suppress(Exception):
                    await self._disconnect()
                with contextlib.suppress(Exception):
                    await feed.close()
        if self.record is not None:
            self._write_recording(self.record)
        return self.report

    def feed_url(self) -> str:
        """The call's live feed, by the id the caller gives it (the server links the two)."""
        return events_url(self.url, self.call_sid)

    # --- the media leg: a provider's WebSocket media stream (SipCaller: SIP and RTP) -----

    @property
    def _ws(self) -> aiohttp.ClientWebSocketResponse:
        assert self._media is not None, "the media stream is not connected"
        return self._media

    async def _connect(self, http: aiohttp.ClientSession) -> None:
        self._media = await http.ws_connect(self.url)
        await self._ws.send_str(self._client.connected())
        params = {"from": self.caller} if self.caller else {}
        await self._ws.send_str(self._client.start(self.call_sid, "MZ" + uuid.uuid4().hex, params))

    def _media_tasks(self) -> list[Coroutine[Any, Any, None]]:
        return [self._read_media(self._ws)]

    async def _send_frame(self, frame: bytes) -> None:
        for text in self._client.media(frame):
            await self._ws.send_str(text)

    async def _send_key(self, key: str) -> None:
        await self._ws.send_str(self._client.dtmf(key))

    async def _hang_up(self) -> None:
        await self._ws.send_str(self._client.stop())
        await self._ws.close()

    async def _disconnect(self) -> None:
        if self._media is not None:
            await self._media.close()

    # --- what the server says ---------------------------------------------------------

    async def _read_feed(self, feed: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in feed:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(msg.data)
            kind = event.get("event")
            if kind == "call_started" and isinstance(event.get("call_id"), str):
                self.report.call_id = event["call_id"]  # the server's id (ours is the callSid)
            if kind == "listen":
                self._listening.set()
            elif kind in ("recognized", "dtmf", "no_input"):
                self._listening.clear()
            if kind in PRINTED:
                self._emit(event)
            if kind == "hangup":
                self.report.hangup = event.get("reason")
                self._ended.set()
                return
        self._ended.set()

    async def _read_media(self, media: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in media:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            for item in self._client.parse_server(msg.data):
                now = time.perf_counter()
                if isinstance(item, PlayAudio):
                    self._bot_audio(item.pcm, now)
                elif isinstance(item, SetMark):
                    await media.send_str(self._client.ack_mark(item.name))
                elif isinstance(item, ClearAudio):
                    self._bot_audio_since = None
        # The media socket closed; the call's feed still brings the hangup and its reason.

    def _bot_audio(self, pcm: bytes, now: float) -> None:
        """Bot audio (16-bit PCM at 8 kHz) that arrived at `now` (perf_counter)."""
        if self._speech_ended_at is not None:
            self.report.latencies.append(now - self._speech_ended_at)
            self._speech_ended_at = None
        if self._bot_quiet():  # a new prompt (media comes every 20-100 ms)
            self._bot_audio_since = now
        self._last_bot_audio = now
        self._answered = True
        self.report.bot_frames += len(pcm) // FRAME
        self._heard.append((now - self._t0, pcm))

    # --- what the caller does ---------------------------------------------------------

    async def _send_audio(self) -> None:
        """A continuous real-time stream of 20 ms frames: speech when there is some."""
        loop = asyncio.get_running_loop()
        silence = b"\x00" * FRAME
        start = loop.time()
        n = 0
        while True:
            if self._speech:
                frame = self._speech.pop(0)
                if not self._speech:
                    self._speech_ended_at = time.perf_counter()
                    self._spoken.set()
            else:
                frame = silence
            self._sent.append(frame)
            await self._send_frame(frame)
            n += 1
            await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - loop.time()))

    def _bot_quiet(self) -> bool:
        return time.perf_counter() - self._last_bot_audio > 0.3

    async def _converse(self) -> None:
        for turn in self.turns:
            await self._wait_for_turn()
            # Cleared before the input goes out: the server's next "listen" may come back
            # before this coroutine runs again.
            self._listening.clear()
            self._answered = False
            if turn.silent:
                continue  # the next listen comes after the no-input reprompt
            if turn.dtmf:
                for key in turn.dtmf:
                    await self._send_key(key)
                    await asyncio.sleep(0.12)
                self._speech_ended_at = time.perf_counter()
            elif turn.wav is not None:
                pcm = read_wav(turn.wav, RATE).tobytes()
                frames = [pcm[i : i + FRAME] for i in range(0, len(pcm), FRAME)]
                frames[-1] = frames[-1] + b"\x00" * (FRAME - len(frames[-1]))
                self._spoken.clear()
                self._speech = frames
                await self._spoken.wait()
        await self._wait_for_turn()
        self._emit({"event": "caller_hangup"})
        await self._hang_up()

    async def _wait_for_turn(self) -> None:
        """Until the bot listens and has finished speaking (or, to barge in, has spoken
        `barge_in_after` seconds)."""
        while True:
            await self._listening.wait()
            # "listen" comes as soon as the prompts are queued: wait for them to be heard.
            if self._answered and self._bot_quiet():
                return
            since = self._bot_audio_since
            if (
                self.barge_in_after is not None
                and since is not None
                and time.perf_counter() - since >= self.barge_in_after
            ):
                return
            await asyncio.sleep(0.02)

    def _emit(self, event: dict[str, Any]) -> None:
        event = {k: v for k, v in event.items() if k != "at"}
        self.report.events.append(event)
        if self.out is not None:
            print(json.dumps(event, ensure_ascii=False), file=self.out, flush=True)

    def _write_recording(self, path: Path) -> None:
        """Both sides on one timeline: the caller's frames in order (one per 20 ms from the
        start), the bot's where they arrived, as a phone line would carry them."""
        caller = np.frombuffer(b"".join(self._sent), dtype="<i2")
        placed: list[tuple[int, npt.NDArray[np.int16]]] = []
        at = 0
        for t, pcm in self._heard:
            at = max(at, int(t * RATE))  # frames arriving in a burst play back to back
            frame = np.frombuffer(pcm, dtype="<i2")
            placed.append((at, frame))
            at += len(frame)
        mixed = np.zeros(max(len(caller), at), dtype=np.int32)
        mixed[: len(caller)] += caller
        for start, frame in placed:
            mixed[start : start + len(frame)] += frame
        write_wav(path, PcmAudio(np.clip(mixed, -32768, 32767).astype(np.int16), RATE))
