"""A blind transfer of a SIP call (RFC 3515): our REFER in the call's dialog, its answer, and
the NOTIFYs of the implicit subscription it makes, to the end of the transfer.

The REFER goes where our BYE would (the first route, else the caller's Contact) and is sent
again over UDP until a final response comes (timers E and F). A refusal (any final status
but 2xx: 405 or 501 from a phone that cannot transfer, 603...) fails the transfer at once.
After the 202 the transferee calls the target and reports how that call goes in NOTIFYs,
each a message/sipfrag status line: a 2xx means the caller is with the agent (then the call
ends as any call does, with our BYE, RFC 5589 §6.1); a failure status (486 Busy Here, 480,
a 487 of a cancelled call), a subscription terminated without a 2xx, or no 2xx within the
transfer's timeout fails it. A NOTIFY is answered 200, or 481 when no REFER of the dialog is
waiting for one (RFC 6665), or 400 when its body is no sipfrag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ivr.call.leg import TransferRequest
from ivr.sip.message import Request, Response, new_branch, request, target
from ivr.sip.refer import ReferError, progress, refer_headers, refer_to
from ivr.sip.transport import Peer

if TYPE_CHECKING:
    from ivr.sip.call import SipCall
    from ivr.sip.endpoint import SipEndpoint

log = logging.getLogger(__name__)

T1, T2, TIMER_F = 0.5, 4.0, 32.0


class Referral:
    """One REFER of a call, waiting for the transferee's final word on it."""

    def __init__(self) -> None:
        self.outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def settle(self, error: str | None) -> None:
        if not self.outcome.done():
            self.outcome.set_result(error)


async def refer(call: SipCall, transfer: TransferRequest) -> str | None:
    """Transfer `call`'s caller to `transfer.target`: None once the transferee's new call is
    answered, else why not."""
    ep = call.ep
    try:
        refer_to_value = refer_to(transfer.target, transfer.context)
    except ReferError as exc:
        return str(exc)
    referral = Referral()
    ep.referrals[call.dialog] = referral
    try:
        async with asyncio.timeout(transfer.timeout_s):
            call.local_seq += 1
            headers = refer_headers(
                refer_to_value, call.contact, call.contact, list(transfer.context)
            )
            answer = await in_dialog(ep, call, "REFER", headers)
            if answer is None:
                return "no answer to the REFER"
            if answer.status >= 300:
                return f"REFER refused: {answer.status} {answer.reason}"
            log.info("SIP call %s: REFER to %s accepted", call.call_id, transfer.target)
            return await referral.outcome
    except TimeoutError:
        return f"not answered within {transfer.timeout_s:g} s"
    finally:
        if ep.referrals.get(call.dialog) is referral:
            del ep.referrals[call.dialog]


def notified(ep: SipEndpoint, call: SipCall, notify: Request, peer: Peer) -> None:
    """A NOTIFY in `call`'s dialog: the progress of our REFER."""
    referral = ep.referrals.get(call.dialog)
    if referral is None:
        ep.reply(notify, peer, 481)
        return
    try:
        news = progress(
            notify.headers.get("Event") or notify.headers.get("o"),
            notify.headers.get("Subscription-State"),
            notify.content_type,
            notify.body,
        )
    except ReferError as exc:
        ep.reply(notify, peer, 400, reason=f"Bad Request ({exc})")
        return
    ep.reply(notify, peer, 200)
    log.info(
        "SIP call %s: transfer %s%s",
        call.call_id,
        f"{news.status} {news.reason}" if news.status is not None else "progress",
        " (subscription ended)" if news.terminated else "",
    )
    if news.status is not None and 200 <= news.status < 300:
        referral.settle(None)
    elif news.status is not None and news.status >= 300:
        referral.settle(f"the transfer failed: {news.status} {news.reason}".strip())
    elif news.terminated:
        referral.settle("the transfer ended without an answer")


async def in_dialog(
    ep: SipEndpoint, call: SipCall, method: str, headers: list[tuple[str, str]]
) -> Response | None:
    """Send a request of ours in `call`'s dialog (CSeq `call.local_seq`) and wait for its
    final response; None when none came within timer F."""
    branch = new_branch()
    peer = await _dialog_peer(ep, call)
    if peer is None:
        return None
    via = f"SIP/2.0/{peer.transport} {ep.local_address(peer)}:{ep.port};branch={branch};rport"
    data = request(
        method,
        call.target,
        via=via,
        from_=call.our_from,
        to=call.invite.header("From"),
        call_id=call.call_id,
        cseq=call.local_seq,
        routes=call.routes,
        headers=headers,
    )
    answer: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    ep.awaiting[branch] = answer
    interval, waited = T1, 0.0
    try:
        while waited < TIMER_F:
            ep.transport.send(peer, data)
            wait = interval if peer.transport == "UDP" else TIMER_F
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(answer), wait)
            waited += wait
            interval = min(interval * 2, T2)
        return None
    finally:
        ep.awaiting.pop(branch, None)


async def _dialog_peer(ep: SipEndpoint, call: SipCall) -> Peer | None:
    """Where a request in `call`'s dialog goes: the dialog's connection while it is open,
    else the first route or the caller's Contact."""
    route = call.routes[0] if call.routes else None
    host, port, _ = target(_route_uri(route) if route else call.target)
    peer = call.peer
    try:
        if peer.transport == "TCP" and not peer.open:
            return await ep.transport.connect(host, port)
        if peer.transport == "UDP":
            infos = await asyncio.get_running_loop().getaddrinfo(host, port)
            address = infos[0][4]
            return Peer("UDP", (str(address[0]), int(address[1])))
    except OSError as exc:
        log.warning("SIP call %s: cannot reach the caller: %s", call.call_id, exc)
        return None
    return peer


def _route_uri(route: str) -> str:
    start, end = route.find("<"), route.find(">")
    return route[start + 1 : end] if 0 <= start < end else route.split(",", 1)[0].strip()
