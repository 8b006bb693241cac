"""Wire serializers: Twilio Media Streams JSON and Asterisk AudioSocket frames."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.audio.codecs import Encoding, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from ivr.transports import (
    AudioSocketSerializer,
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
    TransportError,
    TwilioClient,
    TwilioSerializer,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_hangup,
    encode_uuid,
)
from ivr.transports.audiosocket import encode_frame

CALL = "CA" + "1" * 32
STREAM = "MZ" + "2" * 32
UUID = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")


def tone(n: int, amp: int = 8000) -> bytes:
    t = np.arange(n)
    return (amp * np.sin(2 * np.pi * 440 * t / 8000)).astype("<i2").tobytes()


def ulaw_quantized(pcm: bytes) -> bytes:
    """What a PCM signal becomes after one trip through μ-law."""
    return ulaw_decode(ulaw_encode(np.frombuffer(pcm, "<i2"))).astype("<i2").tobytes()


def pcm_of(msgs: list[Any]) -> bytes:
    return b"".join(m.pcm for m in msgs)


def started(params: dict[str, str] | None = None) -> tuple[TwilioClient, TwilioSerializer]:
    client, server = TwilioClient(), TwilioSerializer()
    assert server.parse(client.connected()) == []
    server.parse(client.start(CALL, STREAM, params))
    return client, server


# --- Twilio: inbound ---------------------------------------------------------------------


def test_twilio_session_round_trip() -> None:
    client, server = TwilioClient(), TwilioSerializer()
    pcm = tone(800)
    got: list[InboundMessage] = []
    for text in [
        client.connected(),
        client.start(CALL, STREAM, {"from": "+15550100", "lang": "ko"}),
        *client.media(pcm),
        client.dtmf("5"),
        client.ack_mark("prompt-1"),
        client.stop(),
    ]:
        got += server.parse(text)
    assert got[0] == CallStart(
        CALL, STREAM, "+15550100", {"from": "+15550100", "lang": "ko"}, Encoding.ULAW, 8000, 100
    )
    audio = [m for m in got if isinstance(m, CallerAudio)]
    assert len(audio) == 5 and pcm_of(audio) == ulaw_quantized(pcm)
    assert got[-3:] == [Dtmf("5"), Mark("prompt-1"), CallerHangup("stop")]
    assert server.stream_sid == STREAM and server.stopped


def test_twilio_start_message_shape() -> None:
    msg = json.loads(TwilioClient().start(CALL, STREAM, {"x": "y"}))
    assert msg["event"] == "start" and msg["streamSid"] == STREAM
    assert msg["start"]["callSid"] == CALL and msg["start"]["customParameters"] == {"x": "y"}
    assert msg["start"]["mediaFormat"] == {
        "encoding": "audio/x-mulaw",
        "sampleRate": 8000,
        "channels": 1,
    }


@pytest.mark.parametrize(
    ("params", "caller"),
    [
        ({"from": "+15551230011"}, "+15551230011"),
        ({"From": "+15551230022"}, "+15551230022"),
        ({"caller": "+15551230033"}, "+15551230033"),
        ({"from": "", "caller": "+15551230044"}, "+15551230044"),
        ({"other": "x"}, None),
        (None, None),
    ],
)
def test_twilio_caller_from_custom_parameters(
    params: dict[str, str] | None, caller: str | None
) -> None:
    start = TwilioSerializer().parse(TwilioClient().start(CALL, STREAM, params))[0]
    assert isinstance(start, CallStart) and start.caller == caller
    assert start.params == (params or {})


def test_twilio_ulaw_decoding_matches_codec() -> None:
    _, server = started()
    every = bytes(range(256))
    payload = base64.b64encode(every).decode()
    [audio] = server.parse(media(payload, streamSid=STREAM))
    assert isinstance(audio, CallerAudio)
    assert np.array_equal(np.frombuffer(audio.pcm, "<i2"), ulaw_decode(every))


def test_twilio_alaw_leg() -> None:
    client, server = TwilioClient(Encoding.ALAW), TwilioSerializer()
    [start] = server.parse(client.start(CALL, STREAM))
    assert isinstance(start, CallStart) and start.encoding is Encoding.ALAW
    pcm = tone(160)
    [audio] = server.parse(client.media(pcm)[0])
    want = alaw_decode(alaw_encode(np.frombuffer(pcm, "<i2"))).astype("<i2").tobytes()
    assert isinstance(audio, CallerAudio) and audio.pcm == want


def test_twilio_client_chunks_20ms_with_counters() -> None:
    client, _ = started()
    msgs = [json.loads(t) for t in client.media(tone(1000))]  # 6 full chunks + 40 samples
    sizes = [len(base64.b64decode(m["media"]["payload"])) for m in msgs]
    assert sizes == [160] * 6 + [40]
    assert [m["media"]["chunk"] for m in msgs] == [str(i) for i in range(1, 8)]
    assert [m["media"]["timestamp"] for m in msgs] == [str(20 * i) for i in range(7)]
    more = json.loads(client.media(tone(160))[0])  # continues after the 40-sample chunk
    assert more["media"]["chunk"] == "8" and more["media"]["timestamp"] == "125"
    seqs = [int(m["sequenceNumber"]) for m in msgs]
    assert seqs == list(range(seqs[0], seqs[0] + 7))


def test_twilio_ignores_outbound_track_and_empty_media() -> None:
    _, server = started()
    outbound = {"event": "media", "media": {"track": "outbound", "payload": "//8="}}
    assert server.parse(json.dumps(outbound)) == []
    assert server.parse(json.dumps({"event": "media", "media": {"payload": ""}})) == []


def test_twilio_dtmf_lowercase_letter_normalised() -> None:
    client, server = started()
    assert server.parse(client.dtmf("a")) == [Dtmf("A")]


# --- Twilio: outbound --------------------------------------------------------------------


def test_twilio_render_play_audio_as_one_media_message() -> None:
    """The player hands over pieces of the stream's ptime (100 ms): one message each, as
    Twilio buffers what it is sent; the caller's side still sends 20 ms chunks."""
    client, server = TwilioClient(), TwilioSerializer()
    [start] = server.parse(client.start(CALL, STREAM))
    assert isinstance(start, CallStart) and start.ptime_ms == 100
    pcm = tone(1000)
    msgs = [json.loads(t) for t in server.render(PlayAudio(pcm))]
    assert [m["event"] for m in msgs] == ["media"]
    assert set(msgs[0]) == {"event", "streamSid", "media"} and msgs[0]["streamSid"] == STREAM
    assert base64.b64decode(msgs[0]["media"]["payload"]) == ulaw_encode(np.frombuffer(pcm, "<i2"))


