"""The browser softphone protocol (WebSocket /v1/softphone): raw PCM in binary frames, control
messages as JSON text. Simple enough for a web page to speak without a library.

Browser → server:
  {"type": "start", "caller": "+15551230001", "rate": 16000}    first; rate 8000 or 16000
  binary: 16-bit little-endian mono PCM at that rate (any length up to 1 s, even bytes)
  {"type": "dtmf", "digit": "5"}
  {"type": "mark", "name": "prompt-12"}     optional: playback reached a mark the server set
  {"type": "stop"}                          hang up

Server → browser:
  {"type": "started", "call_id": "…", "rate": 16000}           the call is up (its id)
  binary: bot audio, PCM as above, in pieces of 20 ms (one message each)
  {"type": "clear"}                         drop queued playback now (barge-in)
  {"type": "mark", "name": "prompt-12"}     a point in the bot audio
  {"type": "end", "reason": "goodbye"}      the call is over; the server closes the socket

Unknown keys are ignored (later versions may add some); anything else malformed is a
ProtocolError naming what is wrong. `BrowserSerializer` is the server side, `BrowserClient`
plays the page for tests and simulators. Both are pure: frames in, messages out, no I/O.
"""

from __future__ import annotations

import uuid
from typing import assert_never

from ivr.audio.codecs import Encoding
from ivr.audio.pcm import frame_bytes
from ivr.callerid import caller_number
from ivr.transports.base import Wire
from ivr.transports.jsonwire import Json, JsonWire, dumps
from ivr.transports.messages import (
    DTMF_DIGITS,
    FRAME_MS,
    CallerAudio,
    CallerHangup,
    CallStart,
    ClearAudio,
    Dtmf,
    EndCall,
    InboundMessage,
    Mark,
    OutboundMessage,
    PlayAudio,
    ProtocolError,
    SetMark,
    split_frames,
)

RATES = (8000, 16000)
MAX_AUDIO_S = 1  # one binary message; pages send 20-100 ms
MAX_CALLER = 64
_JSON = JsonWire("type")


def _check_audio(data: bytes, rate: int) -> None:
    if len(data) % 2:
        raise ProtocolError(f"audio is not 16-bit PCM: odd length ({len(data)} bytes)")
    limit = rate * 2 * MAX_AUDIO_S
    if len(data) > limit:
        raise ProtocolError(f"audio message of {len(data)} bytes is over {limit} (1 s)")


# --- server side -------------------------------------------------------------------------


