"""RTP packets (RFC 3550), RFC 4733 telephone events and a small jitter buffer: pure, no I/O.

* `parse` reads a packet (version 2, CSRCs, header extension and padding skipped), RtpError
  if it is not one; `is_rtcp` tells RTCP that shares the port (rtcp-mux) apart.
* `JitterBuffer` puts packets back in sequence order: a packet that comes in order goes
  out at once (no added delay); one that comes early waits until the gap before it is
  filled or `depth` packets wait, then the gap counts as lost. Late and duplicate packets
  are dropped; a new SSRC or a jump of the sequence number starts over. Audio and event
  packets share one sequence, so both go through it.
* `DtmfEvents` turns telephone-event packets into keys: one key per event (its packets
  share one RTP timestamp; the end packet comes three times), also when every end packet
  of it was lost and the next event began.
* `Sender` numbers and stamps our packets: consecutive timestamps within a talk spurt; a
  pause (the player had nothing to send) moves the timestamp on by the time that passed
  and marks the spurt's first packet (RFC 3551 §4.1).
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

RATE = 8000  # G.711 and telephone-event clock
HEADER = struct.Struct("!BBHII")
EVENT_KEYS = "0123456789*#ABCD"  # RFC 4733 events 0-15
MAX_SEQ_JUMP = 3000  # a larger jump is a new stream, not loss
COMFORT_NOISE = 13


class RtpError(ValueError):
    """Not an RTP packet we can read."""


@dataclass(frozen=True)
class Packet:
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    marker: bool
    payload: bytes


@dataclass(frozen=True)
class Lost:
    """Packets that never came (the jitter buffer gave up waiting for them)."""

    count: int


def is_rtcp(data: bytes) -> bool:
    """RTCP (SR, RR, SDES, BYE, APP: 200-204) on the RTP port (RFC 5761)."""
    return len(data) >= 2 and 200 <= data[1] <= 204


def parse(data: bytes) -> Packet:
    if len(data) < HEADER.size:
        raise RtpError(f"{len(data)} bytes is shorter than an RTP header")
    first, second, seq, timestamp, ssrc = HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise RtpError(f"RTP version {first >> 6}")
    offset = HEADER.size + 4 * (first & 0x0F)
    if first & 0x10:  # a header extension: 16-bit profile, 16-bit length in words
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = len(data)
    if first & 0x20:  # padding: the last byte counts it
        if end <= offset or data[-1] == 0 or data[-1] > end - offset:
            raise RtpError("bad padding")
        end -= data[-1]
    if offset > end:
        raise RtpError("truncated RTP packet")
    return Packet(second & 0x7F, seq, timestamp, ssrc, bool(second & 0x80), data[offset:end])


def build(packet: Packet) -> bytes:
    second = (0x80 if packet.marker else 0) | packet.payload_type
    header = HEADER.pack(0x80, second, packet.seq, packet.timestamp, packet.ssrc)
    return header + packet.payload


def _ahead(a: int, b: int) -> int:
    """How far sequence number `a` is after `b` (negative: before), modulo 2**16."""
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


class JitterBuffer:
    def __init__(self, depth: int = 3) -> None:
        self.depth = depth
        self._expected: int | None = None
        self._ssrc: int | None = None
        self._held: dict[int, Packet] = {}
        self.lost = 0
        self.late = 0

    def push(self, packet: Packet) -> list[Packet | Lost]:
        """What can be played now, in order."""
        if self._ssrc != packet.ssrc or self._expected is None:
            out = self.flush()
            self._ssrc, self._expected = packet.ssrc, packet.seq
            return out + self.push(packet)
        ahead = _ahead(packet.seq, self._expected)
        if ahead < 0 or packet.seq in self._held:
            self.late += 1
            return []
        if ahead > MAX_SEQ_JUMP:
            out = self.flush()
            self._expected = packet.seq
            return out + self.push(packet)
        self._held[packet.seq] = packet
        return self._release()

    def _release(self) -> list[Packet | Lost]:
        out: list[Packet | Lost] = []
        assert self._expected is not None
        while self._held:
            if self._expected in self._held:
                out.append(self._held.pop(self._expected))
                self._expected = (self._expected + 1) & 0xFFFF
            elif len(self._held) > self.depth:  # give up on the gap
                expected = self._expected
                nearest = min(self._held, key=lambda s: _ahead(s, expected))
                missing = _ahead(nearest, expected)
                self.lost += missing
                out.append(Lost(missing))
                self._expected = nearest
            else:
                break
        return out

    def flush(self) -> list[Packet | Lost]:
        """Everything held, in order (the stream ends or starts over)."""
        out: list[Packet | Lost] = []
        if self._expected is not None:
            expected = self._expected
            out = [self._held[s] for s in sorted(self._held, key=lambda s: _ahead(s, expected))]
        self._held.clear()
        self._expected = None
        return out


class DtmfEvents:
    def __init__(self) -> None:
        self._current: tuple[int, int] | None = None  # (timestamp, event) being keyed
        self._done: int | None = None  # the timestamp of the last event reported

    def feed(self, packet: Packet) -> list[str]:
        """The keys this telephone-event packet completes (RtpError if malformed)."""
        if len(packet.payload) < 4:
            raise RtpError("telephone-event payload shorter than 4 bytes")
        event, flags = packet.payload[0], packet.payload[1]
        keys: list[str] = []
        current = self._current
        if current is not None and current[0] != packet.timestamp and self._done != current[0]:
            keys += self._report(*current)  # its end packets were all lost
        if event >= len(EVENT_KEYS):
            return keys  # a flash or tone event: not a key
        self._current = (packet.timestamp, event)
        if flags & 0x80 and self._done != packet.timestamp:
            keys += self._report(packet.timestamp, event)
        return keys

    def _report(self, timestamp: int, event: int) -> list[str]:
        self._done = timestamp
        return [EVENT_KEYS[event]]


class Sender:
    """Our side of the stream: sequence numbers, timestamps and marker bits."""

    GAP_S = 0.06  # sent this much later than the stream's clock: a new talk spurt

    def __init__(self, payload_type: int, ssrc: int | None = None) -> None:
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc
        self._seq = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._clock: float | None = None  # when the next sample is due, in loop time
        self.sent = 0

    def packet(self, payload: bytes, now: float) -> bytes:
        """The next packet with `payload` (`RATE` samples a second), sent at `now`."""
        marker = False
        if self._clock is None or now > self._clock + self.GAP_S:
            marker = True
            if self._clock is not None:
                self._timestamp += round((now - self._clock) * RATE)
            self._clock = now
        data = build(
            Packet(
                self.payload_type,
                self._seq,
                self._timestamp & 0xFFFFFFFF,
                self.ssrc,
                marker,
                payload,
            )
        )
        self._seq = (self._seq + 1) & 0xFFFF
        self._timestamp = (self._timestamp + len(payload)) & 0xFFFFFFFF
        self._clock += len(payload) / RATE
        self.sent += 1
        return data