def test_twilio_render_control_messages() -> None:
    _, server = started()
    assert [json.loads(t) for t in server.render(SetMark("m1"))] == [
        {"event": "mark", "streamSid": STREAM, "mark": {"name": "m1"}}
    ]
    assert [json.loads(t) for t in server.render(ClearAudio())] == [
        {"event": "clear", "streamSid": STREAM}
    ]
    assert server.render(EndCall("done")) == []
    assert server.render(PlayAudio(b"")) == []


def test_twilio_render_then_client_parse_round_trip() -> None:
    client, server = started()
    pcm = ulaw_quantized(tone(1234))  # already on the μ-law grid: survives exactly
    out: list[Any] = []
    sent: list[OutboundMessage] = [PlayAudio(pcm), SetMark("end-of-prompt"), ClearAudio()]
    for msg in sent:
        for text in server.render(msg):
            out += client.parse_server(text)
    assert pcm_of([m for m in out if isinstance(m, PlayAudio)]) == pcm
    assert out[-2:] == [SetMark("end-of-prompt"), ClearAudio()]


def test_twilio_render_before_start() -> None:
    server = TwilioSerializer()
    assert not server.ready and server.call_id is None  # our server names the call
    with pytest.raises(RuntimeError, match="before the 'start'"):
        server.render(ClearAudio())
    _, server = started()
    start = CallStart(CALL, STREAM, None, {}, Encoding.ULAW, 8000)
    assert server.ready and server.answer(start) == []


def test_twilio_binary_message_is_a_protocol_error() -> None:
    _, server = started()
    with pytest.raises(ProtocolError, match="binary WebSocket message: media streams send JSON"):
        server.parse(b'{"event": "connected"}')
    assert server.end() == []  # a closed socket: the leg reports it


