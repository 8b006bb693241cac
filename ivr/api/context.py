"""What the API handlers need, reached through one application key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiohttp import web

from ivr.callbacks import Callbacks
from ivr.config import ApiToken
from ivr.store import Store


@dataclass(frozen=True, slots=True)
class ApiContext:
    callbacks: Callbacks
    store: Store
    tokens: Sequence[ApiToken]
    tz: ZoneInfo
    """Times in responses carry this zone's offset (the callbacks' business time zone)."""


API = web.AppKey("api", ApiContext)
