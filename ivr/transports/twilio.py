"""Twilio Media Streams: JSON text messages over a WebSocket.

From Twilio: `connected`, `start`, `media` (base64 μ-law 8 kHz mono), `dtmf`, `mark` (echo of
a mark we set, once the audio queued before it has played or was cleared) and `stop`.
To Twilio (bidirectional `<Connect><Stream>`): `media`, `mark`, `clear`.

`TwilioSerializer` is the server side, `TwilioClient` plays the provider for simulators and
tests. Both are pure: text in, messages out, no I/O.
"""

from __future__ import annotations

import base64
import json
from typing import Any, assert_never

import numpy as np

from ivr.audio.codecs import Encoding, decode, encode
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

RATE = 8000
MIME_TYPES = {"audio/x-mulaw": Encoding.ULAW, "audio/x-alaw": Encoding.ALAW}
CALLER_KEYS = ("from", "From", "caller")
_PCM_FRAME = frame_bytes(RATE, FRAME_MS)  # 320 bytes of PCM = 160 G.711 bytes
PTIME_MS = 100  # outbound audio per media message: Twilio buffers what it is sent

Json = dict[str, Any]
_TYPE_NAMES = {str: "a string", int: "an integer", dict: "an object"}


# --- helpers shared by both sides --------------------------------------------------------


def _load(text: str | bytes) -> tuple[str, Json]:
    """(event, message) of one WebSocket text message."""
    msg = load_json(text)
    if not isinstance(msg, dict):
        raise ProtocolError(f"message is not a JSON object but {type(msg).__name__}")
    event = msg.get("event")
    if event is None:
        raise ProtocolError("message has no 'event'")
    if not isinstance(event, str):
        raise ProtocolError(f"event is not a string: {event!r}")
    return event, msg


def _get(msg: Json, path: str, kind: type[Any]) -> Any:
    """The value at dotted `path`, which must exist and be a `kind`."""
    cur: Any = msg
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(cur, dict):
            raise ProtocolError(f"{'.'.join(parts[:i])} is not an object: {cur!r}")
        if part not in cur:
            raise ProtocolError(f"'{msg['event']}' message is missing {path}")
        cur = cur[part]
    if not isinstance(cur, kind) or (kind is int and isinstance(cur, bool)):
        raise ProtocolError(f"{path} is not {_TYPE_NAMES[kind]}: {cur!r}")
    return cur


def _payload(msg: Json, encoding: Encoding) -> bytes:
    """`media.payload` decoded to 16-bit little-endian PCM."""
    payload: str = _get(msg, "media.payload", str)
    try:
        wire = base64.b64decode(payload, validate=True)
    except ValueError:  # binascii.Error, or a non-ASCII character (a plain ValueError)
        raise ProtocolError("media.payload is not valid base64") from None
    return decode(wire, encoding).astype("<i2").tobytes()


def _media_payload(pcm: bytes, encoding: Encoding) -> str:
    """PCM encoded and base64'd as one payload."""
    if len(pcm) % 2:
        raise ValueError(f"PCM must have an even number of bytes, got {len(pcm)}")
    return base64.b64encode(encode(np.frombuffer(pcm, dtype="<i2"), encoding)).decode("ascii")


def _media_payloads(pcm: bytes, encoding: Encoding) -> list[str]:
    """PCM cut into 20 ms frames, each encoded and base64'd (the last may be shorter)."""
    return [_media_payload(f, encoding) for f in split_frames(pcm, _PCM_FRAME)]


def _dumps(msg: Json) -> str:
    return json.dumps(msg, separators=(",", ":"))


# --- server side -------------------------------------------------------------------------