@given(st.binary(max_size=2000).map(lambda b: b[: len(b) // 2 * 2]))
def test_twilio_media_round_trip_property(pcm: bytes) -> None:
    client, server = started()
    got = [m for t in client.media(pcm) for m in server.parse(t)]
    assert pcm_of(got) == ulaw_quantized(pcm)
    back = [m for t in server.render(PlayAudio(pcm)) for m in client.parse_server(t)]
    assert pcm_of(back) == ulaw_quantized(pcm)


# --- Twilio: malformed input -------------------------------------------------------------


def start_msg(**over: Any) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(TwilioClient().start(CALL, STREAM, {"from": "+1"}))
    for path, value in over.items():
        *parents, last = path.split("__")
        node = msg
        for p in parents:
            node = node[p]
        if value is ...:
            del node[last]
        else:
            node[last] = value
    return msg


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not json", "message is not valid JSON"),
        (b"\xff\xfe", "binary WebSocket message: media streams send JSON text"),
        ("[1, 2]", "message is not a JSON object but list"),
        ('{"foo": 1}', "message has no 'event'"),
        ('{"event": 5}', "event is not a string: 5"),
        ('{"event": "foo"}', "unknown event 'foo'"),
        ('{"event": "media", "media": {"payload": ""}}', "'media' message before 'start'"),
        ('{"event": "dtmf", "dtmf": {"digit": "1"}}', "'dtmf' message before 'start'"),
        ('{"event": "mark", "mark": {"name": "x"}}', "'mark' message before 'start'"),
        (start_msg(start__callSid=...), "'start' message is missing start.callSid"),
        (start_msg(start=...), "'start' message is missing start.callSid"),
        (start_msg(start__callSid=7), "start.callSid is not a string: 7"),
        (
            start_msg(start__mediaFormat=...),
            "'start' message is missing start.mediaFormat.encoding",
        ),
        (
            start_msg(start__mediaFormat__sampleRate=16000),
            "start.mediaFormat.sampleRate 16000 is not supported (8000)",
        ),
        (
            start_msg(start__mediaFormat__sampleRate="8000"),
            "start.mediaFormat.sampleRate is not an integer: '8000'",
        ),
        (
            start_msg(start__mediaFormat__sampleRate=True),
            "start.mediaFormat.sampleRate is not an integer: True",
        ),
        (
            start_msg(start__mediaFormat__encoding="audio/L16"),
            "start.mediaFormat.encoding 'audio/L16' is not supported",
        ),
        (
            start_msg(start__mediaFormat__channels=2),
            "start.mediaFormat.channels 2 is not supported (1)",
        ),
        (
            start_msg(start__customParameters={"from": 5}),
            "start.customParameters is not an object of strings",
        ),
        (
            start_msg(streamSid=..., start__streamSid=...),
            "'start' message is missing start.streamSid",
        ),
    ],
)
def test_twilio_malformed_first_message(text: str | bytes | dict[str, Any], error: str) -> None:
    wire = json.dumps(text) if isinstance(text, dict) else text
    with pytest.raises(ProtocolError) as exc:
        TwilioSerializer().parse(wire)
    assert error in str(exc.value)


def media(payload: Any = "//8=", **extra: Any) -> str:
    return json.dumps(
        {"event": "media", "streamSid": STREAM, "media": {"payload": payload}} | extra
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (media("!!!not base64"), "media.payload is not valid base64"),
        (media("abc"), "media.payload is not valid base64"),  # bad padding
        (media(5), "media.payload is not a string: 5"),
        (json.dumps({"event": "media", "streamSid": STREAM}), "missing media.payload"),
        (json.dumps({"event": "media", "media": 5}), "media is not an object: 5"),
        (media(streamSid="MZother"), "'media' message for stream 'MZother', not 'MZ2"),
        (json.dumps({"event": "dtmf", "dtmf": {"digit": "X"}}), "dtmf.digit 'X' is not one of"),
        (json.dumps({"event": "dtmf", "dtmf": {"digit": "12"}}), "dtmf.digit '12' is not one"),
        (json.dumps({"event": "dtmf", "dtmf": {}}), "'dtmf' message is missing dtmf.digit"),
        (json.dumps({"event": "mark", "mark": {}}), "'mark' message is missing mark.name"),
        (json.dumps({"event": "mark"}), "'mark' message is missing mark.name"),
        (TwilioClient().start(CALL, STREAM), "second 'start' message on one stream"),
        ('{"event": "clear"}', "unknown event 'clear'"),
    ],
)
def test_twilio_malformed_after_start(text: str, error: str) -> None:
    _, server = started()
    with pytest.raises(ProtocolError) as exc:
        server.parse(text)
    assert error in str(exc.value)


