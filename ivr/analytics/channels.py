"""The channels analytics tell apart: `voice` (the calls) and each text channel (the
conversations' `channel`: web and app chat, the REST API, SMS). A report for one channel
covers its contacts only; without one (None) it covers every channel: calls and
conversations together, a conversation counting as a call does."""

from __future__ import annotations

from typing import Literal, get_args

Channel = Literal["voice", "web", "app", "api", "sms"]
CHANNELS: tuple[str, ...] = get_args(Channel)
VOICE = "voice"
TEXT_CHANNELS: tuple[str, ...] = tuple(c for c in CHANNELS if c != VOICE)


def has_voice(channel: str | None) -> bool:
    """Whether a report on `channel` (None: every channel) covers the calls."""
    return channel is None or channel == VOICE


def has_text(channel: str | None) -> bool:
    """Whether it covers conversations."""
    return channel != VOICE


def text_channel(channel: str | None) -> str | None:
    """The conversations' channel to filter by (None: every text channel)."""
    return None if channel is None or channel == VOICE else channel
