"""Audio stage: G.711 codecs, PCM conversion, resampling, framing, WAV I/O and VAD."""

from ivr.audio.codecs import (
    Encoding,
    alaw_decode,
    alaw_encode,
    decode,
    encode,
    ulaw_decode,
    ulaw_encode,
)
from ivr.audio.pcm import (
    Audio,
    FrameSplitter,
    float_to_pcm16,
    frame_bytes,
    pcm16_to_float,
    read_wav,
    resample,
    write_wav,
)
from ivr.audio.vad import Endpointer, EndpointerConfig

__all__ = [
    "Audio",
    "Encoding",
    "Endpointer",
    "EndpointerConfig",
    "FrameSplitter",
    "alaw_decode",
    "alaw_encode",
    "decode",
    "encode",
    "float_to_pcm16",
    "frame_bytes",
    "pcm16_to_float",
    "read_wav",
    "resample",
    "ulaw_decode",
    "ulaw_encode",
    "write_wav",
]
