"""The browser softphone end to end: a real `ivr serve`, real speech (flite) at 8 and 16 kHz
through /v1/softphone into the same pipeline as phone calls, and a call placed from the
console page in headless Chromium with a fake microphone that says "check my balance"."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from browser import chromium, console_page, list_screenshots, screenshot, show_tab
from live_server import LiveServer, live_server
from playwright.async_api import TimeoutError as PageTimeout
from speech import flite

from ivr.api import hash_token
from ivr.audio.pcm import Audio, write_wav
from ivr.auth import PROTOCOL
from ivr.transports.browser import BrowserClient

TOKEN = "softphone-test-token-0123456789"
READER = "reader-token-0123456789"  # callbacks.read only: not enough for a softphone call
KNOWN = "+15551230001"  # a demo account (its balance is read out)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("softphone")
    tokens = f"tester:{hash_token(TOKEN)}:*,reader:{hash_token(READER)}:callbacks.read"
    with live_server(tmp, IVR_API_TOKENS=tokens) as live:
        yield live


@pytest.fixture(scope="module", autouse=True)
def _screenshots(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    list_screenshots(request.config)


def base(server: LiveServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def api(http: aiohttp.ClientSession, server: LiveServer, path: str) -> Any:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(f"{base(server)}{path}", headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.json() if r.content_type == "application/json" else await r.read()


# --- the protocol, spoken by a program ------------------------------------------------------


async def softphone_call(server: LiveServer, rate: int, speech: bytes) -> tuple[str, list[Any]]:
    """Dial, wait for the menu to be played out, say `speech`, hang up once it is recognized.
    Caller audio is a real-time stream of 20 ms frames, silence between words, like a page."""
    client = BrowserClient(rate)
    loop = asyncio.get_running_loop()
    events: list[dict[str, Any]] = []
    bot_audio_at = [loop.time()]
    listening, recognized, ended = asyncio.Event(), asyncio.Event(), asyncio.Event()
    to_say: list[bytes] = []
    url = f"ws://127.0.0.1:{server.port}/v1/softphone"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url, protocols=(PROTOCOL, f"bearer.{TOKEN}"))
        assert ws.protocol == PROTOCOL
        await ws.send_str(client.start(KNOWN))
        client.parse_server((await ws.receive(timeout=10)).data)
        assert client.call_id is not None and client.call_id.startswith("browser-")
        feed = await http.ws_connect(server.events_url(client.call_id))

        async def read_bot() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    assert len(msg.data) == rate // 50 * 2  # 20 ms frames at our rate
                    bot_audio_at[0] = loop.time()
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    client.parse_server(msg.data)

        async def read_feed() -> None:
            async for msg in feed:
                event = json.loads(msg.data)
                events.append(event)
                kind = event["event"]
                if kind == "listen":
                    listening.set()
                elif kind == "recognized" and event.get("intent"):
                    recognized.set()
                elif kind == "hangup":
                    ended.set()

        async def send_audio() -> None:
            start, n = loop.time(), 0
            while True:
                await ws.send_bytes(to_say.pop(0) if to_say else bytes(rate // 50 * 2))
                n += 1
                await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))

        tasks = [asyncio.create_task(c()) for c in (read_bot, read_feed, send_audio)]
        try:
            await asyncio.wait_for(listening.wait(), 30)
            for _ in range(600):  # until the prompts have been played: 0.5 s of quiet
                if loop.time() - bot_audio_at[0] >= 0.5:
                    break
                await asyncio.sleep(0.05)
            to_say.extend(client.audio(speech))
            await asyncio.wait_for(recognized.wait(), 30)
            await ws.send_str(client.stop())
            await asyncio.wait_for(ended.wait(), 15)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()
            await feed.close()
    return client.call_id, events


async def test_softphone_calls_at_both_rates_reach_the_balance_intent(
    server: LiveServer, tmp_path: Path
) -> None:
    speech = {r: flite("check my balance", tmp_path / f"b{r}.wav", rate=r) for r in (8000, 16000)}
    calls = await asyncio.gather(
        *(softphone_call(server, rate, audio.tobytes()) for rate, audio in speech.items())
    )
    async with aiohttp.ClientSession() as http:
        for call_id, events in calls:
            said = [e for e in events if e["event"] == "recognized"]
            assert [e["intent"] for e in said] == ["balance"], events
            assert events[-1]["event"] == "hangup" and events[-1]["reason"] == "caller_hangup"
            record = await api(http, server, f"/v1/calls/{call_id}")
            assert record["transport"] == "browser" and record["caller"] == KNOWN
            assert record["end_reason"] == "caller_hangup"
            assert ("recognized", "balance") in [(t["kind"], t["intent"]) for t in record["turns"]]
            # Both sides were recorded, on one timeline, as 8 kHz stereo whatever the rate.
            wav, rate = sf.read(io.BytesIO(await api(http, server, f"/v1/calls/{call_id}/audio")))
            assert rate == 8000 and wav.ndim == 2 and wav.shape[1] == 2
            caller, bot = np.abs(wav[:, 0]), np.abs(wav[:, 1])
            assert caller.max() > 0.05 and bot.max() > 0.05
            # the caller spoke after the bot finished its menu
            assert np.argmax(caller > 0.05) > np.argmax(bot > 0.05)


async def test_softphone_needs_a_token_with_calls_read(server: LiveServer) -> None:
    url = f"ws://127.0.0.1:{server.port}/v1/softphone"
    async with aiohttp.ClientSession() as http:
        for protocols, query, status in [
            ((), "", 401),
            ((PROTOCOL, "bearer.wrong-token"), "", 401),
            ((PROTOCOL,), "?token=wrong", 401),
            ((PROTOCOL, f"bearer.{READER}"), "", 403),
        ]:
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await http.ws_connect(url + query, protocols=protocols)
            assert exc.value.status == status
        # ?token= works too (for tools; the console sends the subprotocol)
        ws = await http.ws_connect(f"{url}?token={TOKEN}")
        await ws.send_str('{"type": "start", "rate": 9000}')
        assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE  # ProtocolError
        await ws.close()


# --- from the page ------------------------------------------------------------------------


def fake_microphone(tmp: Path) -> Path:
    """What Chromium's fake capture device plays, in a loop: silence, "check my balance", silence.
    It starts at once, so the words also fall into the greeting (where nobody listens) or
    the menu (a barge-in); some repetition lands while the menu listens either way."""
    rate = 48000
    word = flite("check my balance", tmp / "balance48k.wav", rate=rate).samples
    silence = np.zeros(int(rate * 2.5), dtype=np.int16)
    path = tmp / "microphone.wav"
    write_wav(path, Audio(np.concatenate([silence, word, silence, silence]), rate))
    return path


async def test_softphone_call_from_the_console_page(server: LiveServer, tmp_path: Path) -> None:
    mic = fake_microphone(tmp_path)
    media = (
        "--use-fake-ui-for-media-stream",  # grant the microphone without asking
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}",
    )
    async with (
        chromium(*media) as browser,
        console_page(browser, base(server), TOKEN) as (
            page,
            errors,
        ),
    ):
        await show_tab(page, "softphone")
        await page.fill("#sp-caller", KNOWN)
        await page.click("#sp-dial")
        await page.wait_for_selector("#sp-call-id:not(:empty)", timeout=20_000)
        call_id = await page.inner_text("#sp-call-id")
        # the transcript shows the bot's prompts, then the word the microphone said
        balance = '#sp-transcript li[data-kind="recognized"] .tag.intent:text-is("balance")'
        await page.wait_for_selector(balance, timeout=60_000)
        assert await page.locator('#sp-transcript li[data-kind="prompt"]').count() >= 2
        # A key press goes out as DTMF (pressed again if it fell between two questions,
        # while the bot was not listening: then nothing takes it, as on a phone).
        dtmf = page.locator('#sp-transcript li[data-kind="dtmf"]')
        for _ in range(10):
            await page.click("#sp-keypad button[data-key='1']")
            with contextlib.suppress(PageTimeout):
                await dtmf.first.wait_for(timeout=3000)
                break
        assert await dtmf.count() >= 1
        await screenshot(page, "softphone-call")
        await page.click("#sp-hangup")
        await page.wait_for_selector('#sp-transcript li[data-kind="hangup"]', timeout=20_000)
        assert "Call ended" in await page.inner_text("#sp-status")
        assert await page.is_enabled("#sp-dial")
        assert errors.messages == []
    async with aiohttp.ClientSession() as http:
        record = await api(http, server, f"/v1/calls/{call_id}")
    assert record["transport"] == "browser" and record["caller"] == KNOWN
    assert record["end_reason"] == "caller_hangup"
    kinds = [(t["kind"], t["intent"]) for t in record["turns"]]
    assert ("recognized", "balance") in kinds and any(k == "dtmf" for k, _ in kinds)
