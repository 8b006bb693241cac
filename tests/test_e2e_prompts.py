"""End to end: what the caller hears of the bot's prompts (issue 11). A real `ivr serve`
over real sockets, real speech (flite) through the real VAD, ASR, dialog and TTS, and a
far end that behaves like Twilio's media streams: it plays the bot's audio out in real
time, echoes a mark only once it has played the audio queued before it, and on `clear`
drops what it has not played and echoes the marks that were still pending.

The served flow is the hotline with `barge_in: false` on the main menu:

* a caller who talks and keys during that menu hears it to its end: no `clear`, no
  barge-in, the speech is not taken as an answer, the key counts once the menu has played;
* a caller who barges in on the (interruptible) fault question: the server says how much
  of the prompt was heard, from the marks the caller echoed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from live_server import LiveServer, live_server
from speech import flite

from ivr.transports.messages import ClearAudio, PlayAudio, SetMark
from ivr.transports.twilio import TwilioClient

ROOT = Path(__file__).resolve().parent.parent
KNOWN = "+15551230001"
RATE = 8000
FRAME = RATE * 20 // 1000 * 2  # 20 ms of 16-bit PCM
BYTES_PER_MS = RATE * 2 // 1000
MARK = re.compile(r"prompt-(\d+):(\d+)")  # the server's marks: prompt number, ms into it


def ms(nbytes: int) -> float:
    return nbytes / BYTES_PER_MS


@dataclass
class Phone:
    """A Twilio media-stream far end with a playout buffer (see the module doc)."""

    server: LiveServer
    sid: str = field(default_factory=lambda: "CA" + uuid.uuid4().hex)
    client: TwilioClient = field(default_factory=TwilioClient)
    events: list[dict[str, Any]] = field(default_factory=list)  # the call's feed
    at_event: list[tuple[int, int]] = field(default_factory=list)  # (received, played) then
    wire: list[tuple[str, Any]] = field(default_factory=list)  # what the server sent, in order
    received: int = 0  # bytes of bot audio received
    played: int = 0  # bytes of bot audio played out
    echoed: list[tuple[str, int]] = field(default_factory=list)  # (mark, played bytes then)
    clears: list[int] = field(default_factory=list)  # played bytes at each clear
    notes: dict[str, int] = field(default_factory=dict)  # the script's own positions
    timed_out: bool = False  # the script waited in vain for something (see the events)
    _buffer: deque[bytes | str] = field(default_factory=deque)  # audio and marks to play
    _speech: list[bytes] = field(default_factory=list)
    _ws: aiohttp.ClientWebSocketResponse | None = None

    def event(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]

    async def until(self, cond: Callable[[], bool], limit: float = 60.0) -> None:
        """Polls `cond` (the phone's state, changed by its tasks) for up to `limit` s."""
        for _ in range(int(limit / 0.02)):
            if cond():
                return
            await asyncio.sleep(0.02)
        raise TimeoutError

    async def call(self, script: Callable[[Phone], Any]) -> Phone:
        async with aiohttp.ClientSession() as http:
            feed = await http.ws_connect(self.server.events_url(self.sid))
            self._ws = ws = await http.ws_connect(self.server.media_url)
            await ws.send_str(self.client.connected())
            await ws.send_str(self.client.start(self.sid, "MZ" + uuid.uuid4().hex, {"from": KNOWN}))
            tasks = [
                asyncio.create_task(coro)
                for coro in (self._read_feed(feed), self._read(ws), self._play(), self._talk())
            ]
            try:
                try:
                    await script(self)
                except TimeoutError:
                    self.timed_out = True
                await ws.send_str(self.client.stop())
                with contextlib.suppress(TimeoutError):
                    await self.until(lambda: bool(self.event("hangup")), 10)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                await ws.close()
                await feed.close()
        return self

    async def say(self, pcm: bytes) -> None:
        self._speech = [pcm[i : i + FRAME].ljust(FRAME, b"\0") for i in range(0, len(pcm), FRAME)]
        await self.until(lambda: not self._speech)

    async def key(self, digit: str) -> None:
        assert self._ws is not None
        await self._ws.send_str(self.client.dtmf(digit))

    async def _read_feed(self, feed: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in feed:
            self.events.append(json.loads(msg.data))
            self.at_event.append((self.received, self.played))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            for item in self.client.parse_server(msg.data):
                if isinstance(item, PlayAudio):
                    self.wire.append(("media", len(item.pcm)))
                    self.received += len(item.pcm)
                    self._buffer.append(item.pcm)
                elif isinstance(item, SetMark):
                    self.wire.append(("mark", item.name))
                    self._buffer.append(item.name)
                    await self._echo_reached()
                elif isinstance(item, ClearAudio):
                    self.wire.append(("clear", None))
                    self.clears.append(self.played)
                    pending = [m for m in self._buffer if isinstance(m, str)]
                    self._buffer.clear()
                    for name in pending:  # as Twilio does: cleared marks come back at once
                        await ws.send_str(self.client.ack_mark(name))

    async def _echo_reached(self) -> None:
        """Echo the marks at the head of the buffer: all audio before them has played."""
        assert self._ws is not None
        while self._buffer and isinstance(self._buffer[0], str):
            name = self._buffer.popleft()
            assert isinstance(name, str)
            self.echoed.append((name, self.played))
            await self._ws.send_str(self.client.ack_mark(name))

    async def _play(self) -> None:
        """20 ms of the buffer every 20 ms, as a phone's playout does."""
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while True:
            need = FRAME
            while need and self._buffer and isinstance(self._buffer[0], bytes):
                head = self._buffer.popleft()
                assert isinstance(head, bytes)
                if len(head) > need:
                    self._buffer.appendleft(head[need:])
                    head = head[:need]
                self.played += len(head)
                need -= len(head)
            await self._echo_reached()
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))

    async def _talk(self) -> None:
        """The caller's side: a 20 ms frame every 20 ms, speech when there is some."""
        assert self._ws is not None
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
        while True:
            frame = self._speech.pop(0) if self._speech else b"\0" * FRAME
            for text in self.client.media(frame):
                await self._ws.send_str(text)
            n += 1
            await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))


