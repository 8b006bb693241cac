"""The browser softphone's wire protocol: raw PCM in binary frames, JSON text for the rest."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.audio.codecs import Encoding
from ivr.transports.browser import BrowserClient, BrowserSerializer
from ivr.transports.messages import (
    CallerAudio,
    CallerHangup,
    CallStart,
    ClearAudio,
    Dtmf,
    EndCall,
    InboundMessage,
    Mark,
    OutboundMessage,
    PlayAudio,
    ProtocolError,
    SetMark,
)

CALL = "browser-0123"


def tone(n: int, rate: int = 16000) -> bytes:
    t = np.arange(n)
    return (8000 * np.sin(2 * np.pi * 440 * t / rate)).astype("<i2").tobytes()


def started(rate: int = 16000) -> tuple[BrowserClient, BrowserSerializer]:
    client, server = BrowserClient(rate), BrowserSerializer(CALL)
    server.parse(client.start("+15551230001"))
    assert client.parse_server(server.started()) == []
    return client, server


@pytest.mark.parametrize("rate", [8000, 16000])
def test_session_round_trip(rate: int) -> None:
    client, server = BrowserClient(rate), BrowserSerializer(CALL)
    pcm = tone(rate // 10, rate)  # 100 ms: five 20 ms frames
    got: list[InboundMessage] = []
    frames: list[str | bytes] = [
        client.start("+15551230001"),
        *client.audio(pcm),
        client.dtmf("5"),
        client.mark("prompt-1"),
        client.stop(),
    ]
    for frame in frames:
        got += server.parse(frame)
    assert got[0] == CallStart(
        CALL, CALL, "+15551230001", {"caller": "+15551230001"}, Encoding.PCM16, rate
    )
    audio = [m for m in got if isinstance(m, CallerAudio)]
    assert len(audio) == 5 and b"".join(a.pcm for a in audio) == pcm  # PCM: bit exact
    assert got[-3:] == [Dtmf("5"), Mark("prompt-1"), CallerHangup("stop")]
    assert server.stopped
    assert client.parse_server(server.started()) == [] and client.call_id == CALL


def test_start_without_a_caller() -> None:
    [start] = BrowserSerializer(CALL).parse('{"type": "start", "rate": 8000, "extra": 1}')
    assert start == CallStart(CALL, CALL, None, {}, Encoding.PCM16, 8000)  # unknown keys: ignored


def test_started_message_shape() -> None:
    _, server = started(8000)
    assert json.loads(server.started()) == {"type": "started", "call_id": CALL, "rate": 8000}


def test_render_audio_as_one_binary_message_and_control_as_json() -> None:
    """A piece of the player's is one binary message (not cut again); only more than the
    protocol's second a message takes two."""
    client, server = started(16000)
    assert server.render(PlayAudio(tone(1000))) == [tone(1000)]
    frames = [f for f in server.render(PlayAudio(tone(20000))) if isinstance(f, bytes)]  # 1.25 s
    assert [len(f) for f in frames] == [32000, 8000] and b"".join(frames) == tone(20000)
    assert server.render(SetMark("m1")) == ['{"type":"mark","name":"m1"}']
    assert server.render(ClearAudio()) == ['{"type":"clear"}']
    assert server.render(EndCall("goodbye")) == ['{"type":"end","reason":"goodbye"}']
    back: list[OutboundMessage] = []
    for msg in (PlayAudio(tone(320)), SetMark("m2"), ClearAudio(), EndCall("busy")):
        for frame in server.render(msg):
            back += client.parse_server(frame)
    assert back == [PlayAudio(tone(320)), SetMark("m2"), ClearAudio(), EndCall("busy")]


def test_render_before_start() -> None:
    server = BrowserSerializer(CALL)
    assert not server.ready
    with pytest.raises(RuntimeError, match="before the 'start'"):
        server.render(ClearAudio())


def test_the_server_names_the_call_and_answers_start_with_it() -> None:
    server = BrowserSerializer()
    assert server.call_id is not None and server.call_id.startswith("browser-")
    assert BrowserSerializer().call_id != server.call_id
    [start] = server.parse(BrowserClient(8000).start())
    assert isinstance(start, CallStart) and server.ready
    assert server.answer(start) == [server.started()]
    assert server.end() == []  # a closed socket: the leg reports it


