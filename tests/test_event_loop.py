"""The server's event loop: uvloop by default, asyncio's on request."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from ivr.app import new_event_loop
from ivr.config import ConfigError, load_settings


@pytest.mark.parametrize(("kind", "loop_type"), [("auto", uvloop.Loop), ("uvloop", uvloop.Loop)])
def test_uvloop_unless_asked_otherwise(kind: str, loop_type: type) -> None:
    loop = new_event_loop(kind)
    try:
        assert isinstance(loop, loop_type)
    finally:
        loop.close()


def test_asyncio_on_request() -> None:
    loop = new_event_loop("asyncio")
    try:
        assert not isinstance(loop, uvloop.Loop) and isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_an_unknown_loop_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_EVENT_LOOP", "trio")
    with pytest.raises(ConfigError, match="event_loop"):
        load_settings()