def flow_with_a_menu_that_must_be_heard(tmp: Path) -> Path:
    folder = tmp / "flows"
    folder.mkdir()
    for name in ("hotline.yaml", "digits.yaml", "yesno.yaml"):
        shutil.copy(ROOT / "grammars" / name, folder / name)
    path = folder / "hotline.yaml"
    text = path.read_text()
    menu = "  main_menu:\n    kind: menu\n"
    assert menu in text
    path.write_text(text.replace(menu, menu + "    barge_in: false\n"))
    return path


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("prompts")
    flow = flow_with_a_menu_that_must_be_heard(tmp)
    balance = flite("check my balance", tmp / "balance.wav", voice="slt").tobytes()
    yes = flite("yes please", tmp / "yes.wav", voice="rms").tobytes()

    async def over_the_menu(phone: Phone) -> None:
        """Talks 1.6 s into the menu (the greeting takes some 2.9 s), keys 4 at 4.6 s into
        it (of some 9 s), then listens to the fault question."""
        await phone.until(lambda: phone.played >= 4500 * BYTES_PER_MS)
        await phone.say(balance)
        await phone.until(lambda: phone.played >= 7500 * BYTES_PER_MS)
        await phone.key("4")
        await phone.until(lambda: bool(phone.event("dtmf")))
        await phone.until(lambda: any(e.get("node") == "fault" for e in phone.event("listen")))
        await asyncio.sleep(1.0)

    async def into_the_fault_question(phone: Phone) -> None:
        """Hears the greeting and menu out, keys 4, barges in 2.5 s into the fault question."""

        def menu_over() -> bool:
            return ms(phone.received) > 11_000 and phone.played == phone.received

        await phone.until(menu_over)
        await asyncio.sleep(0.5)
        await phone.until(menu_over)
        phone.notes["fault_start"] = phone.received  # what comes next is the fault question
        await phone.key("4")
        await phone.until(lambda: phone.played >= phone.notes["fault_start"] + 2500 * BYTES_PER_MS)
        phone.notes["speech_at"] = phone.played - phone.notes["fault_start"]
        await phone.say(yes)
        await phone.until(lambda: bool(phone.event("recognized")))
        await asyncio.sleep(1.0)

    with live_server(tmp, IVR_FLOW=str(flow), IVR_GRAMMAR_DIR=str(flow.parent)) as server:

        async def both() -> list[Phone]:
            return list(
                await asyncio.gather(
                    Phone(server).call(over_the_menu), Phone(server).call(into_the_fault_question)
                )
            )

        protected, barged = asyncio.run(both())
        yield {"protected": protected, "barged": barged, "server": server}


