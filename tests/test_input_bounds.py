"""Wire input is bounded before it is parsed, and no input makes a serializer fail other
than with a ProtocolError (issue 10): hypothesis drives every server-side parser."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.transports.audiosocket import AudioSocketParser, encode_uuid
from ivr.transports.browser import BrowserSerializer
from ivr.transports.callerid import caller_number
from ivr.transports.limits import MAX_JSON_DEPTH, MAX_MESSAGE_BYTES, check_json_text
from ivr.transports.messages import CallStart, ProtocolError
from ivr.transports.twilio import TwilioClient, TwilioSerializer

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def started_twilio() -> TwilioSerializer:
    s = TwilioSerializer()
    s.parse(TwilioClient().start("CA1", "MZ1", {"from": "+15550001111"}))
    return s


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deep_nesting_is_a_protocol_error_not_a_recursion_error(opener: str) -> None:
    text = opener * 1100  # ~1 KB: RecursionError in json.loads before
    for parse in (started_twilio().parse, BrowserSerializer("b").parse):
        with pytest.raises(ProtocolError, match="nests deeper"):
            parse(text)


def test_limits() -> None:
    check_json_text("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    check_json_text('{"s": "' + "[" * 1000 + '"}')  # brackets inside a string do not nest
    with pytest.raises(ProtocolError, match="nests deeper"):
        check_json_text("[" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(ProtocolError, match="bytes is over"):
        check_json_text(" " * (MAX_MESSAGE_BYTES + 1))
    media = TwilioClient()
    media.stream_sid = "MZ1"
    check_json_text(media.media(b"\0" * 320)[0])  # a real message passes


def json_values() -> st.SearchStrategy[object]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    )


def shaped(event_key: str, events: list[str]) -> st.SearchStrategy[str]:
    """Messages of the right shape with any values: the fields the parser reads, mutated."""
    return st.builds(
        lambda kind, fields: json.dumps({event_key: kind, **fields}),
        st.sampled_from(events) | st.text(max_size=10),
        st.dictionaries(
            st.sampled_from(["media", "start", "dtmf", "mark", "streamSid", "payload", "pcm",
                             "digit", "rate", "caller", "stop"]),
            json_values(),
            max_size=4,
        ),
    )  # fmt: skip


@FUZZ
@given(
    st.lists(
        st.text(max_size=200)
        | shaped("event", ["start", "media", "dtmf", "mark", "stop", "connected"])
        | st.builds(lambda n: "[" * n, st.integers(0, 3000)),
        max_size=5,
    )
)
def test_twilio_serializer_only_raises_protocol_errors(messages: list[str]) -> None:
    for s in (TwilioSerializer(), started_twilio()):
        for text in messages:
            try:
                s.parse(text)
            except ProtocolError:
                pass


@FUZZ
@given(
    st.lists(
        st.text(max_size=200)
        | st.binary(max_size=200)
        | shaped("type", ["start", "audio", "dtmf", "hangup"])
        | st.builds(lambda n: '{"a":' * n, st.integers(0, 3000)),
        max_size=5,
    )
)
def test_browser_serializer_only_raises_protocol_errors(messages: list[str | bytes]) -> None:
    s = BrowserSerializer("b")
    for data in messages:
        try:
            s.parse(data)
        except ProtocolError:
            pass


@FUZZ
@given(st.lists(st.binary(max_size=400), max_size=6), st.booleans())
def test_audiosocket_parser_only_raises_protocol_errors(
    chunks: list[bytes], uuid_first: bool
) -> None:
    p = AudioSocketParser()
    try:
        if uuid_first:
            p.feed(encode_uuid(uuid.uuid4()))
        for chunk in chunks:
            p.feed(chunk)
        p.feed_eof()
    except ProtocolError:
        pass


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("+15551230001", "+15551230001"),
        ("+1 (555) 123-0001", "+15551230001"),
        ("555.123.0001", "5551230001"),
        ("<script>alert(1)</script>", None),
        ("+1555123000123456", None),  # 16 digits: longer than E.164 allows
        ("12", None),
        ("+", None),
        ("anonymous", None),
        ("+1555\n1230001", None),
        ("", None),
    ],
)
def test_caller_ids(raw: str, number: str | None) -> None:
    assert caller_number(raw) == number


def test_a_caller_id_that_is_no_number_is_anonymous_everywhere() -> None:
    """Not read back, not booked: not the caller, and not a flow variable either."""
    bad = "<script>alert(1)</script>"
    [start] = TwilioSerializer().parse(TwilioClient().start("CA1", "MZ1", {"from": bad, "x": "1"}))
    assert isinstance(start, CallStart)
    assert start.caller is None and start.params == {"x": "1"}
    [start] = BrowserSerializer("b").parse(
        json.dumps({"type": "start", "caller": bad, "rate": 8000})
    )
    assert isinstance(start, CallStart)
    assert start.caller is None and start.params == {}
    [start] = TwilioSerializer().parse(
        TwilioClient().start("CA2", "MZ2", {"from": "+1 555 123 0001"})
    )
    assert isinstance(start, CallStart) and start.caller == "+15551230001"
