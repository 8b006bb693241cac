"""A SIP caller simulator: `ivr.dial.Caller`'s turns and timing over SIP and RTP instead of a
provider's WebSocket media stream, as a phone or a trunk calls the service.

INVITE over UDP with an offer of PCMU (PT 0, 20 ms) and telephone-event (PT 101), ACK of the
200, RTP both ways (our 20 ms frames paced by the base class; the server's packets decoded as
bot audio, its silence ignored), keys as RFC 4733 events in the audio's sequence, BYE either
way. The call's live feed is the same WebSocket as for media streams, subscribed by the SIP
Call-ID (the server keeps it as the call's provider id). For benchmarks and tests on
127.0.0.1: no authentication, no proxy, no retransmission beyond the INVITE's.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import struct
import sys
import time
import uuid
from collections.abc import Coroutine
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from ivr.audio.codecs import ulaw_decode, ulaw_encode
from ivr.dial import Caller, CallerTurn, events_url
from ivr.sip import rtp, sdp
from ivr.sip.message import (
    Request,
    Response,
    SipError,
    address_uri,
    new_branch,
    new_tag,
    parse_datagram,
    request,
    response,
    target,
)

EVENT_PT = 101
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
SILENT_PEAK = 64  # decoded bot audio quieter than this is the line's silence, not a prompt
KEY_FRAMES = 5  # an RFC 4733 key lasts this many 20 ms packets, then three end packets
INVITE_TIMEOUT_S = 32.0  # RFC 3261 Timer B
T1 = 0.5
QUIET_S = 1.2  # this long without bot audio (and the server listening): the caller's turn


class SipCallFailed(Exception):
    """The INVITE got a final refusal (`status`) or no answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"SIP {status} {reason}")
        self.status = status