def test_a_barge_in_false_prompt_plays_to_its_end_over_speech_and_keys(
    calls: dict[str, Any],
) -> None:
    phone: Phone = calls["protected"]
    assert not phone.timed_out, phone.events
    assert not phone.clears, phone.wire[:5]  # nothing was cut
    assert not phone.event("barge_in"), phone.events
    # The speech during the menu was not an answer: the key pressed later was.
    assert not phone.event("recognized") and not phone.event("no_match"), phone.events
    [dtmf] = phone.event("dtmf")
    assert (dtmf["digits"], dtmf["intent"]) == ("4", "fault"), phone.events
    # The key counted only once the menu had played to its end (pressed 5 s into it).
    received, played = phone.at_event[phone.events.index(dtmf)]
    menu = [e["text"] for e in phone.event("prompt")][:2]
    assert "Say balance" in menu[1]
    assert played >= received - 600 * BYTES_PER_MS, (ms(played), ms(received))
    assert ms(played) > 10_000  # greeting and menu: some 12 s


def test_a_barge_in_reports_how_much_of_the_prompt_the_caller_heard(
    calls: dict[str, Any],
) -> None:
    phone: Phone = calls["barged"]
    assert not phone.timed_out, phone.events
    [barge] = phone.event("barge_in")
    assert barge["node"] == "fault" and "mobile data" in barge["text"], barge
    assert len(phone.clears) == 1
    # The caller started speaking 2.5 s into the prompt; the server stopped it at `cut`.
    # What it heard is known from the marks it echoed: one each second of a prompt.
    cut = ms(phone.clears[0] - phone.notes["fault_start"])
    assert barge["heard_by"] == "mark", barge
    assert barge["heard_ms"] % 1000 == 0 and cut - 1400 <= barge["heard_ms"] <= cut, (barge, cut)
    assert barge["heard_ms"] >= 2000 and barge["prompt_ms"] > 5000, barge
    # The speech that barged in was recognized (its first syllable kept).
    assert [e["intent"] for e in phone.event("recognized")] == ["yes"], phone.events
    server: LiveServer = calls["server"]
    assert f"barge-in at {barge['heard_ms']} of {barge['prompt_ms']} ms" in server.log_text()


@pytest.mark.parametrize("name", ["protected", "barged"])
def test_each_mark_follows_the_audio_before_it(calls: dict[str, Any], name: str) -> None:
    """A mark is sent after the audio it follows; its name says where in the prompt it is."""
    phone: Phone = calls[name]
    assert phone.wire[0][0] == "media", phone.wire[:3]
    marks = [(i, value) for i, (kind, value) in enumerate(phone.wire) if kind == "mark"]
    assert len(marks) >= 4, phone.wire
    # Audio between two marks of a prompt is what their names say (the first prompt's
    # first mark: all audio before it); between prompts comes a short pause.
    last: tuple[str, int] | None = None
    audio = 0
    for kind, value in phone.wire:
        if kind == "media":
            audio += value
            continue
        if kind != "mark":
            continue
        match = MARK.fullmatch(value)
        assert match, value
        prompt, at = match.group(1), int(match.group(2))
        if last is None:
            assert (prompt, ms(audio)) == ("1", at), value
        elif last[0] == prompt:
            assert ms(audio) == at - last[1], (value, last, ms(audio))
        else:
            assert ms(audio) > at, (value, last, ms(audio))  # the pause, then `at` ms
        last, audio = (prompt, at), 0
