"""The SIP user agent of `ivr serve`: requests in, each to its transaction or dialog.

Out of a dialog: INVITE (a new call: 100 Trying, then 180 and 200, or a refusal: 420 for a
`Require` we lack, 415/488 without a usable SDP offer, 503 while the node drains, is full
or has no RTP port), OPTIONS (200; 503 while draining, so a proxy's probe moves calls
elsewhere), CANCEL (matched to its INVITE: 200, and the INVITE's 487 while it still rings;
481 for none). In a dialog (its To tag is ours): BYE, INFO, re-INVITE, ACK; a To tag of no
dialog of ours is a 481. Other methods get 405 or 501 with `Allow`.

Transactions, as much as a called side needs (RFC 3261 §17.2, §13.3.1.4): a retransmitted
request gets the response it had (kept 32 s); a final response to an INVITE is sent again
at T1, 2·T1 … T2 until its ACK, over UDP (a 2xx over TCP too), for 64·T1 at most; our BYE
is sent again the same way until a response comes (timer E/F).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from ivr.call.services import CallServices
from ivr.config import ConfigError, Settings
from ivr.sip import sdp
from ivr.sip.access import SipAccess, parse_networks, parse_users
from ivr.sip.call import SipCall, SipConfig, State
from ivr.sip.media import PortPool, PortRange
from ivr.sip.message import (
    ALLOW,
    REASONS,
    Request,
    Response,
    new_branch,
    new_tag,
    request,
    response,
    target,
)
from ivr.sip.transfer import Referral, notified
from ivr.sip.transport import Peer, SipTransport

log = logging.getLogger(__name__)

T1, T2, TIMER_H = 0.5, 4.0, 32.0
DEFAULT_PORT = 5060
MAX_CALL_ID = 128  # the session refuses longer far-end ids
SUPPORTED: frozenset[str] = frozenset()  # option tags (Require) we support: none yet
KNOWN_METHODS = {
    "REGISTER",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "MESSAGE",
    "REFER",
    "UPDATE",
    "PRACK",
}


class SipEndpoint:
    def __init__(
        self,
        services: CallServices,
        config: SipConfig,
        ports: PortPool,
        access: SipAccess | None = None,
    ) -> None:
        self.services = services
        self.config = config
        self.ports = ports
        self.access = access or SipAccess()
        self.transport = SipTransport(self._handle)
        self.port = 0
        self._calls: dict[tuple[str, str], SipCall] = {}  # (Call-ID, our tag): dialogs
        self._invites: dict[tuple[str, str], SipCall] = {}  # (Call-ID, branch): for CANCEL
        self._answered: OrderedDict[tuple[str, str, str], tuple[bytes, float]] = OrderedDict()
        self._unacked: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._clients: dict[str, asyncio.Task[None]] = {}  # our requests, by branch
        self.awaiting: dict[str, asyncio.Future[Response]] = {}  # ours that want the answer
        self.referrals: dict[tuple[str, str], Referral] = {}  # dialog → its REFER in progress
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, host: str, port: int) -> int:
        self.port = await self.transport.start(host, port)
        log.info("SIP on UDP and TCP port %d", self.port)
        return self.port

    async def close(self) -> None:
        """Cut the calls (each ends as any call does, with our BYE), then stop listening."""
        calls = [t for t in self._tasks if t.get_name().startswith("sip-call")]
        for task in calls:
            task.cancel()
        if calls:
            await asyncio.wait(calls, timeout=15)
        for task in [*self._tasks, *self._unacked.values(), *self._clients.values()]:
            task.cancel()
        await self.transport.close()

    def local_address(self, peer: Peer) -> str:
        return self.transport.local_address(peer)

    @property
    def ringing(self) -> int:
        return sum(1 for c in self._invites.values() if c.state is State.RINGING)

    # --- dispatch ------------------------------------------------------------------------

    def _handle(self, message: Request | Response, peer: Peer) -> None:
        try:
            if isinstance(message, Response):
                if self._answer(message):
                    return
                task = self._clients.pop(message.branch, None)
                if task is not None and message.status >= 200:
                    task.cancel()
                elif task is not None:
                    self._clients[message.branch] = task  # provisional: wait on
                return
            self._request(message, peer)
        except Exception:
            log.exception("SIP %s from %s:%d failed", type(message).__name__, *peer.addr)
            if isinstance(message, Request) and message.method != "ACK":
                with contextlib.suppress(Exception):
                    self.reply(message, peer, 500)

    def _request(self, req: Request, peer: Peer) -> None:
        if not self.access.allows(peer.addr[0]):
            if req.method != "ACK":
                self.reply(req, peer, 403, reason="Forbidden (source not allowed)")
            return
        if req.method == "ACK":
            self._on_ack(req)
            return
        cached = self._answered.get(self._key(req))
        if cached is not None:  # a retransmission: the same answer again
            self.transport.send(peer, cached[0])
            return
        if req.method == "CANCEL":
            self._on_cancel(req, peer)
        elif req.to_tag:
            self._in_dialog(req, peer, req.to_tag)
        elif req.method == "INVITE":
            self._on_invite(req, peer)
        elif req.method == "OPTIONS":
            self._on_options(req, peer)
        else:
            self._unsupported(req, peer)

    def _unsupported(self, req: Request, peer: Peer) -> None:
        if req.method in ("BYE", "INFO"):
            self.reply(req, peer, 481)
        else:
            status = 405 if req.method in KNOWN_METHODS else 501
            self.reply(req, peer, status, headers=[("Allow", ALLOW)])

    def _in_dialog(self, req: Request, peer: Peer, tag: str) -> None:
        call = self._calls.get((req.call_id, tag))
        if call is None:
            self.reply(req, peer, 481)
            return
        if req.cseq.sequence < call.remote_seq:
            self.reply(req, peer, 500, reason="Server Internal Error (CSeq out of order)")
            return
        call.remote_seq = req.cseq.sequence
        if req.method == "BYE":
            call.on_bye(req, peer)
        elif req.method == "INFO":
            call.on_info(req, peer)
        elif req.method == "INVITE":
            call.on_reinvite(req, peer)
        elif req.method == "OPTIONS":
            self._on_options(req, peer)
        elif req.method == "NOTIFY":
            notified(self, call, req, peer)  # of our REFER (ivr.sip.transfer)
        else:
            self._unsupported(req, peer)

    def _answer(self, response: Response) -> bool:
        """A response to a request of ours that waits for it (a REFER): True if it was one."""
        waiter = self.awaiting.get(response.branch)
        if waiter is None:
            return False
        if response.status >= 200 and not waiter.done():
            waiter.set_result(response)
        return True

    def _on_ack(self, ack: Request) -> None:
        task = self._unacked.pop((ack.call_id, ack.cseq.sequence), None)
        if task is not None:
            task.cancel()
        tag = ack.to_tag
        call = self._calls.get((ack.call_id, tag)) if tag else None
        if call is not None:
            call.on_ack(ack)

    def _on_cancel(self, cancel: Request, peer: Peer) -> None:
        call = self._invites.get((cancel.call_id, cancel.branch))
        if call is None:
            self.reply(cancel, peer, 481)
            return
        self.reply(cancel, peer, 200)
        if call.on_cancel():
            log.info("SIP call %s cancelled before it was answered", call.call_id)

    def _on_options(self, req: Request, peer: Peer) -> None:
        if self.services.shutting_down:
            self.reply(req, peer, 503, headers=[("Retry-After", "5")])
            return
        headers = [("Allow", ALLOW), ("Accept", "application/sdp")]
        self.reply(req, peer, 200, headers=headers)

    # --- a new call ----------------------------------------------------------------------

    def _on_invite(self, invite: Request, peer: Peer) -> None:
        self.reply(invite, peer, 100)
        refused = self._refusal(invite)
        if refused is None:
            try:
                offer = sdp.parse(invite.body)
                call = SipCall(self, invite, peer, offer)
            except sdp.NoCodec as exc:
                warning = [("Warning", '305 ivr "Incompatible media format"')]
                refused = 488, f"{REASONS[488]} ({exc})", warning
            except (sdp.SdpError, ValueError) as exc:
                refused = 400, f"Bad Request ({exc})", []
        if refused is not None:
            status, reason, headers = refused
            log.info("SIP INVITE %s refused: %d %s", invite.call_id[:40], status, reason)
            self._final(invite, peer, status, reason, headers)
            return
        self._invites[(call.call_id, invite.branch)] = call
        self._spawn(self._start(call), f"sip-call:{call.call_id}")

    def _refusal(self, invite: Request) -> tuple[int, str, list[tuple[str, str]]] | None:
        required = {t.strip() for v in invite.headers.all("Require") for t in v.split(",")}
        if required - SUPPORTED - {""}:
            unsupported = ", ".join(sorted(required - SUPPORTED - {""}))
            return 420, REASONS[420], [("Unsupported", unsupported)]
        registry = self.services.registry
        if self.services.shutting_down:
            return 503, "Service Unavailable (shutting down)", [("Retry-After", "5")]
        if registry.active + self.ringing >= registry.max_calls:
            log.warning("SIP INVITE refused: %d calls in progress", registry.active)
            return 503, "Service Unavailable (all lines busy)", [("Retry-After", "10")]
        if invite.headers.get("Contact") is None:
            return 400, "Bad Request (no Contact)", []
        if len(invite.call_id) > MAX_CALL_ID:
            return 400, "Bad Request (Call-ID too long)", []
        challenge = self.access.check(invite)
        if challenge is not None:
            return 401, REASONS[401], [("WWW-Authenticate", challenge)]
        if not invite.body:
            return 488, "Not Acceptable Here (an SDP offer is needed)", []
        if invite.content_type != "application/sdp":
            return 415, REASONS[415], [("Accept", "application/sdp")]
        return None

    def _final(
        self, invite: Request, peer: Peer, status: int, reason: str, headers: list[tuple[str, str]]
    ) -> None:
        data = self.reply(invite, peer, status, reason=reason, to_tag=new_tag(), headers=headers)
        self.until_ack(invite.call_id, invite.cseq.sequence, data, peer, None)

    async def _start(self, call: SipCall) -> None:
        try:
            await call.open()
        except OSError as exc:
            log.error("SIP call %s: no RTP port: %s", call.call_id, exc)
            if call.state is State.RINGING:
                call.state = State.ENDED
                self._final(call.invite, call.peer, 503, "Service Unavailable (no RTP port)", [])
            self.forget(call)
            return
        if call.state is not State.RINGING:  # cancelled meanwhile
            call.release()
            return
        self._calls[call.dialog] = call
        call.ring()
        await call.run()

    def forget(self, call: SipCall) -> None:
        self._calls.pop(call.dialog, None)
        for key in [k for k, c in self._invites.items() if c is call]:
            del self._invites[key]

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- sending -------------------------------------------------------------------------

    @staticmethod
    def _key(req: Request) -> tuple[str, str, str]:
        return req.call_id, req.branch or str(req.cseq), req.method

    def reply(
        self,
        req: Request,
        peer: Peer,
        status: int,
        *,
        reason: str | None = None,
        to_tag: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        record_route: bool = False,
    ) -> bytes:
        """Send a response to `req`, and keep it for the request's retransmissions."""
        received = peer.addr if peer.transport == "UDP" else None
        data = response(
            req,
            status,
            reason=reason,
            to_tag=to_tag,
            headers=headers,
            body=body,
            received=received,
            record_route=record_route,
        )
        self.transport.send(peer, data)
        now = asyncio.get_running_loop().time()
        key = self._key(req)
        self._answered[key] = (data, now)
        self._answered.move_to_end(key)
        while self._answered and next(iter(self._answered.values()))[1] < now - TIMER_H:
            self._answered.popitem(last=False)
        return data

    def until_ack(
        self,
        call_id: str,
        seq: int,
        data: bytes,
        peer: Peer,
        on_timeout: Callable[[], None] | None,
    ) -> None:
        """Send `data` (a final response to an INVITE) again until its ACK comes."""
        key = (call_id, seq)
        old = self._unacked.pop(key, None)
        if old is not None:
            old.cancel()
        again = peer.transport == "UDP" or data.startswith(b"SIP/2.0 2")
        self._unacked[key] = asyncio.create_task(
            self._resend(key, data, peer if again else None, on_timeout), name="sip-2xx"
        )

    async def _resend(
        self,
        key: tuple[str, int] | str,
        data: bytes,
        peer: Peer | None,
        on_timeout: Callable[[], None] | None,
    ) -> None:
        interval, waited = T1, 0.0
        while waited < TIMER_H:
            await asyncio.sleep(interval)
            waited += interval
            if peer is not None:
                self.transport.send(peer, data)
            interval = min(interval * 2, T2)
        if isinstance(key, tuple):
            self._unacked.pop(key, None)
        else:
            self._clients.pop(key, None)
        if on_timeout is not None:
            on_timeout()

    async def send_bye(self, call: SipCall) -> None:
        """Our BYE in `call`'s dialog, to the first route or the caller's Contact."""
        branch = new_branch()
        host, port, _ = target(_route_uri(call.routes[0]) if call.routes else call.target)
        peer = call.peer
        try:
            if peer.transport == "TCP" and not peer.open:
                peer = await self.transport.connect(host, port)
            elif peer.transport == "UDP":
                peer = Peer("UDP", await _resolve(host, port))
        except OSError as exc:
            log.warning("SIP call %s: cannot send the BYE: %s", call.call_id, exc)
            return
        via = (
            f"SIP/2.0/{peer.transport} {self.local_address(peer)}:{self.port};branch={branch};rport"
        )
        data = request(
            "BYE",
            call.target,
            via=via,
            from_=call.our_from,
            to=call.invite.header("From"),
            call_id=call.call_id,
            cseq=call.local_seq,
            routes=call.routes,
        )
        self.transport.send(peer, data)
        if peer.transport == "UDP":
            task = asyncio.create_task(self._resend(branch, data, peer, None), name="sip-bye")
            self._clients[branch] = task


