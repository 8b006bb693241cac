"""Choosing and loading the ASR engine from the settings."""

from __future__ import annotations

import logging
from pathlib import Path

from ivr.asr.base import Engine
from ivr.asr.models import ModelError

log = logging.getLogger(__name__)

VOSK_HINT = (
    "set IVR_VOSK_MODEL (or vosk_model in the config file) to a Vosk model directory, "
    "e.g. one installed with `ivr models install vosk-model-small-en-us-0.15`"
)


def load_engine(kind: str = "auto", vosk_model: Path | None = None, processes: int = 0) -> Engine:
    """The engine to use: Vosk when a model is configured, else the built-in English one.

    `processes` > 0 moves pocketsphinx decoding to that many worker processes (it holds the
    GIL while decoding); 0 decodes in the calling thread, as the CLI does.

    A configured model that is missing or not a Vosk model fails here, at start-up, with a
    message naming the path and what is wrong.
    """
    if kind == "vosk" and vosk_model is None:
        raise ModelError(f"the vosk engine needs a model: {VOSK_HINT}")
    if kind in ("auto", "vosk") and vosk_model is not None:
        from ivr.asr.vosk_engine import VoskEngine

        return VoskEngine(vosk_model)
    from ivr.asr.pocketsphinx_engine import PocketsphinxEngine

    if kind == "auto":
        log.warning(
            "No Vosk model configured: using the built-in English engine (pocketsphinx). "
            "To use Vosk, %s.",
            VOSK_HINT,
        )
    return PocketsphinxEngine(processes)
