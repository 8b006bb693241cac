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
  binary: bot audio, PCM as above, in 20 ms frames
  {"type": "clear"}                         drop queued playback now (barge-in)
  {"type": "mark", "name": "prompt-12"}     a point in the bot audio
  {"type": "end", "reason": "goodbye"}      the call is over; the server closes the socket

Unknown keys are ignored (later versions may add some); anything else malformed is a
ProtocolError naming what is wrong. `BrowserSerializer` is the server side, `BrowserClient`
plays the page for tests and simulators. Both are pure: frames in, messages out, no I/O.
"""

from __future__ import annotations

import json
from typing import Any, assert_never

from ivr.audio.codecs import Encoding
from ivr.audio.pcm import frame_bytes
from ivr.callerid import caller_number
from ivr.transports.limits import load_json
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

Json = dict[str, Any]
Frame = str | bytes
"""A WebSocket message: text (str) or binary (bytes)."""
_TYPE_NAMES = {str: "a string", int: "an integer"}


def _load(text: str) -> tuple[str, Json]:
    """(type, message) of one text message."""
    msg = load_json(text)
    if not isinstance(msg, dict):
        raise ProtocolError(f"message is not a JSON object but {type(msg).__name__}")
    kind = msg.get("type")
    if kind is None:
        raise ProtocolError("message has no 'type'")
    if not isinstance(kind, str):
        raise ProtocolError(f"type is not a string: {kind!r}")
    return kind, msg


def _get(msg: Json, key: str, kind: type[Any]) -> Any:
    if key not in msg:
        raise ProtocolError(f"'{msg['type']}' message is missing {key}")
    value = msg[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"{key} is not {_TYPE_NAMES[kind]}: {value!r}")
    return value


def _dumps(msg: Json) -> str:
    return json.dumps(msg, separators=(",", ":"))


def _check_audio(data: bytes, rate: int) -> None:
    if len(data) % 2:
        raise ProtocolError(f"audio is not 16-bit PCM: odd length ({len(data)} bytes)")
    limit = rate * 2 * MAX_AUDIO_S
    if len(data) > limit:
        raise ProtocolError(f"audio message of {len(data)} bytes is over {limit} (1 s)")


# --- server side -------------------------------------------------------------------------


class BrowserSerializer:
    """One softphone connection, seen from the server. The server names the call."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.rate: int | None = None
        self.stopped = False

    def parse(self, data: Frame) -> list[InboundMessage]:
        if isinstance(data, bytes):
            return self._audio(data)
        kind, msg = _load(data)
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
            digit: str = _get(msg, "digit", str).upper()
            if digit not in DTMF_DIGITS:
                raise ProtocolError(f"digit {digit!r} is not one of 0-9 * # A-D")
            return [Dtmf(digit)]
        return [Mark(_get(msg, "name", str))]

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
        rate: int = _get(msg, "rate", int)
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

    def started(self) -> str:
        """The answer to `start`: the call's id, so the page can follow its transcript."""
        return _dumps({"type": "started", "call_id": self.call_id, "rate": self.rate})

    def render(self, msg: OutboundMessage) -> list[Frame]:
        """Wire messages for `msg`: audio as binary 20 ms frames, the rest as JSON text."""
        if self.rate is None:
            raise RuntimeError("cannot render before the 'start' message")
        match msg:
            case PlayAudio(pcm):
                return list(split_frames(pcm, frame_bytes(self.rate, FRAME_MS)))
            case SetMark(name):
                return [_dumps({"type": "mark", "name": name})]
            case ClearAudio():
                return [_dumps({"type": "clear"})]
            case EndCall(reason):
                return [_dumps({"type": "end", "reason": reason})]
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
        return _dumps({"type": "start", "caller": caller, "rate": self.rate})

    def audio(self, pcm: bytes) -> list[bytes]:
        """Caller audio as binary messages of 20 ms (the last may be shorter)."""
        return split_frames(pcm, frame_bytes(self.rate, FRAME_MS))

    def dtmf(self, digit: str) -> str:
        return _dumps({"type": "dtmf", "digit": digit})

    def mark(self, name: str) -> str:
        return _dumps({"type": "mark", "name": name})

    def stop(self) -> str:
        return _dumps({"type": "stop"})

    def parse_server(self, data: Frame) -> list[OutboundMessage]:
        """What the server sent: audio → PlayAudio, mark → SetMark, clear, end → EndCall;
        "started" sets `call_id` and yields nothing."""
        if isinstance(data, bytes):
            _check_audio(data, self.rate)
            return [PlayAudio(data)]
        kind, msg = _load(data)
        if kind == "started":
            self.call_id = _get(msg, "call_id", str)
            rate = _get(msg, "rate", int)
            if rate != self.rate:
                raise ProtocolError(f"started at rate {rate}, not the {self.rate} asked for")
            return []
        if kind == "mark":
            return [SetMark(_get(msg, "name", str))]
        if kind == "clear":
            return [ClearAudio()]
        if kind == "end":
            return [EndCall(_get(msg, "reason", str))]
        raise ProtocolError(f"unknown type {kind!r}")