class BrowserSerializer:
    """One softphone connection, seen from the server. The server names the call (a new
    `browser-…` id unless given one) and tells the page in its `answer`, `started`."""

    def __init__(self, call_id: str | None = None) -> None:
        self.call_id = call_id or f"browser-{uuid.uuid4().hex}"
        self.rate: int | None = None
        self.stopped = False

    @property
    def ready(self) -> bool:
        return self.rate is not None  # nothing to play to before the page named its rate

    def parse(self, data: Wire) -> list[InboundMessage]:
        if isinstance(data, bytes):
            return self._audio(data)
        kind, msg = _JSON.load(data)
        if kind == "stop":
            if self.stopped:
                return []  # a repeated stop is not a second hangup
            self.stopped = True
            return [CallerHangup("stop")]
        if self.stopped:
            raise ProtocolError(f"'{kind}' message after 'stop'")
        if kind == "start":
            return [self._start(msg)]
        if kind not in ("dtmf", "mark"):
            raise ProtocolError(f"unknown type {kind!r}")
        if self.rate is None:
            raise ProtocolError(f"'{kind}' message before 'start'")
        if kind == "dtmf":
            digit = _JSON.get(msg, "digit", str).upper()
            if digit not in DTMF_DIGITS:
                raise ProtocolError(f"digit {digit!r} is not one of 0-9 * # A-D")
            return [Dtmf(digit)]
        return [Mark(_JSON.get(msg, "name", str))]

    def _audio(self, data: bytes) -> list[InboundMessage]:
        if self.stopped:
            raise ProtocolError("audio after 'stop'")
        if self.rate is None:
            raise ProtocolError("audio before 'start'")
        _check_audio(data, self.rate)
        return [CallerAudio(data)] if data else []

    def _start(self, msg: Json) -> CallStart:
        if self.rate is not None:
            raise ProtocolError("second 'start' message")
        rate = _JSON.get(msg, "rate", int)
        if rate not in RATES:
            raise ProtocolError(f"rate {rate} is not supported (8000 or 16000)")
        caller = msg.get("caller")
        if caller is not None:
            if not isinstance(caller, str):
                raise ProtocolError(f"caller is not a string: {caller!r}")
            if len(caller) > MAX_CALLER or not caller.isprintable():
                raise ProtocolError(f"caller is not printable text of at most {MAX_CALLER} chars")
        self.rate = rate
        number = caller_number(caller)  # not a number: anonymous, and the text goes nowhere
        params = {"caller": number} if number else {}
        return CallStart(self.call_id, self.call_id, number, params, Encoding.PCM16, rate)

    def end(self) -> list[InboundMessage]:
        return []  # a closed socket is the leg's to report: it says no more than that

    def started(self) -> str:
        """The answer to `start`: the call's id, so the page can follow its transcript."""
        return dumps({"type": "started", "call_id": self.call_id, "rate": self.rate})

    def answer(self, start: CallStart) -> list[str]:
        return [self.started()]

    def render(self, msg: OutboundMessage) -> list[Wire]:
        """Wire messages for `msg`: audio as one binary message (more only past the
        protocol's second a message), the rest as JSON text."""
        if self.rate is None:
            raise RuntimeError("cannot render before the 'start' message")
        match msg:
            case PlayAudio(pcm):
                return list(split_frames(pcm, self.rate * 2 * MAX_AUDIO_S))
            case SetMark(name):
                return [dumps({"type": "mark", "name": name})]
            case ClearAudio():
                return [dumps({"type": "clear"})]
            case EndCall(reason):
                return [dumps({"type": "end", "reason": reason})]
            case _:
                assert_never(msg)


# --- the page's side (tests, simulators) -------------------------------------------------


class BrowserClient:
    """Speaks as the console's softphone does."""

    def __init__(self, rate: int = 16000) -> None:
        if rate not in RATES:
            raise ValueError(f"rate {rate} is not one of {RATES}")
        self.rate = rate
        self.call_id: str | None = None  # from the server's "started"

    def start(self, caller: str | None = None) -> str:
        return dumps({"type": "start", "caller": caller, "rate": self.rate})

    def audio(self, pcm: bytes) -> list[bytes]:
        """Caller audio as binary messages of 20 ms (the last may be shorter)."""
        return split_frames(pcm, frame_bytes(self.rate, FRAME_MS))

    def dtmf(self, digit: str) -> str:
        return dumps({"type": "dtmf", "digit": digit})

    def mark(self, name: str) -> str:
        return dumps({"type": "mark", "name": name})

    def stop(self) -> str:
        return dumps({"type": "stop"})

    def parse_server(self, data: Wire) -> list[OutboundMessage]:
        """What the server sent: audio → PlayAudio, mark → SetMark, clear, end → EndCall;
        "started" sets `call_id` and yields nothing."""
        if isinstance(data, bytes):
            _check_audio(data, self.rate)
            return [PlayAudio(data)]
        kind, msg = _JSON.load(data)
        if kind == "started":
            self.call_id = _JSON.get(msg, "call_id", str)
            rate = _JSON.get(msg, "rate", int)
            if rate != self.rate:
                raise ProtocolError(f"started at rate {rate}, not the {self.rate} asked for")
            return []
        if kind == "mark":
            return [SetMark(_JSON.get(msg, "name", str))]
        if kind == "clear":
            return [ClearAudio()]
        if kind == "end":
            return [EndCall(_JSON.get(msg, "reason", str))]
        raise ProtocolError(f"unknown type {kind!r}")
