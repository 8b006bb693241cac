"""Codecs, resampling, framing and WAV I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from audio_fixtures import recording

from ivr.audio import (
    Audio,
    Encoding,
    FrameSplitter,
    alaw_decode,
    alaw_encode,
    decode,
    encode,
    frame_bytes,
    read_wav,
    resample,
    ulaw_decode,
    ulaw_encode,
    write_wav,
)

ALL = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


def test_ulaw_reference_values() -> None:
    # ITU-T G.711 / Sun reference implementation values.
    assert ulaw_encode(np.array([0, -1, 32767, -32768, 1000], dtype=np.int16)) == bytes(
        [0xFF, 0x7E, 0x80, 0x00, 0xCE]
    )
    assert list(ulaw_decode(bytes([0xFF, 0x80, 0x00, 0x7F]))) == [0, 32124, -32124, 0]


def test_alaw_reference_values() -> None:
    assert alaw_encode(np.array([0, -1, 32767, -32768], dtype=np.int16)) == bytes(
        [0xD5, 0x55, 0xAA, 0x2A]
    )
    assert list(alaw_decode(bytes([0xD5, 0xAA, 0x2A]))) == [8, 32256, -32256]


@pytest.mark.parametrize(("enc", "dec"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_g711_round_trip_error_is_logarithmic(enc, dec) -> None:  # type: ignore[no-untyped-def]
    back = dec(enc(ALL)).astype(np.int32)
    err = np.abs(back - ALL.astype(np.int32))
    big = np.abs(ALL.astype(np.int32)) > 1024
    assert (err[big] / np.abs(ALL[big].astype(np.int32))).max() < 0.07  # ~4 bits of mantissa
    assert err[~big].max() <= 64
    codes = bytes(range(256))
    # Every code survives decode → encode, except μ-law's negative zero (0x7F → 0xFF).
    expected = codes.replace(b"\x7f", b"\xff") if enc is ulaw_encode else codes
    assert enc(dec(codes)) == expected


def test_codec_dispatch_and_pcm16() -> None:
    x = np.array([1, -2, 300, -32768], dtype=np.int16)
    assert list(decode(encode(x, Encoding.PCM16), Encoding.PCM16)) == list(x)
    assert decode(encode(x, Encoding.ULAW), Encoding.ULAW).dtype == np.int16
    with pytest.raises(ValueError, match="even number of bytes"):
        decode(b"\x00\x01\x02", Encoding.PCM16)


def test_resample_keeps_a_tone_and_length() -> None:
    t = np.arange(8000) / 8000
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    up = resample(tone, 8000, 16000)
    assert len(up) == 16000 and up.dtype == np.int16
    spectrum = np.abs(np.fft.rfft(up.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 16000 / len(up) - 440) < 2
    down = resample(up, 16000, 8000)
    assert np.corrcoef(down[100:-100], tone[100:-100])[0, 1] > 0.99
    assert resample(tone, 8000, 8000) is not None
    with pytest.raises(ValueError):
        resample(tone, 0, 8000)


def test_resample_tts_rate_to_phone_rate() -> None:
    x = np.zeros(22050, dtype=np.int16)
    assert len(resample(x, 22050, 8000)) == 8000


def test_frame_splitter_keeps_remainder() -> None:
    fs = FrameSplitter(8000, 20)
    assert fs.size == frame_bytes(8000, 20) == 320
    frames = fs.push(b"\x01" * 500) + fs.push(b"\x02" * 500)
    assert [len(f) for f in frames] == [320, 320, 320]
    last = fs.flush()
    assert last is not None and len(last) == 320 and last.endswith(b"\x00" * 180)
    assert fs.flush() is None
    with pytest.raises(ValueError, match="10, 20, 30"):
        frame_bytes(8000, 25)


def test_wav_read_write_round_trip(tmp_path: Path) -> None:
    audio = read_wav(recording("digits/5"))
    assert audio.rate == 8000 and audio.duration > 0.5
    write_wav(tmp_path / "x.wav", audio)
    again = read_wav(tmp_path / "x.wav")
    assert np.array_equal(again.samples, audio.samples)
    wide = read_wav(recording("digits/5"), rate=16000)
    assert wide.rate == 16000 and abs(wide.duration - audio.duration) < 0.01
    assert isinstance(audio.to_rate(8000), Audio)


def test_read_wav_downmixes_stereo(tmp_path: Path) -> None:
    import soundfile as sf

    stereo = np.stack([np.full(800, 1000), np.full(800, 3000)], axis=1).astype(np.int16)
    sf.write(tmp_path / "s.wav", stereo, 8000)
    assert set(read_wav(tmp_path / "s.wav").samples.tolist()) == {2000}


def test_read_wav_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match="cannot read audio"):
        read_wav(bad)