def test_twilio_message_after_stop() -> None:
    client, server = started()
    server.parse(client.stop())
    assert server.parse(client.stop()) == []  # a repeated stop is not a second hangup
    with pytest.raises(ProtocolError, match="'media' message after 'stop'"):
        server.parse(media())


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"event": "media", "media": {"payload": "//8="}}', "missing streamSid"),
        ('{"event": "clear", "streamSid": "MZx"}', "'clear' message for stream 'MZx'"),
        (f'{{"event": "stop", "streamSid": "{STREAM}"}}', "unknown event 'stop'"),
        (media("%%%"), "media.payload is not valid base64"),
        (json.dumps({"event": "mark", "streamSid": STREAM}), "missing mark.name"),
    ],
)
def test_twilio_client_parse_malformed(text: str, error: str) -> None:
    client, _ = started()
    with pytest.raises(ProtocolError) as exc:
        client.parse_server(text)
    assert error in str(exc.value)


# --- AudioSocket -------------------------------------------------------------------------


def session_bytes(pcm: bytes) -> bytes:
    return encode_uuid(UUID) + encode_audio(pcm) + encode_dtmf("#") + encode_hangup()


def expected_session(pcm: bytes) -> list[InboundMessage]:
    start = CallStart(str(UUID), str(UUID), None, {}, Encoding.PCM16, 8000)
    frames = [CallerAudio(pcm[i : i + 320]) for i in range(0, len(pcm), 320)]
    return [start, *frames, Dtmf("#"), CallerHangup("hangup")]


def test_audiosocket_session() -> None:
    pcm = tone(500)
    assert AudioSocketSerializer().parse(session_bytes(pcm)) == expected_session(pcm)


def test_audiosocket_frame_layout() -> None:
    assert encode_hangup() == b"\x00\x00\x00"
    assert encode_uuid(UUID) == b"\x01\x00\x10" + UUID.bytes
    assert encode_uuid(str(UUID)) == encode_uuid(UUID)
    assert encode_dtmf("7") == b"\x03\x00\x017"
    assert encode_audio(b"\x01\x02") == b"\x10\x00\x02\x01\x02"
    assert encode_error(2) == b"\xff\x00\x01\x02" and encode_error() == b"\xff\x00\x00"


def test_audiosocket_split_at_every_byte() -> None:
    pcm = tone(200)
    data = session_bytes(pcm)
    want = expected_session(pcm)
    for i in range(len(data) + 1):
        p = AudioSocketSerializer()
        assert p.parse(data[:i]) + p.parse(data[i:]) == want, i
    p = AudioSocketSerializer()
    assert [m for b in data for m in p.parse(bytes([b]))] == want


@given(st.data())
def test_audiosocket_arbitrary_chunking(data: st.DataObject) -> None:
    pcm = data.draw(st.binary(max_size=1500).map(lambda b: b[: len(b) // 2 * 2]))
    wire = session_bytes(pcm)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    parser = AudioSocketSerializer()
    got = [
        m
        for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)
        for m in parser.parse(wire[a:b])
    ]
    assert pcm_of([m for m in got if isinstance(m, CallerAudio)]) == pcm
    assert got[0] == expected_session(pcm)[0] and got[-2:] == [Dtmf("#"), CallerHangup("hangup")]


def test_audiosocket_render() -> None:
    """A piece of the player's (any length) is one audio frame: not cut again."""
    server = AudioSocketSerializer()
    assert server.ready  # a hangup can go before the UUID frame
    pcm = tone(1000)
    wire = server.render(PlayAudio(pcm))
    p = AudioSocketSerializer()
    p.parse(encode_uuid(UUID))
    frames = p.parse(b"".join(wire))
    assert len(wire) == 1 and [len(f.pcm) for f in frames if isinstance(f, CallerAudio)] == [2000]
    assert pcm_of(frames) == pcm
    assert server.render(EndCall("bye")) == [encode_hangup()]
    assert server.render(ClearAudio()) == []
    assert server.render(SetMark("m")) == []
    assert server.render(PlayAudio(b"")) == []  # Asterisk rejects empty frames


def test_audiosocket_render_over_the_length_field() -> None:
    """Only audio past the 16-bit length field (4 s) takes more than one frame."""
    pcm = tone(40_000)  # 5 s
    wire = AudioSocketSerializer().render(PlayAudio(pcm))
    p = AudioSocketSerializer()
    p.parse(encode_uuid(UUID))
    frames = [m for w in wire for m in p.parse(w)]
    assert [len(f.pcm) for f in frames if isinstance(f, CallerAudio)] == [65534, 14466]
    assert pcm_of(frames) == pcm


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (None, "AudioSocket error (no code)"),
        (0x01, "AudioSocket error 0x01: hangup of calling party"),
        (0x06, "AudioSocket error 0x06: frame forwarding error, memory (allocation) error"),
        (0x80, "AudioSocket error 0x80: application error"),
    ],
)
def test_audiosocket_error_frame(code: int | None, message: str) -> None:
    assert AudioSocketSerializer().parse(encode_error(code)) == [TransportError(message)]


