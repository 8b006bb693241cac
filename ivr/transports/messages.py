"""Transport-neutral messages between a telephony leg and the call logic.

Every serializer (`ivr.transports.base.Serializer`) turns its wire messages into the inbound
types below and the outbound ones into wire messages; nothing outside `ivr.transports` sees
a wire format. Audio is always 16-bit little-endian linear PCM at the leg's rate
(`CallStart.rate`): serializers decode and encode the wire codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ivr.audio.codecs import Encoding

FRAME_MS = 20
"""The unit of audio on a phone line: far ends send frames of it, and the player sends whole
frames (pieces of the leg's ptime, a multiple). Defined here only."""


class ProtocolError(ValueError):
    """The far end sent something malformed; the message names what is wrong."""


def _check_pcm(kind: str, pcm: bytes) -> None:
    if len(pcm) % 2:
        raise ValueError(f"{kind}.pcm must be 16-bit PCM (even length), got {len(pcm)} bytes")


# --- inbound: from the far end -----------------------------------------------------------


@dataclass(frozen=True)
class CallStart:
    """The leg is up. `encoding` is the wire codec (already decoded in `CallerAudio`).

    `ptime_ms` is how much outbound audio goes in one `PlayAudio` (as SDP's a=ptime): a far
    end with its own playout buffer (Twilio) takes 100 ms a message, five times fewer
    messages, wake-ups and socket writes than 20 ms frames; one that plays what it gets at
    once (Asterisk's AudioSocket) takes frames.
    """

    call_id: str
    stream_id: str
    caller: str | None
    params: dict[str, str]
    encoding: Encoding
    rate: int
    ptime_ms: int = FRAME_MS


@dataclass(frozen=True)
class CallerAudio:
    """Caller audio: 16-bit linear PCM at the leg's rate."""

    pcm: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_pcm("CallerAudio", self.pcm)


@dataclass(frozen=True)
class Dtmf:
    """A key press: one of 0-9 * # A-D."""

    digit: str


@dataclass(frozen=True)
class Mark:
    """Playback reached a mark set earlier with `SetMark`."""

    name: str


@dataclass(frozen=True)
class CallerHangup:
    """The far end ended the leg."""

    reason: str


@dataclass(frozen=True)
class TransportError:
    """The far end reported an error."""

    message: str


InboundMessage = CallStart | CallerAudio | Dtmf | Mark | CallerHangup | TransportError


# --- outbound: to the far end ------------------------------------------------------------


@dataclass(frozen=True)
class PlayAudio:
    """Audio to play: 16-bit linear PCM at the leg's rate."""

    pcm: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_pcm("PlayAudio", self.pcm)


@dataclass(frozen=True)
class SetMark:
    """Ask to be told (`Mark`) when playback reaches this point."""

    name: str


@dataclass(frozen=True)
class ClearAudio:
    """Drop queued playback now (barge-in)."""


@dataclass(frozen=True)
class EndCall:
    """Hang up the leg."""

    reason: str


OutboundMessage = PlayAudio | SetMark | ClearAudio | EndCall

DTMF_DIGITS = frozenset("0123456789*#ABCD")


def split_frames(data: bytes, size: int) -> list[bytes]:
    """`data` cut into `size`-byte pieces; the last may be shorter (never padded).

    Outbound audio is cut once, by the player; serializers use this only where a format
    bounds one message, and simulated far ends to send 20 ms frames as phones do."""
    return [data[i : i + size] for i in range(0, len(data), size)]
