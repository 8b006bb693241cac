"""The console in headless Chromium against a real `ivr serve` (issue 13): an ended call's
card on the live page shows its whole transcript (no 8em inner box cutting it off) at
1280 and 420 px, and adding an unrecognized utterance as a phrase on the analytics page
asks first (dismissed: nothing is added; accepted: the flow has it). Screenshots in
test-artifacts/console/."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from audio_fixtures import recording
from browser import chromium, console_page, list_screenshots, screenshot, show_tab
from live_server import FEED_TOKEN, LiveServer, live_server
from playwright.async_api import Browser, Dialog

from ivr.api import hash_token
from ivr.dial import Caller, CallerTurn

TOKEN = "live-cards-token-0123456789"
KNOWN = "+15551230001"
# the bill, the balance, data usage twice, a key that is no option: a long transcript
KEYS = ["3", "1", "2", "2", "5"]

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("live-cards")
    flow = tmp / "flows" / "hotline.yaml"  # a copy: adopting a phrase saves the flow
    flow.parent.mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / "grammars" / "hotline.yaml", flow)
    with live_server(tmp, IVR_API_TOKENS=f"ops:{hash_token(TOKEN)}:*", IVR_FLOW=str(flow)) as s:
        yield s


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


async def api(server: LiveServer, path: str) -> Any:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(f"{base(server)}{path}", headers=headers) as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def served_soon(server: LiveServer, text: str, limit: float = 15) -> bool:
    """Whether the served flow has `text` within `limit` seconds (the file is reloaded
    within a second or so of its change)."""
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        if text in (await api(server, "/v1/flows/hotline"))["text"]:
            return True
        await asyncio.sleep(0.2)
    return False


async def call(server: LiveServer, turns: list[CallerTurn]) -> str:
    report = await Caller(server.media_url, turns, KNOWN, out=None, token=FEED_TOKEN).run()
    return report.call_id


@pytest.mark.parametrize("width", [1280, 420])
async def test_an_ended_calls_card_shows_its_whole_transcript(
    browser: Browser, server: LiveServer, width: int
) -> None:
    async with console_page(browser, base(server), TOKEN, width=width, height=900) as (
        page,
        errors,
    ):
        await page.wait_for_selector('#main[data-ready="live"]')
        await page.wait_for_selector("#feed-state.open")
        call_id = await call(server, [CallerTurn(dtmf=k) for k in KEYS])
        card = page.locator(f'#live-ended article.call[data-call-id="{call_id}"]')
        await card.wait_for(timeout=20_000)
        box = card.locator(".transcript")
        lines = box.locator(":scope > *")
        await lines.last.wait_for()
        assert await lines.count() > 10  # far more than an 8em box held
        fit = await box.evaluate(
            """t => ({scroll: t.scrollHeight, client: t.clientHeight,
                      overflow: getComputedStyle(t).overflowY,
                      card: t.closest('article').getBoundingClientRect().bottom,
                      last: t.lastElementChild.getBoundingClientRect().bottom,
                      wide: document.documentElement.scrollWidth
                            > document.documentElement.clientWidth})"""
        )
        assert fit["scroll"] <= fit["client"] + 1, fit  # not cut off: no inner scroll box
        assert fit["overflow"] == "visible", fit
        assert fit["last"] <= fit["card"] + 0.5, fit  # the last line is inside its card
        assert not fit["wide"], fit  # and the page does not scroll sideways
        # the card's last line is the call's end
        assert "caller_hangup" in await lines.last.inner_text()
        await screenshot(page, f"live-ended-card-{width}")
        assert errors.messages == []


async def test_adding_a_phrase_asks_first(browser: Browser, server: LiveServer) -> None:
    # "password" is no menu choice: an unrecognized utterance at the main menu
    await call(server, [CallerTurn(wav=recording("vm-password"))])
    for _ in range(100):  # its record written: the analytics page lists it
        if json.dumps(await api(server, "/v1/analytics/unrecognized")).count("main_menu"):
            break
        await asyncio.sleep(0.2)
    async with console_page(browser, base(server), TOKEN) as (page, errors):
        await show_tab(page, "analytics")
        row = page.locator("#an-unrecognized-table tbody tr").first
        await row.wait_for()
        await row.locator("button.adopt-open").click()
        form = row.locator("form.adopt")
        await form.locator('input[name="intent"]').fill("agent")
        await form.locator('input[name="phrase"]').fill("password trouble")
        asked: list[str] = []

        async def dismiss(dialog: Dialog) -> None:
            asked.append(dialog.message)
            await dialog.dismiss()

        async def accept(dialog: Dialog) -> None:
            asked.append(dialog.message)
            await dialog.accept()

        page.once("dialog", dismiss)
        await form.locator('button[type="submit"]').click()
        await page.locator("#an-adopt-status").get_by_text("Not added").wait_for()
        assert asked and "password trouble" in asked[0] and "agent" in asked[0], asked
        assert "password trouble" not in (await api(server, "/v1/flows/hotline"))["text"]
        await screenshot(page, "analytics-adopt-asks")
        page.once("dialog", accept)
        await form.locator('button[type="submit"]').click()
        await page.locator("#an-adopt-status").get_by_text(re.compile("^Added")).wait_for()
        assert len(asked) == 2
        assert await served_soon(server, "password trouble")  # once the flow is reloaded
        assert errors.messages == [], json.dumps(errors.messages)
