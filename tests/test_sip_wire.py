"""SIP, SDP and RTP on the wire (ivr.sip.message, .sdp, .rtp), alone: no sockets, no clock.

Good messages as baresip and sipp send them, and malformed ones: each must give a clear
error (with a 400 to send back when the request can be answered), never an exception of
another kind, so one bad message cannot touch another call.
"""

from __future__ import annotations

import ast
import random
import struct
from pathlib import Path

import pytest

from ivr.audio.codecs import Encoding
from ivr.sip import rtp, sdp
from ivr.sip.message import (
    MAX_MESSAGE,
    Request,
    Response,
    SipError,
    StreamFramer,
    caller_number,
    info_digit,
    parse_datagram,
    request,
    response,
    target,
)

INVITE = (
    "INVITE sip:hotline@10.0.0.1:5060 SIP/2.0\r\n"
    "v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n"
    "Via: SIP/2.0/UDP proxy.example;branch=z9hG4bK-p\r\n"
    "f: <sip:+15551230001@127.0.0.1>;tag=abc\r\n"
    "t: <sip:hotline@10.0.0.1>\r\n"
    "i: call-1@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Record-Route: <sip:proxy.example;lr>\r\n"
    "Contact: <sip:caller@127.0.0.1:5070>\r\n"
    "Subject: a folded\r\n  header\r\n"
    "c: application/sdp\r\n"
    "l: {length}\r\n"
    "\r\n"
)
OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\na=ptime:20\r\n"
)


def invite(body: str = OFFER, length: int | None = None) -> bytes:
    n = len(body.encode()) if length is None else length
    return (INVITE.format(length=n) + body).encode()


def parsed_invite() -> Request:
    message = parse_datagram(invite())
    assert isinstance(message, Request)
    return message


# --- SIP messages -------------------------------------------------------------------------


def test_an_invite_with_compact_and_folded_headers() -> None:
    req = parsed_invite()
    assert (req.method, req.uri) == ("INVITE", "sip:hotline@10.0.0.1:5060")
    assert req.call_id == "call-1@127.0.0.1"
    assert (req.cseq.sequence, req.cseq.method) == (1, "INVITE")
    assert req.from_tag == "abc" and req.to_tag is None
    assert req.branch == "z9hG4bK-1" and len(req.vias) == 2
    assert req.content_type == "application/sdp" and req.body == OFFER.encode()
    assert req.headers.get("subject") == "a folded header"
    assert caller_number(req.header("From")) == "+15551230001"


def test_a_response_echoes_the_request_and_adds_our_tag_and_received() -> None:
    req = parsed_invite()
    data = response(req, 180, to_tag="ours", received=("192.0.2.7", 40000), record_route=True)
    resp = parse_datagram(data)
    assert isinstance(resp, Response) and (resp.status, resp.reason) == (180, "Ringing")
    vias = resp.headers.all("Via")
    assert vias[0] == "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport=40000;received=192.0.2.7"
    assert vias[1] == "SIP/2.0/UDP proxy.example;branch=z9hG4bK-p"
    assert resp.to_tag == "ours" and resp.from_tag == "abc"
    assert resp.headers.all("Record-Route") == ["<sip:proxy.example;lr>"]
    assert resp.header("Content-Length") == "0"


def test_our_request_in_a_dialog() -> None:
    data = request(
        "BYE",
        "sip:caller@127.0.0.1:5070",
        via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;rport",
        from_="<sip:hotline@10.0.0.1>;tag=ours",
        to="<sip:+15551230001@127.0.0.1>;tag=abc",
        call_id="call-1",
        cseq=7,
        routes=["<sip:proxy.example;lr>"],
    )
    req = parse_datagram(data)
    assert isinstance(req, Request) and req.method == "BYE"
    assert req.header("Route") == "<sip:proxy.example;lr>" and req.cseq.sequence == 7
    assert target("sip:caller@127.0.0.1:5070;transport=tcp") == ("127.0.0.1", 5070, "tcp")
    assert target("sip:proxy.example;lr") == ("proxy.example", 5060, "udp")


def test_keepalives_are_no_message() -> None:
    assert parse_datagram(b"\r\n\r\n") is None
    assert parse_datagram(b"\r\n") is None


def test_content_length_cuts_a_datagram_and_a_larger_one_is_a_400() -> None:
    req = parse_datagram(invite(length=10))
    assert isinstance(req, Request) and req.body == OFFER.encode()[:10]
    with pytest.raises(SipError, match="larger than the body") as err:
        parse_datagram(invite(length=5000))
    assert err.value.reply is not None and err.value.reply.startswith(b"SIP/2.0 400 ")