class TwilioSerializer:
    """One Media Streams connection, seen from our server.

    Media on the `outbound` track (only sent for `track="both_tracks"` streams) is the
    call's own playback and is ignored; we only listen to the caller.
    """

    def __init__(self) -> None:
        self.stream_sid: str | None = None
        self.encoding = Encoding.ULAW
        self.stopped = False

    def parse(self, text: str | bytes) -> list[InboundMessage]:
        event, msg = _load(text)
        if event == "connected":
            return []
        if event == "stop":
            self._check_stream(event, msg)
            if self.stopped:
                return []
            self.stopped = True
            return [CallerHangup("stop")]
        if self.stopped:
            raise ProtocolError(f"'{event}' message after 'stop'")
        if event == "start":
            return [self._start(msg)]
        if event not in ("media", "dtmf", "mark"):
            raise ProtocolError(f"unknown event {event!r}")
        if self.stream_sid is None:
            raise ProtocolError(f"'{event}' message before 'start'")
        self._check_stream(event, msg)
        if event == "media":
            pcm = _payload(msg, self.encoding)
            if msg["media"].get("track") == "outbound":
                return []
            return [CallerAudio(pcm)] if pcm else []
        if event == "dtmf":
            digit = _get(msg, "dtmf.digit", str).upper()
            if digit not in DTMF_DIGITS:
                raise ProtocolError(f"dtmf.digit {digit!r} is not one of 0-9 * # A-D")
            return [Dtmf(digit)]
        return [Mark(_get(msg, "mark.name", str))]

    def _start(self, msg: Json) -> CallStart:
        if self.stream_sid is not None:
            raise ProtocolError("second 'start' message on one stream")
        sid = msg["streamSid"] if isinstance(msg.get("streamSid"), str) else None
        stream_sid: str = sid or _get(msg, "start.streamSid", str)
        call_sid: str = _get(msg, "start.callSid", str)
        mime: str = _get(msg, "start.mediaFormat.encoding", str)
        rate: int = _get(msg, "start.mediaFormat.sampleRate", int)
        channels = msg["start"]["mediaFormat"].get("channels", 1)
        if mime not in MIME_TYPES:
            raise ProtocolError(f"start.mediaFormat.encoding {mime!r} is not supported")
        if rate != RATE:
            raise ProtocolError(f"start.mediaFormat.sampleRate {rate} is not supported (8000)")
        if channels != 1:
            raise ProtocolError(f"start.mediaFormat.channels {channels!r} is not supported (1)")
        params: Json = msg["start"].get("customParameters") or {}
        if not isinstance(params, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()
        ):
            raise ProtocolError("start.customParameters is not an object of strings")
        numbers = {k: caller_number(params[k]) for k in CALLER_KEYS if params.get(k)}
        caller = next((n for n in numbers.values() if n), None)  # none a number: anonymous
        # The params become the flow's variables: a caller key that is no number goes nowhere.
        params = {k: v for k, v in params.items() if k not in numbers or numbers[k]}
        self.stream_sid, self.encoding = stream_sid, MIME_TYPES[mime]
        return CallStart(call_sid, stream_sid, caller, dict(params), self.encoding, RATE, PTIME_MS)

    def _check_stream(self, event: str, msg: Json) -> None:
        sid = msg.get("streamSid")
        if sid is not None and self.stream_sid is not None and sid != self.stream_sid:
            raise ProtocolError(f"'{event}' message for stream {sid!r}, not {self.stream_sid!r}")

    def render(self, msg: OutboundMessage) -> list[str]:
        """Wire messages for `msg`. EndCall renders to nothing: the server closes the socket.

        Raises RuntimeError before `start` (there is no streamSid to address yet).
        """
        if self.stream_sid is None:
            raise RuntimeError("cannot render before the 'start' message")
        sid = self.stream_sid
        match msg:
            case PlayAudio(pcm):  # one message, whatever its length (the player cuts it)
                if not pcm:
                    return []
                payload = _media_payload(pcm, self.encoding)
                return [_dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}})]
            case SetMark(name):
                return [_dumps({"event": "mark", "streamSid": sid, "mark": {"name": name}})]
            case ClearAudio():
                return [_dumps({"event": "clear", "streamSid": sid})]
            case EndCall():
                return []
            case _:
                assert_never(msg)


# --- provider side (simulators, tests) ---------------------------------------------------


class TwilioClient:
    """Speaks as Twilio does: numbered messages, 20 ms media chunks with timestamps."""

    def __init__(
        self, encoding: Encoding = Encoding.ULAW, account_sid: str = "AC" + "0" * 32
    ) -> None:
        if encoding not in MIME_TYPES.values():
            raise ValueError(f"Media Streams carry G.711 only, not {encoding}")
        self.encoding = encoding
        self.account_sid = account_sid
        self.stream_sid = ""
        self.call_sid = ""
        self._seq = 0
        self._chunk = 0
        self._samples = 0

    def _msg(self, event: str, **fields: Any) -> str:
        self._seq += 1
        body = {"event": event, "sequenceNumber": str(self._seq), **fields}
        return _dumps({**body, "streamSid": self.stream_sid})

    def connected(self) -> str:
        return _dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, call_sid: str, stream_sid: str, params: dict[str, str] | None = None) -> str:
        self.call_sid, self.stream_sid = call_sid, stream_sid
        mime = next(k for k, v in MIME_TYPES.items() if v is self.encoding)
        return self._msg(
            "start",
            start={
                "accountSid": self.account_sid,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": dict(params or {}),
                "mediaFormat": {"encoding": mime, "sampleRate": RATE, "channels": 1},
            },
        )

    def media(self, pcm: bytes) -> list[str]:
        """Caller audio (16-bit PCM, 8 kHz) as 20 ms `media` messages."""
        out = []
        for payload in _media_payloads(pcm, self.encoding):
            self._chunk += 1
            media = {
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": str(self._samples * 1000 // RATE),
                "payload": payload,
            }
            self._samples += len(base64.b64decode(payload))
            out.append(self._msg("media", media=media))
        return out

    def dtmf(self, digit: str) -> str:
        return self._msg("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    def ack_mark(self, name: str) -> str:
        """Twilio's echo of a server mark whose preceding audio has played."""
        return self._msg("mark", mark={"name": name})

    def stop(self) -> str:
        return self._msg("stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid})

    def parse_server(self, text: str | bytes) -> list[OutboundMessage]:
        """What the server sent: media → PlayAudio (decoded), mark → SetMark, clear."""
        event, msg = _load(text)
        sid = _get(msg, "streamSid", str)
        if sid != self.stream_sid:
            raise ProtocolError(f"'{event}' message for stream {sid!r}, not {self.stream_sid!r}")
        if event == "media":
            return [PlayAudio(_payload(msg, self.encoding))]
        if event == "mark":
            return [SetMark(_get(msg, "mark.name", str))]
        if event == "clear":
            return [ClearAudio()]
        raise ProtocolError(f"unknown event {event!r}")
