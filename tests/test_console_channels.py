"""The console and the channels, in a real headless Chromium against a real `ivr serve`: the
analytics page's channel filter (every channel, then the web chats alone: the figures, the
summary's per-channel table and the CSV follow it), and a callback's detail showing the
customer's contacts on every channel, a call and a chat, each transcript a click away.
Screenshots: test-artifacts/console/analytics-channel-*.png, callback-contacts.png."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import pytest_asyncio
from browser import chromium, console_page, list_screenshots, screenshot, show_tab
from live_server import LiveServer, live_server
from playwright.async_api import Browser, Download, expect

from ivr.api import hash_token
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.store import open_store

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "console-channels-token-0123456789"
NUMBER = "+15551230001"
NOW = datetime.now(UTC).replace(microsecond=0)
SEEDED: dict[str, str] = {}


def seed(db: Path) -> None:
    """A call and a web chat from one number (the chat booked a callback), and an SMS
    thread from another, an hour or two ago."""

    async def run() -> None:
        store = await open_store(str(db))
        try:
            start = NOW - timedelta(hours=2)
            await store.start_call("call-1", transport="sip", caller=NUMBER, started_at=start)
            await store.add_turn(
                "call-1", "prompt", node="main_menu", text="Welcome. How can I help?"
            )
            await store.add_turn("call-1", "recognized", node="main_menu", text="my balance please",
                                 intent="balance", confidence=0.9)  # fmt: skip
            await store.add_turn(
                "call-1", "prompt", node="main_menu", text="Your balance is 23 dollars."
            )
            await store.end_call("call-1", "caller_hangup", ended_at=start + timedelta(minutes=1))
            chat = await store.start_conversation(
                channel="web", number=NUMBER, started_at=NOW - timedelta(hours=1)
            )
            await store.add_message(chat.id, "bot", "Welcome. How can I help?", node="main_menu")
            await store.add_message(
                chat.id, "customer", "still no signal, get me a person", node="main_menu",
                kind="recognized", intent="agent",
            )  # fmt: skip
            await store.add_message(chat.id, "bot", "We will call you back.", node="goodbye")
            await store.end_conversation(chat.id, "callback_booked")
            SEEDED["chat"] = chat.id
            callbacks = Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC")))
            cb, _ = await callbacks.book(
                NUMBER, NOW + timedelta(days=1), reason="agent_requested",
                transcript={"conversation_id": chat.id, "channel": "web", "turns": [
                    {"node": "main_menu", "kind": "recognized", "intent": "agent",
                     "text": "still no signal, get me a person", "channel": "web"}]},
            )  # fmt: skip
            SEEDED["callback"] = cb.id
            sms = await store.start_conversation(
                channel="sms", number="+15559990000", started_at=NOW - timedelta(minutes=30)
            )
            await store.add_message(sms.id, "customer", "roaming", node="main_menu",
                                    kind="recognized", intent="roaming")  # fmt: skip
            await store.end_conversation(sms.id, "idle")
        finally:
            await store.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("console-channels")
    seed(tmp / "data" / "ivr.db")
    with live_server(tmp, IVR_API_TOKENS=f"kim:{hash_token(TOKEN)}:*") as live:
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


async def test_analytics_filter_by_channel(browser: Browser, server: LiveServer) -> None:
    async with console_page(browser, base(server), TOKEN) as (page, errors):
        asked: list[str] = []
        page.on("request", lambda r: asked.append(r.url) if "/v1/analytics/" in r.url else None)
        await show_tab(page, "analytics")
        channel = page.locator("#an-channel")
        await expect(channel).to_be_visible()
        names = await channel.locator("option").all_inner_texts()
        assert names == ["All channels", "Voice (calls)", "Web chat", "App chat", "API chat", "SMS"]
        contacts = page.locator('#an-cards .card[data-key="contacts"] .value')
        await expect(contacts).to_have_text("3")
        table = page.locator('#an-summary .subtable[data-key="channels"] table')
        await expect(table.locator("tbody tr")).to_have_count(5)  # every channel, zeros too
        await screenshot(page, "analytics-channel-all")

        asked.clear()
        await channel.select_option("web")
        await expect(contacts).to_have_text("1")
        await expect(page.locator('#an-cards .card[data-key="calls"] .value')).to_have_text("0")
        await expect(page.locator('#an-cards .card[data-key="conversations"] .value')).to_have_text(
            "1"
        )
        await expect(table.locator("tbody tr")).to_have_count(1)
        assert "Web chat only" in await page.inner_text("#an-summary .window")
        await expect(page.locator("#an-intents-chart")).to_be_visible()
        reports = {u.split("/v1/analytics/")[1].split("?")[0] for u in asked}
        assert reports == {"summary", "nodes", "intents", "unrecognized"}
        assert all("channel=web" in u for u in asked), asked
        # the CSV follows the filter
        async with page.expect_download() as info:
            await page.click("#an-summary-csv")
        download: Download = await info.value
        assert "-web-" in download.suggested_filename
        text = await asyncio.to_thread(Path(await download.path()).read_text)
        assert "channel,web" in text and "contacts,1" in text and "voice:" not in text
        await screenshot(page, "analytics-channel-web")

        await channel.select_option("voice")
        await expect(contacts).to_have_text("1")
        await expect(page.locator('#an-cards .card[data-key="calls"] .value')).to_have_text("1")
        await channel.select_option("")
        await expect(contacts).to_have_text("3")
        assert errors.messages == []


async def test_callback_detail_shows_every_channel(browser: Browser, server: LiveServer) -> None:
    async with aiohttp.ClientSession() as http:  # what the page shows is what the API says
        async with http.get(f"{base(server)}/v1/customers/{NUMBER}",
                            headers={"Authorization": f"Bearer {TOKEN}"}) as r:  # fmt: skip
            assert r.status == 200
            customer = await r.json()
    assert [c["channel"] for c in customer["contacts"]] == ["web", "voice"]
    async with console_page(browser, base(server), TOKEN) as (page, errors):
        await show_tab(page, "callbacks")
        row = page.locator(f'#cb-table tr[data-callback-id="{SEEDED["callback"]}"]')
        await row.locator("a").click()
        contacts = page.locator("#cb-contacts > li")
        await expect(contacts).to_have_count(2)
        chat, call = contacts.nth(0), contacts.nth(1)
        assert await chat.get_attribute("data-channel") == "web"
        assert await call.get_attribute("data-channel") == "voice"
        # the chat the callback was booked from is marked and open; the call is a click away
        await expect(chat.locator(".booked-from")).to_have_text("this callback's")
        await expect(chat.locator("ol.transcript")).to_contain_text("still no signal")
        await expect(call.locator("ol.transcript")).to_be_hidden()
        await expect(call.locator("summary")).to_contain_text("Call")
        await call.locator("summary").click()
        await expect(call.locator("ol.transcript")).to_contain_text("my balance please")
        await expect(call.locator("ol.transcript")).to_contain_text("Your balance is 23 dollars.")
        await expect(call.locator(".tag.intent")).to_have_text("balance")
        await screenshot(page, "callback-contacts")
        assert errors.messages == []
