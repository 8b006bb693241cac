"""One SIP call as the called side: its dialog (RFC 3261 §12-14), its RTP stream, and the
`SipLeg` its `CallSession` drives, as any transport's leg.

The INVITE is answered 180 Ringing (`IVR_SIP_RING_MS`, default 0, lets it ring first; a
CANCEL meanwhile gets the INVITE its 487), then 200 OK with our SDP answer, retransmitted
until the ACK comes (timers G and H, `ivr.sip.endpoint`). The call session starts with the
200: the greeting goes out at once. A 200 never acknowledged within 32 s ends the call
(a BYE, RFC 3261 §13.3.1.4), and so does an RTP stream that stops (`IVR_RTP_TIMEOUT_SECONDS`)
unless the caller holds the call; while it does, the leg hands the session a little silence
each second so the call is not taken for idle. Keys come as RFC 4733 events or as SIP
INFO (`application/dtmf-relay`, `application/dtmf`). A re-INVITE may move the media, change
the codec or hold (`a=sendonly`/`inactive`: we stop sending) and unhold; one without SDP is
answered with our offer, and its ACK carries the answer.

The session's end (`EndCall`, or closing the leg) sends our BYE, unless the caller's BYE
ended the call: then there is nothing to hang up.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ivr.call.leg import TransferRequest
from ivr.call.session import CallSession
from ivr.callerid import caller_number
from ivr.sip import sdp
from ivr.sip.media import RtpStream
from ivr.sip.message import (
    ALLOW,
    Request,
    SipError,
    address_uri,
    info_digit,
    new_tag,
)
from ivr.sip.message import (
    caller_number as sip_user,
)
from ivr.sip.transfer import refer
from ivr.sip.transport import Peer
from ivr.transports.messages import (
    FRAME_MS,
    CallerAudio,
    CallerHangup,
    CallStart,
    Dtmf,
    EndCall,
    InboundMessage,
    OutboundMessage,
    PlayAudio,
    TransportError,
)

if TYPE_CHECKING:
    from ivr.sip.endpoint import SipEndpoint

log = logging.getLogger(__name__)

MAX_INBOX = 500  # caller messages (10 s of audio) waiting for the session; more are dropped
ACK_WAIT_S = 4.0  # a hang-up before the ACK waits this long for it, then sends its BYE
HOLD_KEEPALIVE = CallerAudio(b"\0" * 320)  # 20 ms of silence, once a second while held
RATE = 8000


@dataclass(frozen=True)
class SipConfig:
    """What a SIP call needs to know of the settings."""

    ring_ms: int = 0
    rtp_timeout_s: float = 10.0
    media_address: str | None = None  # the SDP's c=; None: our address as the caller sees it


class State(enum.Enum):
    RINGING = "ringing"
    ANSWERED = "answered"  # 200 OK sent, no ACK yet
    CONFIRMED = "confirmed"
    ENDED = "ended"


class SipCall:
    def __init__(
        self, endpoint: SipEndpoint, invite: Request, peer: Peer, offer: sdp.Offer
    ) -> None:
        self.ep = endpoint
        self.invite = invite
        self.peer = peer
        self.call_id = invite.call_id
        self.local_tag = new_tag()
        self.remote_tag = invite.from_tag
        self.target = address_uri(invite.header("Contact"))
        self.routes = invite.headers.all("Record-Route")  # the route set, as is (we are the UAS)
        self.local_seq = secrets.randbelow(2**16) + 1
        self.remote_seq = invite.cseq.sequence
        self.offer = offer
        self.media = sdp.choose(offer)
        self.version = (secrets.randbelow(2**31), 1)  # the o= line's session id and version
        self.state = State.RINGING
        self.leg = SipLeg(self)
        self.stream = RtpStream(self.media, self.leg.deliver)
        self.rtp_port = 0
        self.address = endpoint.config.media_address or endpoint.local_address(peer)
        self._cancelled = asyncio.Event()
        self._acked = asyncio.Event()
        self._offered = False  # our 200 carried an offer (a re-INVITE without SDP)

    @property
    def dialog(self) -> tuple[str, str]:
        return self.call_id, self.local_tag

    @property
    def our_from(self) -> str:
        """Our side's address in requests we send: the INVITE's To, with our tag."""
        return self.invite.header("To") + f";tag={self.local_tag}"

    @property
    def contact(self) -> str:
        tcp = ";transport=tcp" if self.peer.transport == "TCP" else ""
        return f"<sip:ivr@{self.ep.local_address(self.peer)}:{self.ep.port}{tcp}>"

    # --- the call's life -----------------------------------------------------------------

    async def open(self) -> None:
        """Our RTP port (OSError when the range has none free)."""
        self.rtp_port = await self.ep.ports.open(self.stream)

    def ring(self) -> None:
        self._reply(self.invite, 180, record_route=True)

    async def run(self) -> None:
        """Ring, answer, and serve the call with a CallSession, to its end."""
        try:
            if self.ep.config.ring_ms:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._cancelled.wait(), self.ep.config.ring_ms / 1000)
            if self.state is not State.RINGING:
                return  # cancelled while it rang
            self._answer()
            watchdog = asyncio.create_task(self._watch(), name=f"sip:{self.call_id}:watch")
            try:
                await CallSession(self.leg, self.ep.services).run()
            finally:
                watchdog.cancel()
        finally:
            await self.hang_up()
            self.release()

    def _answer(self) -> None:
        self.leg.start(
            CallStart(
                call_id=self.call_id,
                stream_id=self.local_tag,
                caller=caller_number(self._caller()),
                params={},
                encoding=self.media.encoding,
                rate=RATE,
                ptime_ms=math.lcm(self.media.ptime_ms, FRAME_MS),
            )
        )
        self.state = State.ANSWERED
        self._send_sdp(self.invite, sdp.answer(self.offer, self.media, *self._ours()))
        log.info(
            "SIP call %s answered: %s, %d ms packets, RTP %s:%d ↔ %d",
            self.call_id,
            self.media.codec,
            self.media.ptime_ms,
            self.media.address,
            self.media.port,
            self.rtp_port,
        )

    def _caller(self) -> str | None:
        try:
            return sip_user(self.invite.header("From"))
        except ValueError:
            return None

    def _ours(self) -> tuple[str, int, tuple[int, int]]:
        return self.address, self.rtp_port, self.version

    def _send_sdp(self, request: Request, body: bytes) -> None:
        data = self._reply(
            request,
            200,
            record_route=True,
            headers=[("Content-Type", "application/sdp")],
            body=body,
        )
        self._acked.clear()
        seq = request.cseq.sequence
        self.ep.until_ack(self.call_id, seq, data, self.peer, self._no_ack)

    def _reply(
        self,
        request: Request,
        status: int,
        *,
        record_route: bool = False,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> bytes:
        extra = [("Contact", self.contact), ("Allow", ALLOW)] if record_route else []
        return self.ep.reply(
            request,
            self.peer,
            status,
            to_tag=self.local_tag,
            record_route=record_route,
            headers=extra + (headers or []),
            body=body,
        )

    def _no_ack(self) -> None:
        log.warning("SIP call %s: no ACK for our 200 OK", self.call_id)
        self.leg.deliver(TransportError("no ACK for the 200 OK"))

    async def _watch(self) -> None:
        """Once a second: an RTP stream that stopped ends the call; a held one is kept."""
        loop = asyncio.get_running_loop()
        limit = self.ep.config.rtp_timeout_s
        while self.state is not State.ENDED:
            await asyncio.sleep(1.0)
            if self.media.held:
                self.stream.last_packet = loop.time()
                self.leg.deliver(HOLD_KEEPALIVE)
            elif loop.time() - self.stream.last_packet > limit:
                self.leg.deliver(TransportError(f"RTP timeout: no media for {limit:g} s"))
                return

    async def hang_up(self) -> None:
        """Our side ends the call: a BYE once the dialog is confirmed (or the ACK is late)."""
        if self.state is State.ANSWERED:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), ACK_WAIT_S)
        if self.state in (State.ANSWERED, State.CONFIRMED):
            self.state = State.ENDED
            self.local_seq += 1
            await self.ep.send_bye(self)
        self.leg.finish(None)

    def release(self) -> None:
        self.state = State.ENDED
        self.stream.close()
        self.ep.forget(self)

    # --- what the caller sends -----------------------------------------------------------

    def on_ack(self, ack: Request) -> None:
        self._acked.set()
        if self.state is State.ANSWERED:
            self.state = State.CONFIRMED
        if self._offered and ack.body:
            self._offered = False
            try:
                offer = sdp.parse(ack.body)
                self._use(offer, sdp.choose(offer))
            except sdp.SdpError as exc:  # the answer we asked for is no good: end the call
                self.leg.deliver(TransportError(f"bad SDP in the ACK: {exc}"))

    def on_bye(self, bye: Request, peer: Peer) -> None:
        self.ep.reply(bye, peer, 200)
        if self.state is not State.ENDED:
            self.state = State.ENDED
            self.leg.finish(CallerHangup("bye"))

    def on_cancel(self) -> bool:
        """A CANCEL of the INVITE: True if it stopped the call (it had not been answered)."""
        if self.state is not State.RINGING:
            return False
        self.state = State.ENDED
        self._cancelled.set()
        data = self._reply(self.invite, 487)
        self.ep.until_ack(self.call_id, self.invite.cseq.sequence, data, self.peer, None)
        return True

    def on_info(self, info: Request, peer: Peer) -> None:
        try:
            digit = info_digit(info.content_type, info.body)
        except SipError as exc:
            self.ep.reply(info, peer, 400, reason=f"Bad Request ({exc})")
            return
        if digit is None and info.body:
            accept = [("Accept", "application/dtmf-relay, application/dtmf")]
            self.ep.reply(info, peer, 415, headers=accept)
            return
        self.ep.reply(info, peer, 200)
        if digit is not None:
            self.leg.deliver(Dtmf(digit))

    def on_reinvite(self, invite: Request, peer: Peer) -> None:
        """A new offer in the dialog (hold, unhold, new address or codec), or none."""
        if not self._acked.is_set():
            self.ep.reply(invite, peer, 491, to_tag=self.local_tag)
            return
        self.remote_seq = invite.cseq.sequence
        self.peer = peer  # answers and our BYE go where the latest request came from
        if contact := invite.headers.get("Contact"):
            self.target = address_uri(contact)  # a target refresh
        if not invite.body:  # the offer is ours, the answer comes in the ACK
            self._offered = True
            self.version = (self.version[0], self.version[1] + 1)
            again = replace(self.media, direction="sendrecv", index=0)
            line = sdp.MediaLine("audio", self.media.port, "RTP/AVP", [str(again.payload_type)])
            self._send_sdp(invite, sdp.answer(sdp.Offer(None, [line]), again, *self._ours()))
            return
        try:
            offer = sdp.parse(invite.body)
            media = sdp.choose(offer)
        except sdp.NoCodec as exc:
            self.ep.reply(
                invite, peer, 488, to_tag=self.local_tag, reason=f"Not Acceptable Here ({exc})"
            )
            return
        except sdp.SdpError as exc:
            self.ep.reply(invite, peer, 400, to_tag=self.local_tag, reason=f"Bad Request ({exc})")
            return
        self._use(offer, media)
        self.version = (self.version[0], self.version[1] + 1)
        self._send_sdp(invite, sdp.answer(offer, media, *self._ours()))

    def _use(self, offer: sdp.Offer, media: sdp.Media) -> None:
        if media.held != self.media.held:
            log.info("SIP call %s %s", self.call_id, "on hold" if media.held else "off hold")
        self.offer, self.media = offer, media
        self.stream.update(media)


class SipLeg:
    """The `Leg` (`ivr.call.leg`) of a SIP call: what the caller's RTP and SIP say, in
    order, and our audio out as RTP."""

    name = "sip"

    def __init__(self, call: SipCall) -> None:
        self._call = call
        self._inbox: asyncio.Queue[InboundMessage | None] = asyncio.Queue()
        self._started = False
        self._finished = False
        self.dropped = 0

    def start(self, start: CallStart) -> None:
        self._inbox.put_nowait(start)
        self._started = True

    def deliver(self, msg: InboundMessage) -> None:
        """From the RTP stream and the dialog; nothing before the call's start or after
        its end, and caller audio only while the session keeps up."""
        if not self._started or self._finished:
            return
        if isinstance(msg, CallerAudio) and self._inbox.qsize() >= MAX_INBOX:
            self.dropped += 1
            return
        self._inbox.put_nowait(msg)

    def finish(self, last: InboundMessage | None) -> None:
        """The call is over: `last` says why, then receive() returns None."""
        if last is not None:
            self.deliver(last)
        if not self._finished:
            self._finished = True
            self._inbox.put_nowait(None)

    async def receive(self) -> InboundMessage | None:
        msg = await self._inbox.get()
        if msg is None:
            self._inbox.put_nowait(None)  # and None again for every later call
        return msg

    async def send(self, message: OutboundMessage) -> None:
        if isinstance(message, PlayAudio):
            self._call.stream.send(message.pcm)
        elif isinstance(message, EndCall):
            await self._call.hang_up()
        # SetMark: RTP has no playback echo, the session counts what was sent; ClearAudio:
        # nothing of ours is queued (each piece is sent as it comes from the player).

    async def close(self) -> None:
        await self._call.hang_up()

    async def transfer(self, request: TransferRequest) -> str | None:
        """A blind transfer of the caller by REFER (`ivr.sip.transfer`): None once done."""
        return await refer(self._call, request)
