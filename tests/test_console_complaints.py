"""The console marks complaints (headless Chromium against `ivr serve`): a caller complaining
in their own words gets a complaint tag on their live card while the call goes on, then in
the call history and the call's detail (why, what was said); a chat customer's complaint
shows on the conversation's card and on the callback booked in it, whose detail gives the
raised priority. A neutral callback in the same queue has no tag. Screenshots:
complaint-live, complaint-call, complaint-callback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from browser import chromium, console_page, list_screenshots, screenshot, show_tab
from live_server import FEED_TOKEN, LiveServer, live_server
from playwright.async_api import Browser
from speech import flite

from ivr.api import hash_token
from ivr.audio.pcm import write_wav
from ivr.dial import Caller, CallerTurn

TOKEN = "console-complaints-token-0123456789"
CALLER = "+15551230001"
CHATTER = "+15559990002"
CALM = "+15559990003"

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("console-complaints")
    with live_server(
        tmp,
        IVR_API_TOKENS=f"kim:{hash_token(TOKEN)}:*",
        IVR_BUSINESS_HOURS="24/7",
        IVR_CLOCK_START="2030-01-07T09:00:00+00:00",
    ) as live:
        yield live


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture(scope="module", autouse=True)
def _screenshots(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    list_screenshots(request.config)


def base(server: LiveServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def post(server: LiveServer, path: str, body: Any) -> Any:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        async with http.post(f"{base(server)}{path}", data=json.dumps(body),
                             headers=headers) as r:  # fmt: skip
            assert r.status in (200, 201), await r.text()
            return await r.json()


async def chat(server: LiveServer, number: str, *texts: str) -> str:
    started = await post(server, "/v1/conversations", {"channel": "web", "number": number})
    id = str(started["conversation"]["id"])
    for text in texts:
        await post(server, f"/v1/conversations/{id}/messages", {"text": text})
    return id


async def test_a_complaining_call_is_marked_live_in_the_history_and_its_detail(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    speech = tmp_path / "complaint.wav"
    write_wav(speech, flite("I want to make a complaint. This is the third time I have called.",
                            speech))  # fmt: skip
    async with console_page(browser, base(server), TOKEN) as (page, errors):
        await page.wait_for_selector('#main[data-ready="live"]')
        await page.wait_for_selector("#feed-state.open")
        caller = Caller(server.media_url, [CallerTurn(wav=speech), CallerTurn(dtmf="-")],
                        CALLER, out=None, token=FEED_TOKEN)  # fmt: skip
        call = asyncio.create_task(caller.run())
        for _ in range(400):
            if caller.report.call_id != caller.call_sid:
                break
            await asyncio.sleep(0.05)
        card = page.locator(f'article.call[data-call-id="{caller.report.call_id}"]').first
        await card.locator("header .tag.complaint").wait_for(timeout=60_000)
        line = card.locator('li[data-kind="complaint"]')
        assert "what the customer said" in await line.inner_text()
        await screenshot(page, "complaint-live")
        await asyncio.wait_for(call, 120)
        row = page.locator(f'#history tr[data-call-id="{caller.report.call_id}"]')
        await row.locator(".tag.complaint").wait_for(timeout=20_000)
        await row.click()
        why = page.locator("#call-detail .complaint-why")
        await why.wait_for()
        assert "complaint" in (await why.inner_text()).lower()
        await screenshot(page, "complaint-call")
        assert errors.messages == []


async def test_a_chat_complaint_marks_its_conversation_and_callback(
    browser: Browser, server: LiveServer
) -> None:
    booking = ("agent", "yes", "tomorrow at 3pm", "yes")
    angry = await chat(server, CHATTER, "honestly your service is useless, I'm fed up", *booking)
    await chat(server, CALM, "the bill looks a bit high, can you explain it", "yes", *booking)
    async with console_page(browser, base(server), TOKEN) as (page, errors):
        await page.wait_for_selector('#main[data-ready="live"]')
        card = page.locator(f'#live-conversations article[data-conversation-id="{angry}"]')
        await card.locator(".tag.complaint").wait_for(timeout=20_000)
        await show_tab(page, "callbacks")
        rows = page.locator("tr[data-callback-id]")
        await rows.first.wait_for()
        marked = page.locator("tr[data-callback-id]", has=page.locator(".tag.complaint"))
        assert await marked.count() == 1
        assert CHATTER in await marked.inner_text()
        calm = page.locator("tr[data-callback-id]", has_text=CALM)
        assert await calm.count() == 1 and await calm.locator(".tag.complaint").count() == 0
        await marked.locator("a").first.click()
        why = page.locator(".complaint-why")
        await why.wait_for()
        text = await why.inner_text()
        assert "useless" in text and "priority raised by 5" in text
        await screenshot(page, "complaint-callback")
        assert errors.messages == []
