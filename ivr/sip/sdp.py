"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264), and nothing else: no I/O.

The caller's offer is read for its first RTP/AVP audio stream; the answer takes the first
codec the caller lists that the service speaks (G.711 μ-law, payload type 0, or A-law, 8,
static or by rtpmap name), the caller's telephone-event payload type for RFC 4733 keys,
and a packet time: the caller's `a=ptime` when it is 20, 30, 40 or 60 ms (and within its
`a=maxptime`), else 20 ms. Every other m= line of the offer is answered with port 0
(declined), as RFC 3264 wants one answer line per offered line. A stream with
`a=sendonly` or `a=inactive` (or the old `c=0.0.0.0`) is a caller holding the call.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from ivr.audio.codecs import Encoding

MAX_SDP = 16_384  # bytes
CODECS = {"PCMU": (0, Encoding.ULAW), "PCMA": (8, Encoding.ALAW)}
STATIC = {0: "PCMU", 8: "PCMA"}
PTIMES = (20, 30, 40, 60)
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly"}


class SdpError(ValueError):
    """The body is not an SDP we can read."""


class NoCodec(SdpError):
    """The offer has no audio stream in a codec the service speaks (a 488)."""


@dataclass
class MediaLine:
    kind: str
    port: int
    proto: str
    formats: list[str]
    address: str | None = None  # its own c= line
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)
    attributes: list[str] = field(default_factory=list)
    direction: str | None = None
    ptime: int | None = None
    maxptime: int | None = None


@dataclass
class Offer:
    address: str | None  # the session-level c=
    media: list[MediaLine]
    direction: str = "sendrecv"


@dataclass(frozen=True)
class Media:
    """What the call's RTP uses, as agreed: the far end's address, codec and packet time."""

    address: str  # where to send RTP (until symmetric RTP latches)
    port: int
    payload_type: int
    encoding: Encoding
    telephone_event: int | None  # the caller's RFC 4733 payload type
    ptime_ms: int  # our packets' length
    direction: str  # the caller's: sendrecv, sendonly (holding, music on hold), ...
    index: int  # the chosen m= line among the offer's

    @property
    def codec(self) -> str:
        return "PCMU" if self.encoding is Encoding.ULAW else "PCMA"

    @property
    def we_send(self) -> bool:
        return self.direction in ("sendrecv", "recvonly") and self._reachable

    @property
    def held(self) -> bool:
        return self.direction in ("sendonly", "inactive") or not self._reachable

    @property
    def _reachable(self) -> bool:
        return self.port != 0 and self.address not in ("0.0.0.0", "::")


