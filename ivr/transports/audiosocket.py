"""Asterisk AudioSocket: binary frames over TCP.

Each frame is a 1-byte kind, a 2-byte big-endian payload length and the payload:

    0x00 hangup (no payload)        0x01 UUID of the call (16 bytes)
    0x03 DTMF (1 ASCII byte)        0x10 audio: signed 16-bit little-endian PCM, 8 kHz mono
    0xFF error (optional 1-byte code; Asterisk's are bit flags, see ERROR_CODES)

Asterisk sends the UUID frame first. The protocol has no marks and no "clear": the server
knows what it has sent, and stops playback simply by not sending more audio, so `SetMark`
and `ClearAudio` render to nothing. Asterisk rejects empty payloads, so none are rendered.
Asterisk plays an audio frame of any length (its samples are the payload's length / 2), so a
`PlayAudio` goes as one frame: a piece of the leg's ptime (20 ms) is far below the 64 KiB the
length field allows. Newer Asterisk also defines audio kinds for higher slin rates; this
serializer accepts only 0x10.

`AudioSocketSerializer` is the server side; the `encode_*` functions write frames as Asterisk
does, for simulators and tests (its audio in 20 ms frames, `encode_audio`).
"""

from __future__ import annotations

import struct
import uuid
from typing import assert_never

from ivr.audio.codecs import Encoding
from ivr.audio.pcm import frame_bytes
from ivr.transports.base import Wire
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
    OutboundMessage,
    PlayAudio,
    ProtocolError,
    SetMark,
    TransportError,
    split_frames,
)

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_ERROR = 0xFF

RATE = 8000
HEADER = struct.Struct(">BH")
MAX_PAYLOAD = 0xFFFF
MAX_AUDIO_PAYLOAD = MAX_PAYLOAD - 1  # whole samples: 4 s at 8 kHz
AUDIO_FRAME = frame_bytes(RATE, FRAME_MS)  # 320 bytes: what Asterisk sends
ERROR_CODES = {
    0x01: "hangup of calling party",
    0x02: "frame forwarding error",
    0x04: "memory (allocation) error",
}


# --- encoding (server replies and the simulator's frames) --------------------------------


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"frame kind {kind} is not a byte")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame length {len(payload)} exceeds maximum {MAX_PAYLOAD}")
    return HEADER.pack(kind, len(payload)) + payload


def encode_uuid(call_id: uuid.UUID | str) -> bytes:
    return encode_frame(KIND_UUID, uuid.UUID(str(call_id)).bytes)


def encode_audio(pcm: bytes) -> bytes:
    """16-bit PCM at 8 kHz as Asterisk sends it: 20 ms audio frames (the last may be shorter)."""
    if len(pcm) % 2:
        raise ValueError(f"PCM must have an even number of bytes, got {len(pcm)}")
    return b"".join(encode_frame(KIND_AUDIO, f) for f in split_frames(pcm, AUDIO_FRAME))


def encode_dtmf(digit: str) -> bytes:
    if len(digit) != 1 or not digit.isascii():
        raise ValueError(f"DTMF digit must be one ASCII character, got {digit!r}")
    return encode_frame(KIND_DTMF, digit.encode("ascii"))


def encode_hangup() -> bytes:
    return encode_frame(KIND_HANGUP)


def encode_error(code: int | None = None) -> bytes:
    return encode_frame(KIND_ERROR, b"" if code is None else bytes([code]))


def describe_error(payload: bytes) -> str:
    if not payload:
        return "AudioSocket error (no code)"
    code = payload[0]
    names = [name for bit, name in ERROR_CODES.items() if code & bit] or ["application error"]
    return f"AudioSocket error 0x{code:02x}: {', '.join(names)}"


# --- server side ---------------------------------------------------------------------------


class AudioSocketSerializer:
    """One AudioSocket connection, seen from the server: the frames Asterisk sends, parsed
    incrementally (partial frames wait for more bytes), and the frames we send back.

    A `Serializer` (`ivr.transports.base`): the call is named by our server (the UUID is its
    provider id), and it can be sent a hangup before its UUID came."""

    call_id: str | None = None
    ready = True

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self.uuid: str | None = None  # the far end's id of the call, from the UUID frame
        self.hung_up = False
        self._buf = bytearray()

    def parse(self, data: Wire) -> list[InboundMessage]:
        if isinstance(data, str):
            raise ProtocolError("text message: AudioSocket sends binary frames")
        self._buf += data
        out: list[InboundMessage] = []
        while len(self._buf) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buf)
            if length > self.max_payload:
                raise ProtocolError(f"frame length {length} exceeds maximum {self.max_payload}")
            if len(self._buf) < HEADER.size + length:
                break
            payload = bytes(self._buf[HEADER.size : HEADER.size + length])
            del self._buf[: HEADER.size + length]
            out.extend(self._frame(kind, payload))
        return out

    def end(self) -> list[InboundMessage]:
        """The connection closed: a hangup (unless already seen); a partial frame is an error."""
        if self._buf:
            raise ProtocolError(f"connection closed inside a frame ({len(self._buf)} bytes left)")
        if self.hung_up:
            return []
        self.hung_up = True
        return [CallerHangup("closed")]

    def _frame(self, kind: int, payload: bytes) -> list[InboundMessage]:
        if self.hung_up:
            raise ProtocolError(f"AudioSocket frame kind 0x{kind:02x} after hangup")
        if kind == KIND_HANGUP:
            self.hung_up = True
            return [CallerHangup("hangup")]
        if kind == KIND_ERROR:
            return [TransportError(describe_error(payload))]
        if kind == KIND_UUID:
            return [self._start(payload)]
        if kind not in (KIND_AUDIO, KIND_DTMF):
            raise ProtocolError(f"AudioSocket frame kind 0x{kind:02x} unknown")
        name = "audio" if kind == KIND_AUDIO else "DTMF"
        if self.uuid is None:
            raise ProtocolError(f"{name} frame before the UUID frame")
        if kind == KIND_AUDIO:
            if len(payload) % 2:
                raise ProtocolError(f"audio frame has odd length {len(payload)}")
            return [CallerAudio(payload)] if payload else []
        digit = payload.decode("latin-1").upper()
        if len(payload) != 1 or digit not in DTMF_DIGITS:
            raise ProtocolError(f"DTMF payload {payload!r} is not one of 0-9 * # A-D")
        return [Dtmf(digit)]

    def _start(self, payload: bytes) -> CallStart:
        if self.uuid is not None:
            raise ProtocolError("second UUID frame on one connection")
        if len(payload) != 16:
            raise ProtocolError(f"UUID frame has {len(payload)} bytes, expected 16")
        self.uuid = str(uuid.UUID(bytes=payload))
        return CallStart(self.uuid, self.uuid, None, {}, Encoding.PCM16, RATE)

    def answer(self, start: CallStart) -> list[bytes]:
        return []

    def render(self, msg: OutboundMessage) -> list[bytes]:
        """Frames for `msg`: audio in one frame (more only past the length field's bound);
        nothing for SetMark and ClearAudio (no such frames exist)."""
        match msg:
            case PlayAudio(pcm):
                pieces = split_frames(pcm, MAX_AUDIO_PAYLOAD)  # the format's bound, not ptime
                return [encode_frame(KIND_AUDIO, p) for p in pieces]
            case EndCall():
                return [encode_hangup()]
            case SetMark() | ClearAudio():
                return []
            case _:
                assert_never(msg)
