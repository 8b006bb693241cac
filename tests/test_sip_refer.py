"""Blind transfer by REFER (RFC 3515): the wire pieces (ivr.sip.refer) alone, then our REFER
and the NOTIFYs of its subscription (ivr.sip.transfer) in process, a real SipEndpoint on UDP
with the test as the transferee. The whole transfer with real SIP software is
tests/test_e2e_sip_transfer.py's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import cast

import pytest

from ivr.call.leg import TransferRequest
from ivr.call.services import CallServices
from ivr.sip import sdp
from ivr.sip.call import SipCall, SipConfig, State
from ivr.sip.endpoint import SipEndpoint
from ivr.sip.media import PortPool, PortRange
from ivr.sip.message import Request, Response, parse_datagram
from ivr.sip.refer import ReferError, embedded_headers, progress, refer_to, sipfrag
from ivr.sip.transfer import refer
from ivr.sip.transport import Peer

CONTEXT = (
    ("X-IVR-Call-Id", "3f2c8a4e-1d7b"),
    ("X-IVR-Reason", "agent_requested"),
    ("X-IVR-Intents", "balance,agent"),
    ("X-IVR-Transcript", "http://ivr.example:8080/v1/calls/3f2c8a4e-1d7b?x=1&y=2"),
)


# --- the wire -----------------------------------------------------------------------------


def test_refer_to_embeds_the_context_escaped_and_reads_back() -> None:
    value = refer_to("sip:agents@pbx.example:5070;transport=tcp", CONTEXT)
    assert value.startswith("<sip:agents@pbx.example:5070;transport=tcp?X-IVR-Call-Id=3f2c")
    uri = value[1:-1]
    query = uri.split("?", 1)[1]
    assert query.count("&") == 3 and "%26y%3D2" in query  # the link's own & and = escaped
    assert " " not in value and "\r" not in value
    assert embedded_headers(value) == list(CONTEXT)
    # a name-addr target, and headers the target carries already (kept first)
    assert refer_to('"Sales" <sip:sales@pbx?Priority=urgent>', CONTEXT[:1]) == (
        "<sip:sales@pbx?Priority=urgent&X-IVR-Call-Id=3f2c8a4e-1d7b>"
    )
    assert refer_to("sip:agents@pbx", ()) == "<sip:agents@pbx>"


@pytest.mark.parametrize("target", ["", "agents", "tel:+15551234", "http://pbx/agents"])
def test_a_target_that_is_no_sip_uri_is_refused(target: str) -> None:
    with pytest.raises(ReferError, match="not a SIP URI"):
        refer_to(target, CONTEXT)


def test_sipfrag_and_the_progress_of_a_notify() -> None:
    assert sipfrag("message/sipfrag", b"SIP/2.0 200 OK\r\n") == (200, "OK")
    assert sipfrag("message/sipfrag", b"SIP/2.0 486 Busy Here\n") == (486, "Busy Here")
    assert sipfrag("message/sipfrag", b"SIP/2.0 100\r\nContact: x\r\n") == (100, "")
    assert sipfrag("message/sipfrag", b"") is None
    for ctype, body in [("text/plain", b"SIP/2.0 200 OK"), ("message/sipfrag", b"hello")]:
        with pytest.raises(ReferError):
            sipfrag(ctype, body)
    news = progress("refer;id=7", "terminated;reason=noresource", "message/sipfrag",
                    b"SIP/2.0 603 Declined")  # fmt: skip
    assert (news.status, news.reason, news.terminated) == (603, "Declined", True)
    assert progress("refer", "active;expires=60", "", b"").status is None
    with pytest.raises(ReferError, match="not a refer NOTIFY"):
        progress("presence", "active", "message/sipfrag", b"SIP/2.0 200 OK")


# --- in process: our REFER and its NOTIFYs --------------------------------------------------

INVITE = (
    "INVITE sip:hotline@127.0.0.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-inv\r\n"
    "From: <sip:+15551230001@127.0.0.1>;tag=caller\r\nTo: <sip:hotline@127.0.0.1>\r\n"
    "Call-ID: xfer-1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:{port}>\r\n"
    "Content-Length: 0\r\n\r\n"
)
OFFER = "v=0\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


class Transferee(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[Request | Response] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        message = parse_datagram(data)
        if message is not None:
            self.got.put_nowait(message)

    async def next(self) -> Request | Response:
        return await asyncio.wait_for(self.got.get(), 3)


@pytest.fixture
async def dialog() -> AsyncIterator[tuple[SipCall, Transferee, asyncio.DatagramTransport]]:
    services = cast(CallServices, SimpleNamespace(shutting_down=False))
    endpoint = SipEndpoint(services, SipConfig(), PortPool(PortRange(41100, 41110), "127.0.0.1"))
    port = await endpoint.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    udp, far = await loop.create_datagram_endpoint(
        Transferee, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", port)
    )
    mine = udp.get_extra_info("sockname")[1]
    invite = parse_datagram(INVITE.format(port=mine).encode())
    assert isinstance(invite, Request)
    call = SipCall(endpoint, invite, Peer("UDP", ("127.0.0.1", mine)), sdp.parse(OFFER.encode()))
    call.state = State.CONFIRMED
    endpoint._calls[call.dialog] = call
    try:
        yield call, far, udp
    finally:
        udp.close()
        await endpoint.close()


def answer(req: Request, status: int, reason: str) -> bytes:
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [
        f"{k}: {v}" for k, v in req.headers.items if k in ("Via", "From", "To", "Call-ID", "CSeq")
    ]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def notify(call: SipCall, seq: int, frag: str, state: str = "active") -> bytes:
    body = f"SIP/2.0 {frag}\r\n"
    return (
        "NOTIFY sip:ivr@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-n{seq}\r\n"
        f"From: <sip:+15551230001@127.0.0.1>;tag=caller\r\n"
        f"To: <sip:hotline@127.0.0.1>;tag={call.local_tag}\r\nCall-ID: xfer-1\r\n"
        f"CSeq: {seq} NOTIFY\r\nEvent: refer\r\nSubscription-State: {state}\r\n"
        f"Content-Type: message/sipfrag\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


async def test_refer_accepted_then_notify_200_is_a_transfer(dialog) -> None:  # type: ignore[no-untyped-def]
    call, far, udp = dialog
    task = asyncio.create_task(refer(call, TransferRequest("sip:agent@127.0.0.1:5999", CONTEXT, 5)))
    req = await far.next()
    assert isinstance(req, Request) and req.method == "REFER"
    assert req.uri == "sip:caller@127.0.0.1:" + req.uri.rsplit(":", 1)[1]  # the Contact
    assert req.header("To").endswith("tag=caller") and call.local_tag in req.header("From")
    assert req.header("Refer-To").startswith("<sip:agent@127.0.0.1:5999?X-IVR-Call-Id=")
    assert embedded_headers(req.header("Refer-To")) == list(CONTEXT)
    for name, value in CONTEXT:
        assert req.header(name) == value
    assert req.header("Referred-By") and req.header("Contact")
    assert req.cseq.method == "REFER" and req.cseq.sequence == call.local_seq
    udp.sendto(answer(req, 202, "Accepted"))
    udp.sendto(notify(call, 2, "100 Trying"))
    assert (await far.next()).status == 200
    assert not task.done()
    udp.sendto(notify(call, 3, "200 OK", "terminated;reason=noresource"))
    assert (await far.next()).status == 200
    assert await asyncio.wait_for(task, 2) is None
    udp.sendto(notify(call, 4, "200 OK"))  # no REFER waits any more
    assert (await far.next()).status == 481


@pytest.mark.parametrize(
    ("refer_status", "frag", "error"),
    [
        (603, None, "REFER refused: 603 Decline"),
        (202, "486 Busy Here", "the transfer failed: 486 Busy Here"),
        (202, "bad", None),  # a body that is no sipfrag: 400, and it waits on to the timeout
    ],
)
async def test_refused_failed_and_unanswered_transfers(dialog, refer_status: int, frag: str | None,  # type: ignore[no-untyped-def]
                                                       error: str | None) -> None:  # fmt: skip
    call, far, udp = dialog
    task = asyncio.create_task(refer(call, TransferRequest("sip:agent@127.0.0.1", CONTEXT, 1.5)))
    req = await far.next()
    assert isinstance(req, Request)
    udp.sendto(answer(req, refer_status, "Decline" if refer_status == 603 else "Accepted"))
    if frag == "bad":
        udp.sendto(notify(call, 2, "x").replace(b"SIP/2.0 x", b"hello"))
        bad = await far.next()
        assert isinstance(bad, Response) and bad.status == 400
        assert await asyncio.wait_for(task, 3) == "not answered within 1.5 s"
        return
    if frag is not None:
        udp.sendto(notify(call, 2, frag, "terminated"))
    assert await asyncio.wait_for(task, 3) == error


async def test_an_unanswered_refer_is_sent_again(dialog) -> None:  # type: ignore[no-untyped-def]
    call, far, _ = dialog
    task = asyncio.create_task(refer(call, TransferRequest("sip:agent@127.0.0.1", CONTEXT, 1.2)))
    first, again = await far.next(), await far.next()  # timer E: 0.5 s later
    assert isinstance(first, Request) and isinstance(again, Request)
    assert first.branch == again.branch and again.method == "REFER"
    assert await asyncio.wait_for(task, 3) == "not answered within 1.2 s"
