"""The SIP user agent (ivr.sip.endpoint) in process over real UDP and TCP sockets, for what
is answered before any call starts: OPTIONS, refusals (503 full or draining, 488, 415, 420,
400), 481 for unknown dialogs and transactions, 405/501, retransmissions and malformed input.
Calls themselves are tests/test_e2e_sip.py's, with real SIP software."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import cast

import pytest

from ivr.call.registry import CallRegistry
from ivr.call.services import CallServices
from ivr.sip.call import SipConfig
from ivr.sip.endpoint import SipEndpoint
from ivr.sip.media import PortPool, PortRange
from ivr.sip.message import Request, Response, StreamFramer, parse_datagram

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP {formats}\r\n"
)


def sip(
    method: str,
    *,
    branch: str = "z9hG4bK-1",
    call_id: str = "c1",
    to_tag: str = "",
    body: str = "",
    extra: str = "",
    content_type: str = "application/sdp",
) -> bytes:
    to = "<sip:ivr@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    ctype = f"Content-Type: {content_type}\r\n" if body else ""
    return (
        f"{method} sip:anyone@somewhere.example SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch={branch};rport\r\n"
        "From: <sip:+15551230001@127.0.0.1>;tag=caller\r\n"
        f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\n"
        "Contact: <sip:caller@127.0.0.1:5999>\r\nMax-Forwards: 70\r\n"
        f"{extra}{ctype}Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.got.put_nowait(data)

    async def response(self, within: float = 2.0) -> Response:
        message = parse_datagram(await asyncio.wait_for(self.got.get(), within))
        assert isinstance(message, Response)
        return message

    async def final(self) -> Response:
        while (r := await self.response()).status < 200:
            pass
        return r


@pytest.fixture
async def agent() -> AsyncIterator[tuple[SipEndpoint, Client, asyncio.DatagramTransport]]:
    registry = CallRegistry(max_calls=1)
    services = cast(CallServices, SimpleNamespace(registry=registry, shutting_down=False))
    endpoint = SipEndpoint(services, SipConfig(), PortPool(PortRange(41000, 41010), "127.0.0.1"))
    port = await endpoint.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    udp, client = await loop.create_datagram_endpoint(
        Client, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", port)
    )
    try:
        yield endpoint, client, udp
    finally:
        udp.close()
        await endpoint.close()


async def test_options_is_answered_and_a_retransmission_gets_the_same(agent) -> None:  # type: ignore[no-untyped-def]
    endpoint, client, udp = agent
    udp.sendto(sip("OPTIONS"))
    first = await client.response()
    assert first.status == 200 and "INVITE" in first.header("Allow")
    assert "received=127.0.0.1" in first.headers.all("Via")[0]
    assert ";rport=" in first.headers.all("Via")[0]
    udp.sendto(sip("OPTIONS"))
    again = await client.response()
    assert again.headers.items == first.headers.items
    endpoint.services.shutting_down = True  # draining: a proxy's probe sends calls elsewhere
    udp.sendto(sip("OPTIONS", branch="z9hG4bK-2"))
    assert (await client.response()).status == 503


@pytest.mark.parametrize(
    ("message", "status"),
    [
        (sip("INVITE", body=OFFER.format(formats="18")), 488),  # G.729 only
        (sip("INVITE"), 488),  # no offer
        (sip("INVITE", body="hello", content_type="text/plain"), 415),
        (sip("INVITE", body="v=0\r\n"), 400),  # SDP without a stream
        (sip("INVITE", body=OFFER.format(formats="0"), extra="Require: 100rel\r\n"), 420),
        (sip("BYE"), 481),
        (sip("INFO", to_tag="nobody"), 481),
        (sip("INVITE", to_tag="nobody", body=OFFER.format(formats="0")), 481),
        (sip("CANCEL"), 481),
        (sip("REGISTER"), 405),
        (sip("FROBNICATE"), 501),
        (sip("OPTIONS").replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"), 400),
    ],
)
async def test_refusals(agent, message: bytes, status: int) -> None:  # type: ignore[no-untyped-def]
    _, client, udp = agent
    udp.sendto(message)
    final = await client.final()
    assert final.status == status, final.reason
    if status == 488 and b"m=audio" in message:
        assert final.header("Warning").startswith("305")


async def test_over_the_call_limit_is_a_503_retransmitted_until_the_ack(agent) -> None:  # type: ignore[no-untyped-def]
    endpoint, client, udp = agent
    endpoint.services.registry.admit("someone")  # the one line is taken
    udp.sendto(sip("INVITE", body=OFFER.format(formats="0")))
    assert (await client.response()).status == 100
    refused = await client.response()
    assert refused.status == 503 and refused.header("Retry-After")
    assert (await client.response(within=1.5)).status == 503  # timer G: again, no ACK yet
    ack = sip("ACK").replace(b"CSeq: 1 ACK", b"CSeq: 1 ACK")
    udp.sendto(
        ack.replace(
            b"To: <sip:ivr@127.0.0.1>", f"To: <sip:ivr@127.0.0.1>;tag={refused.to_tag}".encode()
        )
    )
    with pytest.raises(TimeoutError):
        await client.response(within=1.5)  # the ACK stopped it


async def test_garbage_is_dropped_and_the_agent_goes_on(agent) -> None:  # type: ignore[no-untyped-def]
    _, client, udp = agent
    for junk in (b"\x00" * 40, b"\xff\xfe\r\n\r\n", b"INVITE", sip("OPTIONS")[:50], b"x" * 70000):
        with contextlib.suppress(OSError):  # a datagram too large for the socket
            udp.sendto(junk)
    udp.sendto(sip("OPTIONS", branch="z9hG4bK-after"))
    assert (await client.response()).status == 200


async def test_tcp_framing_and_a_broken_stream(agent) -> None:  # type: ignore[no-untyped-def]
    endpoint, _, _ = agent
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    options = sip("OPTIONS").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
    writer.write(b"\r\n\r\n" + options[:30])  # a keep-alive, then a message in pieces
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.write(options[30:] + options.replace(b"z9hG4bK-1", b"z9hG4bK-2"))
    framer, got = StreamFramer(), list[Request | Response]()
    while len(got) < 2:
        got += framer.feed(await asyncio.wait_for(reader.read(4096), 2))
    assert [m.status for m in got if isinstance(m, Response)] == [200, 200]
    assert "received=" not in got[0].headers.all("Via")[0]  # TCP: answered on the connection
    writer.write(options.replace(b"Content-Length: 0", b"Content-Length: zero"))
    reply = await asyncio.wait_for(reader.read(4096), 2)
    assert reply.startswith(b"SIP/2.0 400 Bad Request (bad Content-Length")
    assert await asyncio.wait_for(reader.read(4096), 2) == b""  # and closed
    writer.close()


def test_a_port_in_use_is_refused_at_start_up() -> None:
    from ivr.config import ConfigError, load_settings
    from ivr.sip.endpoint import check_sip_port

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        settings = load_settings(sip_port=port, host="127.0.0.1")
        with pytest.raises(ConfigError, match=f"SIP port {port}"):
            check_sip_port(settings)
    check_sip_port(load_settings(sip_port=0))  # SIP off: nothing to check


async def test_rtp_latches_to_the_first_source_and_drops_the_rest() -> None:
    """Symmetric RTP: our audio goes to the SDP's address until the caller's first packet,
    then to where it came from; packets from elsewhere, of other payload types, or not RTP
    at all are dropped and counted, and the call's stream goes on."""
    from ivr.audio.codecs import Encoding
    from ivr.sip import rtp
    from ivr.sip.media import RtpStream
    from ivr.sip.sdp import Media
    from ivr.transports.messages import CallerAudio, Dtmf, InboundMessage

    loop = asyncio.get_running_loop()

    class Sink(asyncio.DatagramProtocol):
        def __init__(self) -> None:
            self.got: asyncio.Queue[bytes] = asyncio.Queue()

        def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
            self.got.put_nowait(data)

    async def socket_() -> tuple[asyncio.DatagramTransport, Sink, int]:
        udp, sink = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
        return udp, sink, int(udp.get_extra_info("sockname")[1])

    sdp_side, sdp_sink, sdp_port = await socket_()
    caller, caller_sink, _ = await socket_()
    stranger, _, _ = await socket_()
    media = Media("127.0.0.1", sdp_port, 0, Encoding.ULAW, 101, 20, "sendrecv", 0)
    heard: list[InboundMessage] = []
    stream = RtpStream(media, heard.append)
    port = await PortPool(PortRange(41100, 41110), "127.0.0.1").open(stream)
    try:
        stream.send(b"\0\0" * 160)
        assert rtp.parse(await asyncio.wait_for(sdp_sink.got.get(), 2)).payload_type == 0
        to_us = ("127.0.0.1", port)
        caller.sendto(rtp.build(rtp.Packet(0, 1, 160, 5, True, b"\xff" * 160)), to_us)
        await asyncio.sleep(0.1)
        stranger.sendto(rtp.build(rtp.Packet(0, 2, 320, 9, False, b"\x00" * 160)), to_us)
        caller.sendto(rtp.build(rtp.Packet(18, 2, 320, 5, False, b"\x00" * 20)), to_us)  # G.729
        caller.sendto(b"\x00junk", to_us)
        end = struct.pack("!BBH", 4, 0x80 | 10, 800)
        for seq in (3, 4, 5):  # a key's end, three times
            caller.sendto(rtp.build(rtp.Packet(101, seq, 480, 5, False, end)), to_us)
        await asyncio.sleep(0.2)
        stream.send(b"\0\0" * 160)
        assert rtp.parse(await asyncio.wait_for(caller_sink.got.get(), 2)).payload_type == 0
        assert sdp_sink.got.empty()  # latched: nothing more to the SDP's address
        audio = [m for m in heard if isinstance(m, CallerAudio)]
        assert len(audio) == 1  # the G.729 packet kept its place in the sequence, unplayed
        assert [m.digit for m in heard if isinstance(m, Dtmf)] == ["4"]
        assert stream.dropped == 3
    finally:
        stream.close()
        for udp in (sdp_side, caller, stranger):
            udp.close()