def parse(body: bytes) -> Offer:
    """An SDP body: SdpError if it is not one (no v=, no m= line, bad numbers)."""
    if len(body) > MAX_SDP:
        raise SdpError(f"SDP over {MAX_SDP} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpError("SDP is not UTF-8") from None
    lines = [line.strip() for line in re.split(r"\r?\n", text) if line.strip()]
    if not lines or lines[0] != "v=0":
        raise SdpError("SDP does not start with v=0")
    offer = Offer(address=None, media=[])
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad SDP line {line[:40]!r}")
        kind, value = line[0], line[2:]
        current = offer.media[-1] if offer.media else None
        if kind == "m":
            offer.media.append(_media_line(value))
        elif kind == "c":
            address = _connection(value)
            if current is None:
                offer.address = address
            else:
                current.address = address
        elif kind == "a":
            _attribute(offer, current, value)
    if not offer.media:
        raise SdpError("SDP has no m= line")
    return offer


def _media_line(value: str) -> MediaLine:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(f"bad m= line {value[:60]!r}")
    port = parts[1].split("/", 1)[0]
    if not port.isdigit() or int(port) > 65535:
        raise SdpError(f"bad m= port {parts[1][:20]!r}")
    return MediaLine(parts[0], int(port), parts[2], parts[3:])


def _connection(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value[:60]!r}")
    address = parts[2].split("/", 1)[0]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(f"c= address is not an IP address: {address[:60]!r}") from None
    return address


def _attribute(offer: Offer, media: MediaLine | None, value: str) -> None:
    name, _, arg = value.partition(":")
    if name in DIRECTIONS:
        if media is None:
            offer.direction = name
        else:
            media.direction = name
    if media is None:
        return
    media.attributes.append(value)
    if name == "rtpmap":
        m = re.fullmatch(r"(\d{1,3})\s+([^/\s]+)/(\d+)(?:/\d+)?", arg.strip())
        if m is None:
            raise SdpError(f"bad rtpmap {arg[:60]!r}")
        media.rtpmap[int(m.group(1))] = (m.group(2), int(m.group(3)))
    elif name in ("ptime", "maxptime"):
        number = arg.strip().split(".", 1)[0]
        if not number.isdigit():
            raise SdpError(f"bad {name} {arg[:20]!r}")
        setattr(media, name, int(number))


def choose(offer: Offer) -> Media:
    """The audio stream and codec to use; NoCodec when the offer has none we speak."""
    for index, line in enumerate(offer.media):
        if line.kind != "audio" or line.proto not in ("RTP/AVP", "RTP/AVPF"):
            continue
        address = line.address or offer.address
        if address is None:
            raise SdpError("no c= line for the audio stream")
        codec = _first_codec(line)
        if codec is None:
            continue
        pt, encoding = codec
        return Media(
            address=address,
            port=line.port,
            payload_type=pt,
            encoding=encoding,
            telephone_event=_telephone_event(line),
            ptime_ms=_ptime(line),
            direction=line.direction or offer.direction,
            index=index,
        )
    raise NoCodec("no audio stream in PCMU or PCMA")


def _first_codec(line: MediaLine) -> tuple[int, Encoding] | None:
    for fmt in line.formats:
        if not fmt.isdigit():
            continue
        pt = int(fmt)
        name, rate = line.rtpmap.get(pt, (STATIC.get(pt, ""), 8000))
        if name.upper() in CODECS and rate == 8000:
            return pt, CODECS[name.upper()][1]
    return None


def _telephone_event(line: MediaLine) -> int | None:
    for pt, (name, rate) in line.rtpmap.items():
        if name.lower() == "telephone-event" and rate == 8000 and str(pt) in line.formats:
            return pt
    return None


def _ptime(line: MediaLine) -> int:
    wanted = line.ptime or 20
    if wanted in PTIMES and (line.maxptime is None or wanted <= line.maxptime):
        return wanted
    return 20


def answer(offer: Offer, media: Media, address: str, port: int, session: tuple[int, int]) -> bytes:
    """Our answer: `address` and `port` are where we receive RTP, `session` the o= line's
    id and version (the version goes up with every new answer in the dialog)."""
    family = "IP6" if ":" in address else "IP4"
    direction = REVERSE.get(media.direction, "inactive")
    lines = [
        "v=0",
        f"o=ivr {session[0]} {session[1]} IN {family} {address}",
        "s=ivr",
        f"c=IN {family} {address}",
        "t=0 0",
    ]
    for index, line in enumerate(offer.media):
        if index != media.index:
            lines.append(f"m={line.kind} 0 {line.proto} {line.formats[0]}")
            continue
        formats = [str(media.payload_type)]
        if media.telephone_event is not None:
            formats.append(str(media.telephone_event))
        lines.append(f"m=audio {port} RTP/AVP {' '.join(formats)}")
        lines.append(f"a=rtpmap:{media.payload_type} {media.codec}/8000")
        if media.telephone_event is not None:
            lines.append(f"a=rtpmap:{media.telephone_event} telephone-event/8000")
            lines.append(f"a=fmtp:{media.telephone_event} 0-15")
        lines.append(f"a=ptime:{media.ptime_ms}")
        lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()