def _route_uri(route: str) -> str:
    start, end = route.find("<"), route.find(">")
    return route[start + 1 : end] if 0 <= start < end else route.split(",", 1)[0].strip()


async def _resolve(host: str, port: int) -> tuple[str, int]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    address = infos[0][4]
    return str(address[0]), int(address[1])


def sip_config(settings: Settings) -> SipConfig:
    return SipConfig(
        ring_ms=settings.sip_ring_ms,
        rtp_timeout_s=settings.rtp_timeout_seconds,
        media_address=settings.sip_media_address,
    )


def sip_access(settings: Settings) -> SipAccess:
    """IVR_SIP_ALLOW and IVR_SIP_USERS; a ConfigError naming the one that is wrong."""
    try:
        allow = parse_networks(settings.sip_allow)
    except ValueError as exc:
        raise ConfigError(f"IVR_SIP_ALLOW: {exc}") from None
    try:
        users = parse_users(settings.sip_users)
    except ValueError as exc:
        raise ConfigError(f"IVR_SIP_USERS: {exc}") from None
    return SipAccess(allow, users, settings.sip_realm)


def check_sip_port(settings: Settings) -> None:
    """A SIP port set (not 0) that is in use, or SIP access settings that are wrong, stop
    start-up now, before the models load."""
    sip_access(settings)
    port = settings.sip_port
    if not port:
        return
    host = settings.sip_host or settings.host
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                raise ConfigError(f"SIP port {port}: {exc.strerror or exc}") from exc


async def start_sip(
    services: CallServices, settings: Settings, stack: contextlib.AsyncExitStack
) -> SipEndpoint | None:
    """The SIP endpoint on IVR_SIP_PORT, closed by `stack`; None when SIP is off (0), or
    when the port is left at its default, 5060, and something else has it (a warning)."""
    if settings.sip_port == 0:
        return None
    host = settings.sip_host or settings.host
    ports = PortPool(PortRange.parse(settings.rtp_ports), host)
    endpoint = SipEndpoint(services, sip_config(settings), ports, sip_access(settings))
    port = DEFAULT_PORT if settings.sip_port is None else settings.sip_port
    try:
        await endpoint.start(host, port)
    except OSError as exc:
        if settings.sip_port is None:
            log.warning(
                "SIP is off: port %d is in use (%s); set IVR_SIP_PORT", port, exc.strerror or exc
            )
            return None
        raise ConfigError(f"SIP port {port}: {exc.strerror or exc}") from exc
    stack.push_async_callback(endpoint.close)
    return endpoint
