"""Whisper's log-mel features, in numpy without a BLAS call (see `whisper_engine`)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MODEL_RATE = 16000
N_FFT = 400
HOP = 160  # 10 ms feature frames

FloatArray = npt.NDArray[np.float32]


def _mel_filters(n_mels: int) -> FloatArray:
    """Slaney-style mel filter bank (as librosa and faster-whisper compute it)."""
    fftfreqs = np.fft.rfftfreq(n=N_FFT, d=1.0 / MODEL_RATE)
    mels = np.linspace(0.0, 45.245640471924965, n_mels + 2)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    fdiff = np.diff(freqs)
    ramps = freqs.reshape(-1, 1) - fftfreqs.reshape(1, -1)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (freqs[2 : n_mels + 2] - freqs[:n_mels]))[:, None]
    return weights.astype(np.float32)


class LogMel:
    """Whisper's log-mel features of 16 kHz audio, the same numbers as faster-whisper's
    FeatureExtractor (whose package import costs ~0.2 s: av, onnxruntime) in plain numpy."""

    def __init__(self, n_mels: int = 80) -> None:
        self.filters = _mel_filters(n_mels)
        self.window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)

    def __call__(self, audio: FloatArray) -> FloatArray:
        """Features [n_mels, frames]: one frame per 10 ms (len(audio) // 160 + 1)."""
        x = np.pad(audio.astype(np.float32), (0, HOP))  # as FeatureExtractor(padding=160)
        x = np.pad(x, N_FFT // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
        spec = np.fft.rfft(frames * self.window, axis=-1).astype(np.complex64)
        power = (np.abs(spec[:-1]) ** 2).T
        # einsum, not @: a BLAS call wakes OpenBLAS's thread pool, whose threads then spin
        # beside the decode (twice the wall time on 2 cores; the matrices are small)
        mel = np.einsum("mf,fn->mn", self.filters, power)
        log_spec = np.log10(np.maximum(mel, 1e-10))
        log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
        out: FloatArray = ((log_spec + 4.0) / 4.0).astype(np.float32)
        return out
