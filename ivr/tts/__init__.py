"""Text-to-speech prompts: espeak-ng via pyttsx3 in a worker process, cached, or recorded."""

from ivr.tts.cache import PromptCache, cache_key
from ivr.tts.engine import TtsEngine, TtsError
from ivr.tts.prompts import PromptRenderer

__all__ = ["PromptCache", "PromptRenderer", "TtsEngine", "TtsError", "cache_key"]
