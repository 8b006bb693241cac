"""Every wire parser, server and client side, fuzzed (issue 10): whatever the far end sends,
a parser returns messages or raises ProtocolError: no other exception, and no hang (each
example has a deadline).

Random text alone rarely gets past ``json.loads``, so most strategies start from messages of
the right shape (as the clients render them) and mutate them: a field replaced by a value of
any type, deleted, or nested deep; huge numbers, unicode and lone surrogates, invalid
base64, odd-length audio, truncation, and AudioSocket frames whose length field lies.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ivr.transports.audiosocket import (
    HEADER,
    KIND_AUDIO,
    KIND_DTMF,
    KIND_ERROR,
    KIND_HANGUP,
    KIND_UUID,
    AudioSocketSerializer,
    encode_frame,
)
from ivr.transports.browser import BrowserClient, BrowserSerializer
from ivr.transports.limits import MAX_JSON_DEPTH, MAX_MESSAGE_BYTES
from ivr.transports.messages import (
    CallerAudio,
    CallerHangup,
    CallStart,
    ClearAudio,
    Dtmf,
    EndCall,
    Mark,
    OutboundMessage,
    PlayAudio,
    ProtocolError,
    SetMark,
    TransportError,
)
from ivr.transports.twilio import TwilioClient, TwilioSerializer

# Deadline per example: a parser that loops (or goes quadratic on 64 KiB) fails it.
FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
INBOUND = (CallStart, CallerAudio, Dtmf, Mark, CallerHangup, TransportError)
OUTBOUND = (PlayAudio, SetMark, ClearAudio, EndCall)
CALL, STREAM = "CA" + "1" * 32, "MZ" + "2" * 32

Json = dict[str, Any]


def survive(parse: Callable[[Any], list[Any]], data: Any, kinds: tuple[type, ...]) -> bool:
    """Parse `data`: True for messages (each of `kinds`), False for a ProtocolError."""
    try:
        out = parse(data)
    except ProtocolError as exc:
        assert str(exc)  # the reason ends up in the call record: it must say something
        event("protocol error")
        return False
    assert isinstance(out, list) and all(isinstance(m, kinds) for m in out), out
    event(" ".join(sorted({type(m).__name__ for m in out})) or "no message")
    return True


# --- values and mutations -----------------------------------------------------------------

HUGE = st.sampled_from(
    ["1" * 5000, "-" + "9" * 4400, "1e999", "-1e999", "1" * 300 + ".5", "NaN", "Infinity"]
)
"""Number literals as text: over Python's 4300-digit int limit, inf, NaN (json.loads takes it)."""

TEXT = (
    st.text(max_size=30)
    | st.sampled_from(["", "\x00", "\ud800", "😀", "ß", "İ", "\u202e", "<script>alert(1)</script>"])
    | st.integers(10, 600).map("9".__mul__)
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=15,
)


def nested(depth: int, opener: str) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value] if opener == "[" else {"a": value}
    return value


DEEP = st.builds(nested, st.integers(MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 5), st.sampled_from("[{"))


