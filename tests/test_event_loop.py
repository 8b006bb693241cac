"""The server's event loop: asyncio's by default, uvloop on request."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from ivr.app import new_event_loop
from ivr.config import ConfigError, load_settings


def test_uvloop_on_request() -> None:
    loop = new_event_loop("uvloop")
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_asyncio_by_default() -> None:
    loop = new_event_loop(load_settings().event_loop)
    try:
        assert not isinstance(loop, uvloop.Loop) and isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_an_unknown_loop_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_EVENT_LOOP", "trio")
    with pytest.raises(ConfigError, match="event_loop"):
        load_settings()