@pytest.mark.parametrize(
    ("data", "why", "answered"),
    [
        (invite()[:60], "no blank line", False),
        (b"\x00\xff\xfe garbage\r\n\r\n", "UTF-8", False),
        (b"HELLO\r\n\r\n", "neither a request nor a response", False),
        (invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), "CSeq method", True),
        (invite().replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"), "CSeq", True),
        (invite().replace(b"i: call-1@127.0.0.1\r\n", b""), "Call-ID", False),
        (invite().replace(b"Subject: a", b"Subject a"), "malformed header line", True),
        (invite().replace(b"SIP/2.0\r\nv:", b"SIP/3.0\r\nv:"), "version", True),
        (invite().replace(b"sip:hotline@10.0.0.1:5060", b"nonsense"), "URI", True),
        (invite().replace(b"l: ", b"l: x"), "Content-Length", True),
        (invite() + b"x" * MAX_MESSAGE, "over", False),
    ],
)
def test_malformed_messages_are_clear_errors(data: bytes, why: str, answered: bool) -> None:
    with pytest.raises(SipError, match=why) as err:
        parse_datagram(data)
    assert (err.value.reply is not None) is answered
    if err.value.reply is not None:  # echoes what it can (a bad CSeq too)
        assert err.value.reply.startswith((b"SIP/2.0 400 ", b"SIP/2.0 505 "))
        assert b"\r\nCall-ID: call-1@127.0.0.1\r\n" in err.value.reply


def test_random_bytes_never_raise_anything_but_sip_error() -> None:
    rng = random.Random(12)
    good = invite()
    for _ in range(2000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randint(0, len(data))]) if rng.random() < 0.3 else bytes(data)
        try:
            parse_datagram(cut)
        except SipError:
            pass


def test_tcp_framing_by_content_length() -> None:
    framer = StreamFramer()
    one, two = invite(), invite().replace(b"call-1", b"call-2")
    stream = b"\r\n\r\n" + one + two
    assert framer.feed(stream[:100]) == []
    got = framer.feed(stream[100:-5])
    assert [m.call_id for m in got] == ["call-1@127.0.0.1"]
    got = framer.feed(stream[-5:])
    assert [m.call_id for m in got] == ["call-2@127.0.0.1"] and got[0].body == OFFER.encode()
    no_body = INVITE.replace("l: {length}\r\n", "").encode()
    message = framer.feed(no_body)
    assert len(message) == 1 and message[0].body == b""