def paths(msg: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `msg` (dict keys and list indexes)."""
    out = [prefix] if prefix else []
    items = (
        msg.items() if isinstance(msg, dict) else enumerate(msg) if isinstance(msg, list) else ()
    )
    for key, value in items:
        out += paths(value, (*prefix, key))
    return out


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """`text` (a JSON message) with some fields replaced, deleted, or turned into literals
    json.dumps would never write (huge numbers, deep nesting as raw text)."""
    msg = json.loads(text)
    for _ in range(draw(st.integers(1, 3))):
        spots = paths(msg)
        if not spots:
            break
        *parents, last = draw(st.sampled_from(spots))
        node = msg
        for p in parents:
            node = node[p]
        action = draw(st.sampled_from(["replace", "replace", "delete", "deep", "huge"]))
        if action == "delete":
            del node[last]
        elif action == "deep":
            node[last] = draw(DEEP)
        elif action == "huge":
            node[last] = "\0HUGE\0"  # a marker, swapped for the raw literal below
        else:
            node[last] = draw(VALUES)
    out = json.dumps(msg)
    return out.replace('"\\u0000HUGE\\u0000"', draw(HUGE))


@st.composite
def damaged(draw: st.DrawFn, text: str) -> str:
    """`text` cut short, or with a character inserted or replaced."""
    i = draw(st.integers(0, len(text)))
    how = draw(st.sampled_from(["cut", "insert", "replace"]))
    if how == "cut":
        return text[:i]
    char = draw(st.sampled_from(list('[]{}",:\\')) | st.characters())
    return text[:i] + char + text[i + (how == "replace") :]


def wire(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Messages derived from `valid` ones: as they are, mutated, damaged, or oversize."""
    return st.one_of(
        valid,
        valid,  # twice: most of a call is well-formed, and only then do later messages count
        valid.flatmap(mutated),
        valid.flatmap(mutated),
        valid.flatmap(damaged),
        valid.map(lambda t: t[:-1] + ',"pad":"' + "x" * MAX_MESSAGE_BYTES + '"}'),
        st.builds(lambda n, o: o * n, st.integers(0, 3000), st.sampled_from(["[", '{"a":', '["'])),
        st.text(max_size=100),
    )


# --- Twilio Media Streams -----------------------------------------------------------------


def base64_payloads() -> st.SearchStrategy[str]:
    good = st.binary(max_size=400).map(lambda b: base64.b64encode(b).decode())
    bad = st.sampled_from(["!!!", "QQ", "QQ=", "Q===", "====", "QUJD\n", "QUJD RA==", "é"])
    return good | bad | st.text(max_size=20)


@st.composite
def twilio_messages(draw: st.DrawFn) -> str:
    client = TwilioClient()
    params = draw(st.dictionaries(st.sampled_from(["from", "From", "caller", "x"]), TEXT))
    start = client.start(CALL, STREAM, params)
    kind = draw(st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop"]))
    if kind == "connected":
        return client.connected()
    if kind == "start":
        return start
    if kind == "media":
        msg = json.loads(client.media(b"\0\0" * 160)[0])
        msg["media"]["payload"] = draw(base64_payloads())
        msg["media"]["track"] = draw(st.sampled_from(["inbound", "outbound", "both", 5]))
        return json.dumps(msg)
    if kind == "dtmf":
        return client.dtmf(draw(st.sampled_from(list("0123456789*#ABCDabcdß")) | TEXT))
    if kind == "mark":
        return client.ack_mark(draw(TEXT))
    return client.stop()


@FUZZ
@given(st.lists(wire(twilio_messages()), max_size=6), st.booleans())
def test_twilio_serializer(messages: list[str], start_first: bool) -> None:
    server = TwilioSerializer()
    if start_first:
        assert survive(server.parse, TwilioClient().start(CALL, STREAM), INBOUND)
    for text in messages:
        survive(server.parse, text, INBOUND)
        survive(server.parse, text.encode("utf-8", "surrogatepass"), INBOUND)  # bytes too


@FUZZ
@given(st.lists(twilio_messages() | twilio_messages().flatmap(mutated), max_size=8))
def test_twilio_call_with_mutated_fields(messages: list[str]) -> None:
    """A started stream, then messages of the right shape: the paths past the first checks."""
    server = TwilioSerializer()
    assert survive(server.parse, TwilioClient().start(CALL, STREAM), INBOUND)
    for text in messages:
        survive(server.parse, text, INBOUND)


@st.composite
def twilio_server_messages(draw: st.DrawFn) -> str:
    server = TwilioSerializer()
    server.parse(TwilioClient().start(CALL, STREAM))
    sent: list[OutboundMessage] = [
        PlayAudio(b"\0\1" * draw(st.integers(1, 160))),
        SetMark(draw(TEXT)),
        ClearAudio(),
    ]
    return server.render(draw(st.sampled_from(sent)))[0]


@FUZZ
@given(st.lists(wire(twilio_server_messages()), max_size=6))
def test_twilio_client(messages: list[str]) -> None:
    client = TwilioClient()
    client.start(CALL, STREAM)
    for text in messages:
        survive(client.parse_server, text, OUTBOUND)


# --- the browser softphone ---------------------------------------------------------------


AUDIO = st.binary(max_size=64) | st.integers(0, 40_000).map(b"\1".__mul__)
"""Binary messages of any length: odd ones, and over a second (32000 bytes at 16 kHz)."""


@st.composite
def browser_messages(draw: st.DrawFn) -> str:
    client = BrowserClient(draw(st.sampled_from([8000, 16000])))
    kind = draw(st.sampled_from(["start", "dtmf", "mark", "stop"]))
    if kind == "start":
        msg = json.loads(client.start())
        msg["caller"] = draw(st.none() | TEXT)
        msg["rate"] = draw(st.sampled_from([8000, 16000, 44100, 0, -1, True, "16000", 8000.0]))
        return json.dumps(msg)
    if kind == "dtmf":
        return client.dtmf(draw(st.sampled_from(list("0123456789*#ABCDd")) | TEXT))
    if kind == "mark":
        return client.mark(draw(TEXT))
    return client.stop()


@FUZZ
@given(st.lists(AUDIO | wire(browser_messages()), max_size=6), st.booleans())
def test_browser_serializer(messages: list[str | bytes], start_first: bool) -> None:
    server = BrowserSerializer("browser-1")
    if start_first:
        assert survive(server.parse, BrowserClient().start("+15551230001"), INBOUND)
    for data in messages:
        survive(server.parse, data, INBOUND)


@st.composite
def browser_server_messages(draw: st.DrawFn) -> str:
    server = BrowserSerializer("browser-1")
    server.parse(BrowserClient(16000).start())
    kind = draw(st.sampled_from(["started", "mark", "clear", "end"]))
    if kind == "started":
        return server.started()
    sent: OutboundMessage = (
        SetMark(draw(TEXT)) if kind == "mark" else ClearAudio() if kind == "clear" else EndCall("x")
    )
    frame = server.render(sent)[0]
    assert isinstance(frame, str)
    return frame


@FUZZ
@given(st.lists(AUDIO | wire(browser_server_messages()), max_size=6))
def test_browser_client(messages: list[str | bytes]) -> None:
    client = BrowserClient(16000)
    for data in messages:
        survive(client.parse_server, data, OUTBOUND)


# --- AudioSocket ----------------------------------------------------------------------------


@st.composite
def audiosocket_frames(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from([KIND_UUID, KIND_AUDIO, KIND_DTMF, KIND_HANGUP, KIND_ERROR])
        | st.integers(0, 255)
    )
    if kind == KIND_UUID and draw(st.booleans()):
        payload = uuid.uuid4().bytes
    elif kind == KIND_AUDIO and draw(st.booleans()):
        payload = b"\1\0" * draw(st.integers(0, 2000))  # up to 4000 bytes, even
    elif kind == KIND_DTMF and draw(st.booleans()):
        payload = draw(st.sampled_from(list(b"0123456789*#ABCDa\xff"))).to_bytes(1, "big")
    else:
        payload = draw(st.binary(max_size=40))
    frame = encode_frame(kind, payload)
    if draw(st.integers(0, 9)) == 0:  # the length field lies: longer, shorter, or the maximum
        length = draw(st.sampled_from([0, len(payload) + 1, max(len(payload) - 1, 0), 0xFFFF]))
        frame = HEADER.pack(kind, length) + payload
    return frame


@FUZZ
@given(
    st.lists(audiosocket_frames() | st.binary(max_size=30), max_size=8),
    st.lists(st.integers(1, 64), min_size=1, max_size=8),
    st.booleans(),
    st.integers(0, 0xFFFF),
)
def test_audiosocket_parser(
    frames: list[bytes], cuts: list[int], uuid_first: bool, max_payload: int
) -> None:
    """The frames as TCP delivers them: in chunks cut anywhere, then the end of the stream."""
    stream = (encode_frame(KIND_UUID, uuid.uuid4().bytes) if uuid_first else b"") + b"".join(frames)
    for parser in (AudioSocketSerializer(), AudioSocketSerializer(max_payload)):
        pos, i = 0, 0
        alive = True
        while alive and pos < len(stream):
            size = cuts[i % len(cuts)]
            alive = survive(parser.parse, stream[pos : pos + size], INBOUND)
            pos, i = pos + size, i + 1
        if alive:
            assert len(parser._buf) <= HEADER.size + parser.max_payload  # bounded buffering
            survive(AudioSocketSerializer.end, parser, INBOUND)