class _Socket(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.got.put_nowait((data, (str(addr[0]), int(addr[1]))))


class SipCaller(Caller):
    """Dials `uri` (sip:anything@HOST:PORT); `http` is the server's HTTP base for the feed."""

    def __init__(
        self,
        uri: str,
        http: str,
        turns: list[CallerTurn],
        caller: str | None = None,
        *,
        out: TextIO | None = sys.stdout,
        max_seconds: float = 300.0,
        token: str | None = None,
    ) -> None:
        super().__init__(uri, turns, caller, out=out, max_seconds=max_seconds, token=token)
        self.http = http
        self.call_sid = uuid.uuid4().hex  # the SIP Call-ID
        self.report.call_id = self.call_sid
        self.host, self.port, _ = target(uri)
        self._sip: asyncio.DatagramTransport | None = None
        self._sip_in = _Socket()
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtp_in = _Socket()
        self._far_rtp: tuple[str, int] | None = None
        self._from = f"<sip:{caller or 'anonymous'}@127.0.0.1>;tag={new_tag()}"
        self._to = f"<{uri}>"
        self._remote_target = uri
        self._cseq = 1
        self._seq = secrets.randbits(16)
        self._timestamp = secrets.randbits(32)
        self._ssrc = secrets.randbits(32)
        self._first = True
        self._keys: asyncio.Queue[tuple[str, asyncio.Future[None]]] = asyncio.Queue()
        self._key: tuple[str, int, int, asyncio.Future[None]] | None = None  # key, start, sent
        self._bye_sent = False

    def _bot_quiet(self) -> bool:
        # RTP comes in real time, and the line is silent between a prompt's sentences and
        # between prompts: a media stream's bursts have no such gaps.
        return time.perf_counter() - self._last_bot_audio > QUIET_S

    def feed_url(self) -> str:
        parts = urlsplit(self.http)
        return events_url(f"ws://{parts.netloc}/", self.call_sid)

    # --- signalling ----------------------------------------------------------------------

    def _local(self, transport: asyncio.DatagramTransport | None) -> tuple[str, int]:
        assert transport is not None
        host, port = transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def _via(self, branch: str) -> str:
        host, port = self._local(self._sip)
        return f"SIP/2.0/UDP {host}:{port};branch={branch};rport"

    def _send_sip(self, data: bytes) -> None:
        assert self._sip is not None
        self._sip.sendto(data, (self.host, self.port))

    async def _connect(self, http: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        self._sip, _ = await loop.create_datagram_endpoint(
            lambda: self._sip_in, local_addr=("127.0.0.1", 0), family=socket.AF_INET
        )
        self._rtp, _ = await loop.create_datagram_endpoint(
            lambda: self._rtp_in, local_addr=("127.0.0.1", 0), family=socket.AF_INET
        )
        sip_host, sip_port = self._local(self._sip)
        rtp_host, rtp_port = self._local(self._rtp)
        offer = (
            f"v=0\r\no=- 1 1 IN IP4 {rtp_host}\r\ns=-\r\nc=IN IP4 {rtp_host}\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0 {EVENT_PT}\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:{EVENT_PT} telephone-event/8000\r\na=fmtp:{EVENT_PT} 0-15\r\n"
            "a=ptime:20\r\na=sendrecv\r\n"
        ).encode()
        branch = new_branch()
        invite = request(
            "INVITE",
            self.url,
            via=self._via(branch),
            from_=self._from,
            to=self._to,
            call_id=self.call_sid,
            cseq=self._cseq,
            headers=[
                ("Contact", f"<sip:caller@{sip_host}:{sip_port}>"),
                ("Content-Type", "application/sdp"),
            ],
            body=offer,
        )
        final = await self._transact(invite)
        if final.status >= 300:  # a non-2xx is ACKed in its transaction (same branch)
            self._send_sip(self._ack(branch, final.header("To")))
            raise SipCallFailed(final.status, final.reason)
        self._to = final.header("To")  # with the server's tag: the dialog
        contact = final.headers.get("Contact")
        if contact:
            self._remote_target = address_uri(contact)
        answer = sdp.parse(final.body)
        media = answer.media[0]
        self._far_rtp = (media.address or answer.address or self.host, media.port)
        self._send_sip(self._ack(new_branch(), self._to))

    async def _transact(self, invite: bytes) -> Response:
        """Send the INVITE (again at T1, 2·T1... until a provisional response) and wait for
        its final response."""
        deadline = time.monotonic() + INVITE_TIMEOUT_S
        interval: float | None = T1
        self._send_sip(invite)
        while (left := deadline - time.monotonic()) > 0:
            try:
                data, _ = await asyncio.wait_for(
                    self._sip_in.got.get(), min(left, interval or left)
                )
            except TimeoutError:
                if interval is not None:
                    self._send_sip(invite)
                    interval *= 2
                continue
            message = _parse(data)
            if isinstance(message, Response) and message.call_id == self.call_sid:
                if message.status >= 200:
                    return message
                interval = None  # provisional: the server has it, stop retransmitting
        raise SipCallFailed(408, "no final response to the INVITE")

    def _ack(self, branch: str, to: str) -> bytes:
        return request(
            "ACK",
            self._remote_target,
            via=self._via(branch),
            from_=self._from,
            to=to,
            call_id=self.call_sid,
            cseq=1,
        )

    def _media_tasks(self) -> list[Coroutine[Any, Any, None]]:
        return [self._read_rtp(), self._read_sip()]

    async def _read_sip(self) -> None:
        """The server's requests in the dialog: a BYE is answered and ends the call's media
        (the feed brings the hangup and its reason); 200s to our BYE are taken."""
        while True:
            data, source = await self._sip_in.got.get()
            message = _parse(data)
            if isinstance(message, Request):
                self._send_sip(response(message, 200, received=source))
                if message.method == "BYE":
                    return

    async def _read_rtp(self) -> None:
        while True:
            data, _ = await self._rtp_in.got.get()
            if rtp.is_rtcp(data):
                continue
            try:
                packet = rtp.parse(data)
            except rtp.RtpError:
                continue
            if packet.payload_type != 0 or not packet.payload:
                continue
            samples = ulaw_decode(packet.payload)
            if int(np.abs(samples.astype(np.int32)).max()) < SILENT_PEAK:
                continue
            self._bot_audio(samples.astype("<i2").tobytes(), time.perf_counter())

    # --- media -----------------------------------------------------------------------------

    def _packet(self, payload_type: int, timestamp: int, payload: bytes, marker: bool) -> None:
        assert self._rtp is not None and self._far_rtp is not None
        header = rtp.HEADER.pack(
            0x80,
            (0x80 if marker else 0) | payload_type,
            self._seq,
            timestamp & 0xFFFFFFFF,
            self._ssrc,
        )
        self._seq = (self._seq + 1) & 0xFFFF
        self._rtp.sendto(header + payload, self._far_rtp)

    async def _send_frame(self, frame: bytes) -> None:
        """One 20 ms slot: the audio frame, or the key being sent (its packets replace the
        audio, as a phone sends them)."""
        if self._key is None and not self._keys.empty():
            key, done = self._keys.get_nowait()
            self._key = (key, self._timestamp, 0, done)
        if self._key is not None:
            key, start, sent, done = self._key
            sent += 1
            end = sent > KEY_FRAMES
            payload = struct.pack(
                "!BBH",
                rtp.EVENT_KEYS.index(key),
                (0x80 if end else 0) | 10,  # volume -10 dBm0
                min(sent, KEY_FRAMES + 1) * FRAME_SAMPLES,
            )
            for _ in range(3 if end else 1):  # the end packet, three times (RFC 4733 2.5.1.4)
                self._packet(EVENT_PT, start, payload, marker=sent == 1)
            self._key = None if end else (key, start, sent, done)
            if end and not done.done():
                done.set_result(None)
        else:
            samples = np.frombuffer(frame, dtype="<i2")
            self._packet(0, self._timestamp, ulaw_encode(samples), marker=self._first)
            self._first = False
        self._timestamp += FRAME_SAMPLES

    async def _send_key(self, key: str) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._keys.put_nowait((key, done))
        await done

    async def _hang_up(self) -> None:
        self._bye_sent = True
        self._cseq += 1
        self._send_sip(
            request(
                "BYE",
                self._remote_target,
                via=self._via(new_branch()),
                from_=self._from,
                to=self._to,
                call_id=self.call_sid,
                cseq=self._cseq,
            )
        )

    async def _disconnect(self) -> None:
        for transport in (self._sip, self._rtp):
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.close()


def _parse(data: bytes) -> Request | Response | None:
    try:
        return parse_datagram(data)
    except SipError:
        return None
