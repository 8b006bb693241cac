"""Twilio Media Streams: JSON text messages over a WebSocket.

From Twilio: `connected`, `start`, `media` (base64 μ-law 8 kHz mono), `dtmf`, `mark` (echo of
a mark we set, once the audio queued before it has played or was cleared) and `stop`.
To Twilio (bidirectional `<Connect><Stream>`): `media`, `mark`, `clear`.

`TwilioSerializer` is the server side, `TwilioClient` plays the provider for simulators and
tests. Both are pure: text in, messages out, no I/O.
"""

from __future__ import annotations

import base64
from typing import Any, assert_never

import numpy as np

from ivr.audio.codecs import Encoding, decode, encode
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

RATE = 8000
MIME_TYPES = {"audio/x-mulaw": Encoding.ULAW, "audio/x-alaw": Encoding.ALAW}
CALLER_KEYS = ("from", "From", "caller")
_PCM_FRAME = frame_bytes(RATE, FRAME_MS)  # 320 bytes of PCM = 160 G.711 bytes
PTIME_MS = 100  # outbound audio per media message: Twilio buffers what it is sent
_JSON = JsonWire("event")


# --- helpers shared by both sides --------------------------------------------------------


def _payload(msg: Json, encoding: Encoding) -> bytes:
    """`media.payload` decoded to 16-bit little-endian PCM."""
    payload = _JSON.get(msg, "media.payload", str)
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


# --- server side -------------------------------------------------------------------------


class TwilioSerializer:
    """One Media Streams connection, seen from our server.

    Media on the `outbound` track (only sent for `track="both_tracks"` streams) is the
    call's own playback and is ignored; we only listen to the caller. A `Serializer`
    (`ivr.transports.base`): the call is named by our server, Twilio's callSid is its
    provider id; nothing can be sent before `start` names the stream.
    """

    call_id: str | None = None

    def __init__(self) -> None:
        self.stream_sid: str | None = None
        self.encoding = Encoding.ULAW
        self.stopped = False

    @property
    def ready(self) -> bool:
        return self.stream_sid is not None

    def parse(self, data: Wire) -> list[InboundMessage]:
        if isinstance(data, bytes):
            raise ProtocolError("binary WebSocket message: media streams send JSON text")
        event, msg = _JSON.load(data)
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
            digit = _JSON.get(msg, "dtmf.digit", str).upper()
            if digit not in DTMF_DIGITS:
                raise ProtocolError(f"dtmf.digit {digit!r} is not one of 0-9 * # A-D")
            return [Dtmf(digit)]
        return [Mark(_JSON.get(msg, "mark.name", str))]

    def _start(self, msg: Json) -> CallStart:
        if self.stream_sid is not None:
            raise ProtocolError("second 'start' message on one stream")
        sid = msg["streamSid"] if isinstance(msg.get("streamSid"), str) else None
        stream_sid = sid or _JSON.get(msg, "start.streamSid", str)
        call_sid = _JSON.get(msg, "start.callSid", str)
        mime = _JSON.get(msg, "start.mediaFormat.encoding", str)
        rate = _JSON.get(msg, "start.mediaFormat.sampleRate", int)
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

    def end(self) -> list[InboundMessage]:
        return []  # a closed socket is the leg's to report: it says no more than that

    def answer(self, start: CallStart) -> list[str]:
        return []

    def render(self, msg: OutboundMessage) -> list[str]:
        """Wire messages for `msg`. EndCall renders to nothing: the server closes the socket.

        Raises RuntimeError before `start` (there is no streamSid to address yet).
        """
        if self.stream_sid is None:
            raise RuntimeError("cannot render before the 'start' message")
        sid = self.stream_sid
        match msg:
            case PlayAudio(pcm):  # one message, whatever its length: Twilio sets no maximum
                if not pcm:
                    return []
                payload = _media_payload(pcm, self.encoding)
                return [dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}})]
            case SetMark(name):
                return [dumps({"event": "mark", "streamSid": sid, "mark": {"name": name}})]
            case ClearAudio():
                return [dumps({"event": "clear", "streamSid": sid})]
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
        return dumps({**body, "streamSid": self.stream_sid})

    def connected(self) -> str:
        return dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

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
        for frame in split_frames(pcm, _PCM_FRAME):  # as Twilio sends the caller: 20 ms
            payload = _media_payload(frame, self.encoding)
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
        event, msg = _JSON.load(text)
        sid = _JSON.get(msg, "streamSid", str)
        if sid != self.stream_sid:
            raise ProtocolError(f"'{event}' message for stream {sid!r}, not {self.stream_sid!r}")
        if event == "media":
            return [PlayAudio(_payload(msg, self.encoding))]
        if event == "mark":
            return [SetMark(_JSON.get(msg, "mark.name", str))]
        if event == "clear":
            return [ClearAudio()]
        raise ProtocolError(f"unknown event {event!r}")