def test_tcp_headers_that_never_end_are_refused() -> None:
    with pytest.raises(SipError, match="headers over"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X-Pad: y\r\n" * 3000)


def test_sip_info_keys() -> None:
    assert info_digit("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n") == "5"
    assert info_digit("application/dtmf-relay", b"Signal= 11\r\n") == "#"
    assert info_digit("application/dtmf", b"*") == "*"
    assert info_digit("text/plain", b"hello") is None
    with pytest.raises(SipError, match="Signal"):
        info_digit("application/dtmf-relay", b"Duration=160")
    with pytest.raises(SipError, match="not a DTMF key"):
        info_digit("application/dtmf-relay", b"Signal=55")


# --- SDP ----------------------------------------------------------------------------------


def test_the_first_codec_offered_that_we_speak() -> None:
    media = sdp.choose(sdp.parse(OFFER.encode()))
    assert (media.payload_type, media.encoding) == (0, Encoding.ULAW)
    assert (media.address, media.port, media.telephone_event) == ("127.0.0.1", 4000, 101)
    assert media.ptime_ms == 20 and media.we_send and not media.held
    pcma_first = OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 18 8 0 101")
    assert sdp.choose(sdp.parse(pcma_first.encode())).encoding is Encoding.ALAW
    dynamic = OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 96") + "a=rtpmap:96 PCMA/8000\r\n"
    media = sdp.choose(sdp.parse(dynamic.encode()))
    assert (media.payload_type, media.encoding, media.telephone_event) == (96, Encoding.ALAW, None)


def test_no_codec_we_speak_is_a_488() -> None:
    g729 = OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 18 101") + "a=rtpmap:18 G729/8000\r\n"
    with pytest.raises(sdp.NoCodec):
        sdp.choose(sdp.parse(g729.encode()))
    srtp = OFFER.replace("RTP/AVP", "RTP/SAVP")
    with pytest.raises(sdp.NoCodec):
        sdp.choose(sdp.parse(srtp.encode()))
    wideband = OFFER.replace("RTP/AVP 0 8 101", "RTP/AVP 97") + "a=rtpmap:97 PCMU/16000\r\n"
    with pytest.raises(sdp.NoCodec):
        sdp.choose(sdp.parse(wideband.encode()))


@pytest.mark.parametrize(
    ("attrs", "ptime"),
    [
        ("a=ptime:30\r\n", 30),
        ("a=ptime:10\r\n", 20),
        ("", 20),
        ("a=ptime:60\r\na=maxptime:40\r\n", 20),
    ],
)
def test_packet_time(attrs: str, ptime: int) -> None:
    body = OFFER.replace("a=ptime:20\r\n", attrs)
    assert sdp.choose(sdp.parse(body.encode())).ptime_ms == ptime


def test_hold_and_directions() -> None:
    for attr, held, we_send in [
        ("sendonly", True, False),
        ("inactive", True, False),
        ("recvonly", False, True),
    ]:
        media = sdp.choose(sdp.parse((OFFER + f"a={attr}\r\n").encode()))
        assert (media.held, media.we_send) == (held, we_send), attr
    old_style = OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")
    assert sdp.choose(sdp.parse(old_style.encode())).held


def test_the_answer() -> None:
    offer = sdp.parse(
        (OFFER + "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=sendonly\r\n").encode()
    )
    media = sdp.choose(offer)
    text = sdp.answer(offer, media, "192.0.2.1", 10002, (42, 3)).decode()
    assert text.startswith("v=0\r\no=ivr 42 3 IN IP4 192.0.2.1\r\n")
    assert "c=IN IP4 192.0.2.1\r\n" in text
    assert "m=audio 10002 RTP/AVP 0 101\r\n" in text and "a=rtpmap:0 PCMU/8000\r\n" in text
    assert "a=rtpmap:101 telephone-event/8000\r\n" in text and "a=ptime:20\r\n" in text
    assert "a=sendrecv\r\n" in text and "m=video 0 RTP/AVP 96\r\n" in text
    assert sdp.choose(sdp.parse(text.encode())).port == 10002  # our answer reads back


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "v=0"),
        (b"hello", "v=0"),
        (b"v=0\r\ns=-\r\n", "no m= line"),
        (OFFER.replace("4000", "port").encode(), "m= port"),
        (OFFER.replace("4000", "99999").encode(), "m= port"),
        (OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 host.example").encode(), "c= address"),
        (OFFER.replace("c=IN IP4 127.0.0.1", "c=IN").encode(), "bad c="),
        (OFFER.replace("a=rtpmap:101 telephone-event/8000", "a=rtpmap:x").encode(), "rtpmap"),
        (OFFER.replace("a=ptime:20", "a=ptime:fast").encode(), "ptime"),
        (b"v=0\r\nthis is no line\r\n", "bad SDP line"),
        (b"v=0\r\n\xff\xfe\r\n", "UTF-8"),
        (b"v=0\r\n" + b"a=x\r\n" * 5000, "over"),
    ],
)
def test_malformed_sdp(body: bytes, why: str) -> None:
    with pytest.raises(sdp.SdpError, match=why):
        sdp.choose(sdp.parse(body))


def test_no_connection_address_at_all() -> None:
    with pytest.raises(sdp.SdpError, match="no c= line"):
        sdp.choose(sdp.parse(OFFER.replace("c=IN IP4 127.0.0.1\r\n", "").encode()))


# --- RTP ----------------------------------------------------------------------------------


def packet(
    seq: int, ts: int = 0, pt: int = 0, payload: bytes = b"\xff" * 160, ssrc: int = 7
) -> rtp.Packet:
    return rtp.Packet(pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc, False, payload)


def test_packets_round_trip_and_header_extras_are_skipped() -> None:
    p = rtp.Packet(8, 65535, 2**32 - 1, 0xDEADBEEF, True, b"abc")
    assert rtp.parse(rtp.build(p)) == p
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 1, 2, 3)  # padding, ext, 2 CSRCs
    data = header + b"\0" * 8 + struct.pack("!HH", 0xBEDE, 1) + b"\0" * 4 + b"pcm" + b"\0\0\x03"
    got = rtp.parse(data)
    assert got.payload == b"pcm" and (got.seq, got.timestamp, got.ssrc) == (1, 2, 3)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x80\x00\x00", "shorter"),
        (b"\x40" + b"\0" * 20, "version"),
        (struct.pack("!BBHII", 0x8F, 0, 0, 0, 0), "truncated"),
        (struct.pack("!BBHII", 0x90, 0, 0, 0, 0), "extension"),
        (struct.pack("!BBHII", 0xA0, 0, 0, 0, 0) + b"ab\x09", "padding"),
        (struct.pack("!BBHII", 0xA0, 0, 0, 0, 0) + b"ab\x00", "padding"),
    ],
)
def test_malformed_rtp(data: bytes, why: str) -> None:
    with pytest.raises(rtp.RtpError, match=why):
        rtp.parse(data)


