"""One call's RTP: a UDP socket from the port range, packets in and out.

In: each datagram from the far end is parsed (`ivr.sip.rtp`), put in order by the jitter
buffer, and handed on as the session's messages: audio decoded to 16-bit PCM
(`CallerAudio`; a lost packet becomes as much silence, up to 100 ms), RFC 4733 events as
`Dtmf`. Packets that are not RTP, not in the agreed payload types, or (once latched) not
from the far end's address are dropped and counted; none of them ends the call. The far
end's packets of other types (comfort noise) still go through the jitter buffer, unplayed:
they take sequence numbers, and a gap would hold up the audio after them.

Symmetric RTP: we send to the address in the caller's SDP until its first packet comes,
then to wherever that packet came from (a caller behind NAT), and take packets only from
there; a new offer (re-INVITE) unlatches.

Out: each piece the player sends (`CallStart.ptime_ms`: one or two packet times) is encoded
and sent as packets of `Media.ptime_ms` at once: for a 30 ms caller the pieces are 60 ms,
two packets back to back every 60 ms, so timestamps stay exact and the player's pacing is
the stream's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

from ivr.audio.codecs import decode, encode
from ivr.sip import rtp
from ivr.sip.sdp import Media
from ivr.transports.messages import CallerAudio, Dtmf, InboundMessage

log = logging.getLogger(__name__)

MAX_FILL_PACKETS = 5  # silence for at most this many lost packets in a row


@dataclass(frozen=True)
class PortRange:
    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """`10000-20000` (even ports are used: RTP's, the odd one above is RTCP's)."""
        low, _, high = text.partition("-")
        if not (low.strip().isdigit() and high.strip().isdigit()):
            raise ValueError(f"RTP port range {text!r}: expected LOW-HIGH, e.g. 10000-20000")
        first, last = int(low), int(high)
        if not 1024 <= first < last <= 65535:
            raise ValueError(f"RTP port range {text!r}: need 1024 <= LOW < HIGH <= 65535")
        return cls(first + first % 2, last)


class PortPool:
    """Hands out even ports of the range in turn; a port some other program holds is
    skipped."""

    def __init__(self, ports: PortRange, host: str) -> None:
        self.ports = ports
        self.host = host
        self._next = ports.first
        self._used: set[int] = set()

    async def open(self, stream: RtpStream) -> int:
        loop = asyncio.get_running_loop()
        count = (self.ports.last - self.ports.first) // 2 + 1
        for _ in range(count):
            port = self._next
            self._next = port + 2 if port + 2 <= self.ports.last else self.ports.first
            if port in self._used:
                continue
            try:
                await loop.create_datagram_endpoint(lambda: stream, local_addr=(self.host, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            self._used.add(port)
            stream.on_close = functools.partial(self._used.discard, port)
            return port
        raise OSError(errno.EADDRINUSE, f"no free RTP port in {self.ports.first}-{self.ports.last}")


class RtpStream(asyncio.DatagramProtocol):
    def __init__(self, media: Media, deliver: Callable[[InboundMessage], None]) -> None:
        self._deliver = deliver
        self._transport: asyncio.DatagramTransport | None = None
        self.on_close: Callable[[], None] | None = None
        self.media = media
        self._sender = rtp.Sender(media.payload_type)
        self._jitter = rtp.JitterBuffer()
        self._events = rtp.DtmfEvents()
        self._latched: tuple[str, int] | None = None
        self.last_packet = 0.0  # loop time of the last RTP packet from the far end
        self.received = 0
        self.dropped = 0
        self._frame = 160  # samples in the far end's packets (for the silence of a loss)

    # --- asyncio.DatagramProtocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's own datagram transport is no DatagramTransport subclass (3.11): a cast
        self._transport = cast(asyncio.DatagramTransport, transport)
        self.last_packet = asyncio.get_running_loop().time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self.on_close is not None:
            self.on_close()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = (str(addr[0]), int(addr[1]))
        try:
            self._receive(data, source)
        except rtp.RtpError as exc:
            self.dropped += 1
            if self.dropped in (1, 100, 10_000):
                log.info("RTP from %s:%d dropped (%d so far): %s", *source, self.dropped, exc)

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket error: %r", exc)  # an ICMP unreachable: the far end is gone

    # --- in ------------------------------------------------------------------------------

    def _receive(self, data: bytes, source: tuple[str, int]) -> None:
        if self._latched is not None and source != self._latched:
            raise rtp.RtpError("not from the far end's address")
        if rtp.is_rtcp(data):
            return
        packet = rtp.parse(data)
        media = self.media
        agreed = packet.payload_type in (media.payload_type, media.telephone_event)
        if not agreed and self._latched is None:  # no latching on such a packet
            raise rtp.RtpError(f"payload type {packet.payload_type} was not agreed")
        if self._latched is None:
            self._latched = source  # symmetric RTP: this is where the caller is
        self.received += 1
        self.last_packet = asyncio.get_running_loop().time()
        for item in self._jitter.push(packet):  # all of the caller's: they share a sequence
            self._play(item)
        if not agreed and packet.payload_type != rtp.COMFORT_NOISE:
            raise rtp.RtpError(f"payload type {packet.payload_type} was not agreed")

    def _play(self, item: rtp.Packet | rtp.Lost) -> None:
        if isinstance(item, rtp.Lost):
            count = min(item.count, MAX_FILL_PACKETS)
            self._deliver(CallerAudio(b"\0\0" * self._frame * count))
        elif item.payload_type == self.media.telephone_event:
            for key in self._events.feed(item):
                self._deliver(Dtmf(key))
        elif item.payload and item.payload_type == self.media.payload_type:
            self._frame = len(item.payload)
            pcm = decode(item.payload, self.media.encoding).astype("<i2").tobytes()
            self._deliver(CallerAudio(pcm))

    # --- out -----------------------------------------------------------------------------

    def send(self, pcm: bytes) -> None:
        """Our audio (16-bit PCM at 8 kHz), as packets of the agreed packet time."""
        if self._transport is None or not self.media.we_send:
            return
        payload = encode(np.frombuffer(pcm, dtype="<i2"), self.media.encoding)
        size = self.media.ptime_ms * rtp.RATE // 1000
        now = asyncio.get_running_loop().time()
        target = self._latched or (self.media.address, self.media.port)
        for i in range(0, len(payload), size):
            self._transport.sendto(self._sender.packet(payload[i : i + size], now), target)

    def update(self, media: Media) -> None:
        """A new offer was accepted (re-INVITE): maybe a new address, codec or hold."""
        moved = (media.address, media.port) != (self.media.address, self.media.port)
        self.media = media
        self._sender.payload_type = media.payload_type
        if moved:
            self._latched = None
            self._jitter.flush()

    def close(self) -> None:
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()