def test_audiosocket_eof() -> None:
    p = AudioSocketSerializer()
    p.parse(encode_uuid(UUID))
    assert p.end() == [CallerHangup("closed")]
    assert p.end() == []
    p = AudioSocketSerializer()
    p.parse(encode_hangup())
    assert p.end() == []
    p = AudioSocketSerializer()
    p.parse(encode_uuid(UUID)[:5])
    with pytest.raises(ProtocolError, match=r"connection closed inside a frame \(5 bytes left\)"):
        p.end()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (encode_audio(b"\0\0"), "audio frame before the UUID frame"),
        (encode_dtmf("1"), "DTMF frame before the UUID frame"),
        (encode_frame(0x01, b"\x00" * 15), "UUID frame has 15 bytes, expected 16"),
        (encode_frame(0x01), "UUID frame has 0 bytes, expected 16"),
        (encode_uuid(UUID) + encode_uuid(UUID), "second UUID frame on one connection"),
        (encode_frame(0x42, b"x"), "AudioSocket frame kind 0x42 unknown"),
        (encode_frame(0x02, b"\x01\x31\0\0\0\0"), "AudioSocket frame kind 0x02 unknown"),
        (encode_uuid(UUID) + encode_frame(0x10, b"\0\0\0"), "audio frame has odd length 3"),
        (encode_uuid(UUID) + encode_frame(0x03, b"12"), "DTMF payload b'12' is not one of"),
        (encode_uuid(UUID) + encode_frame(0x03, b"X"), "DTMF payload b'X' is not one of"),
        (encode_uuid(UUID) + encode_frame(0x03), "DTMF payload b'' is not one of"),
        (encode_hangup() + encode_audio(b"\0\0"), "AudioSocket frame kind 0x10 after hangup"),
    ],
)
def test_audiosocket_malformed(data: bytes, error: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        AudioSocketSerializer().parse(data)
    assert error in str(exc.value)


def test_audiosocket_max_payload_checked_on_header() -> None:
    p = AudioSocketSerializer(max_payload=320)
    with pytest.raises(ProtocolError, match="frame length 400 exceeds maximum 320"):
        p.parse(encode_frame(0x10, b"\0" * 400)[:3])  # rejected before the payload arrives


def test_audiosocket_encoder_limits() -> None:
    with pytest.raises(ValueError, match="frame length 70000 exceeds maximum 65535"):
        encode_frame(0x10, b"\0" * 70000)
    with pytest.raises(ValueError, match="one ASCII character"):
        encode_dtmf("12")
    with pytest.raises(ValueError, match="even number of bytes"):
        encode_audio(b"\0")


# --- messages ----------------------------------------------------------------------------


def test_pcm_messages_reject_odd_lengths() -> None:
    assert issubclass(ProtocolError, ValueError)
    with pytest.raises(ValueError, match=r"PlayAudio\.pcm must be 16-bit PCM"):
        PlayAudio(b"\0")
    with pytest.raises(ValueError, match=r"CallerAudio\.pcm must be 16-bit PCM"):
        CallerAudio(b"\0\0\0")
    assert "pcm" not in repr(CallerAudio(b"\0\0"))