def test_rtcp_is_told_apart() -> None:
    assert rtp.is_rtcp(b"\x80\xc8" + b"\0" * 26)  # a sender report
    assert not rtp.is_rtcp(rtp.build(packet(1)))


def seqs(items: list[rtp.Packet | rtp.Lost]) -> list[int | str]:
    return [i.seq if isinstance(i, rtp.Packet) else f"lost{i.count}" for i in items]


def test_jitter_buffer_in_order_goes_out_at_once() -> None:
    jb = rtp.JitterBuffer()
    assert [seqs(jb.push(packet(s))) for s in (10, 11, 12)] == [[10], [11], [12]]


def test_jitter_buffer_reorders_and_drops_late_and_duplicate_packets() -> None:
    jb = rtp.JitterBuffer()
    assert seqs(jb.push(packet(1))) == [1]
    assert seqs(jb.push(packet(3))) == []
    assert seqs(jb.push(packet(2))) == [2, 3]
    assert seqs(jb.push(packet(2))) == [] and seqs(jb.push(packet(3))) == []
    assert jb.late == 2


def test_jitter_buffer_gives_up_on_a_gap_after_its_depth() -> None:
    jb = rtp.JitterBuffer(depth=3)
    jb.push(packet(1))
    assert [seqs(jb.push(packet(s))) for s in (4, 5, 6)] == [[], [], []]
    assert seqs(jb.push(packet(7))) == ["lost2", 4, 5, 6, 7]
    assert jb.lost == 2
    assert seqs(jb.push(packet(3))) == []  # too late now


def test_jitter_buffer_wraps_and_restarts() -> None:
    jb = rtp.JitterBuffer()
    assert seqs(jb.push(packet(65535))) == [65535]
    assert seqs(jb.push(packet(0))) == [0]
    assert seqs(jb.push(packet(20000))) == [20000]  # a jump: a new stream
    assert seqs(jb.push(packet(5, ssrc=8))) == [5]  # a new source


def event(seq: int, ts: int, key: int, end: bool) -> rtp.Packet:
    payload = struct.pack("!BBH", key, 0x80 * end | 10, 800)
    return packet(seq, ts, pt=101, payload=payload)


def test_rfc4733_one_key_per_event_though_its_end_comes_three_times() -> None:
    keys = rtp.DtmfEvents()
    got: list[str] = []
    seq = 0
    for ts, key in ((1000, 1), (5000, 1), (9000, 11)):
        for end in (False, False, True, True, True):
            seq += 1
            got += keys.feed(event(seq, ts, key, end))
    assert got == ["1", "1", "#"]


def test_rfc4733_an_event_whose_ends_were_lost_is_reported_at_the_next() -> None:
    keys = rtp.DtmfEvents()
    assert keys.feed(event(1, 100, 5, False)) == []
    assert keys.feed(event(2, 900, 7, True)) == ["5", "7"]
    assert keys.feed(event(3, 900, 7, True)) == []
    assert keys.feed(event(4, 2000, 16, False)) == []  # a flash: not a key
    with pytest.raises(rtp.RtpError, match="shorter"):
        keys.feed(packet(5, 3000, pt=101, payload=b"\x01"))


def test_our_packets_stamp_talk_spurts() -> None:
    sender = rtp.Sender(0, ssrc=1)
    first = rtp.parse(sender.packet(b"\0" * 160, now=10.0))
    second = rtp.parse(sender.packet(b"\0" * 160, now=10.0))  # ahead of time: a burst
    assert first.marker and not second.marker
    assert (second.seq - first.seq) & 0xFFFF == 1 and second.timestamp - first.timestamp == 160
    later = rtp.parse(sender.packet(b"\0" * 160, now=12.04))  # two seconds of nothing
    assert later.marker and later.timestamp - second.timestamp == 160 + 2 * 8000


def test_the_wire_modules_do_no_io() -> None:
    """message, sdp and rtp import no sockets, event loop or files."""
    for name in ("message", "sdp", "rtp"):
        tree = ast.parse(Path(f"ivr/sip/{name}.py").read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [node])
            if isinstance(alias, ast.alias)
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        assert not imported & {"asyncio", "socket", "selectors", "os", "io"}, name