@given(st.binary(max_size=4000).map(lambda b: b[: len(b) // 2 * 2]), st.sampled_from([8000, 16000]))
def test_audio_round_trip_property(pcm: bytes, rate: int) -> None:
    client, server = started(rate)
    got = [m for f in client.audio(pcm) for m in server.parse(f)]
    assert b"".join(m.pcm for m in got if isinstance(m, CallerAudio)) == pcm
    back = [m for f in server.render(PlayAudio(pcm)) for m in client.parse_server(f)]
    assert b"".join(m.pcm for m in back if isinstance(m, PlayAudio)) == pcm


def test_repeated_stop_is_one_hangup() -> None:
    client, server = started()
    assert server.parse(client.stop()) == [CallerHangup("stop")]
    assert server.parse(client.stop()) == []


def test_client_refuses_other_rates() -> None:
    with pytest.raises(ValueError, match="rate 44100"):
        BrowserClient(44100)


# --- malformed input ---------------------------------------------------------------------


def start(**over: Any) -> str:
    msg: dict[str, Any] = {"type": "start", "caller": "+1", "rate": 16000}
    for key, value in over.items():
        if value is ...:
            del msg[key]
        else:
            msg[key] = value
    return json.dumps(msg)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", "message is not valid JSON"),
        ("[1, 2]", "message is not a JSON object but list"),
        ('{"rate": 8000}', "message has no 'type'"),
        ('{"type": 5}', "type is not a string: 5"),
        ('{"type": "media"}', "unknown type 'media'"),
        ('{"type": "dtmf", "digit": "1"}', "'dtmf' message before 'start'"),
        ('{"type": "mark", "name": "x"}', "'mark' message before 'start'"),
        (b"\x00\x00", "audio before 'start'"),
        (start(rate=...), "'start' message is missing rate"),
        (start(rate="16000"), "rate is not an integer: '16000'"),
        (start(rate=True), "rate is not an integer: True"),
        (start(rate=44100), "rate 44100 is not supported (8000 or 16000)"),
        (start(caller=5), "caller is not a string: 5"),
        (start(caller="+1\x00"), "caller is not printable text of at most 64"),
        (start(caller="1" * 65), "caller is not printable text of at most 64"),
    ],
)
def test_malformed_first_message(frame: str | bytes, error: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        BrowserSerializer(CALL).parse(frame)
    assert error in str(exc.value)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"\x00\x00\x00", "audio is not 16-bit PCM: odd length (3 bytes)"),
        (bytes(32002), "audio message of 32002 bytes is over 32000 (1 s)"),
        ('{"type": "dtmf", "digit": "X"}', "digit 'X' is not one of 0-9 * # A-D"),
        ('{"type": "dtmf", "digit": "12"}', "digit '12' is not one of"),
        ('{"type": "dtmf", "digit": 1}', "digit is not a string: 1"),
        ('{"type": "dtmf"}', "'dtmf' message is missing digit"),
        ('{"type": "mark"}', "'mark' message is missing name"),
        (start(), "second 'start' message"),
        ('{"type": "clear"}', "unknown type 'clear'"),
    ],
)
def test_malformed_after_start(frame: str | bytes, error: str) -> None:
    _, server = started()
    with pytest.raises(ProtocolError) as exc:
        server.parse(frame)
    assert error in str(exc.value)


def test_dtmf_letter_normalised() -> None:
    _, server = started()
    assert server.parse('{"type": "dtmf", "digit": "a"}') == [Dtmf("A")]


def test_empty_audio_is_nothing() -> None:
    _, server = started()
    assert server.parse(b"") == []


@pytest.mark.parametrize("frame", [b"\x00\x00", '{"type": "dtmf", "digit": "1"}'])
def test_input_after_stop(frame: str | bytes) -> None:
    client, server = started()
    server.parse(client.stop())
    with pytest.raises(ProtocolError, match="after 'stop'"):
        server.parse(frame)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"\x00", "odd length"),
        (
            '{"type": "started", "call_id": "x", "rate": 8000}',
            "started at rate 8000, not the 16000",
        ),
        ('{"type": "started", "rate": 16000}', "'started' message is missing call_id"),
        ('{"type": "end"}', "'end' message is missing reason"),
        ('{"type": "media"}', "unknown type 'media'"),
    ],
)
def test_client_parse_malformed(frame: str | bytes, error: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        BrowserClient(16000).parse_server(frame)
    assert error in str(exc.value)
