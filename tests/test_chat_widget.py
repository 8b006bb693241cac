"""The web chat widget in a real headless Chromium against a real `ivr serve`: a shop's page
(another origin, in IVR_CHAT_ORIGINS) includes /chat/embed.js for its logged-in customer
(the number signed with IVR_CHAT_IDENTITY_SECRET); the customer opens the chat, checks the
balance, asks an FAQ in their own words and books a callback with the quick replies, and
the callback is in the queue (GET /v1/callbacks). At 420 px, /chat on its own (no number:
the account is asked for) fits the screen, and the console's live page shows the open and
the ended conversations beside the calls, with channel, number and last message; on a
phone the embedded widget opens full screen, and its close button ends the chat.
Screenshots: test-artifacts/console/chat-*.png.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from browser import PageErrors, chromium, console_page, list_screenshots, screenshot
from live_server import LiveServer, free_port, live_server
from playwright.async_api import Browser, FrameLocator, Locator, Page, expect

from ivr.api import hash_token
from ivr.chat.identity import sign_number

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "chat-widget-token-0123456789"
SECRET = "chat-widget-secret-0123456789"
DEMO = "+15551230001"  # Alex Smith: balance 23 dollars and 50 cents, account 1234
SHOP_PORT = free_port()
SHOP = f"http://127.0.0.1:{SHOP_PORT}"  # another port: another origin than the server's
BALANCE = "Your balance is 23 dollars and 50 cents."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("chat-widget")
    with live_server(
        tmp,
        IVR_API_TOKENS=f"agent:{hash_token(TOKEN)}:*",
        IVR_CHAT_ORIGINS=SHOP,
        IVR_CHAT_IDENTITY_SECRET=SECRET,
        IVR_CLOCK_START="2030-01-07T09:00:00+00:00",  # a Monday: "tomorrow" is Tuesday
    ) as live:
        yield live
        assert live.proc.poll() is None, live.log_text()[-3000:]


def base(server: LiveServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(server: LiveServer) -> AsyncIterator[str]:
    """The shop's site: a page that embeds the chat for its logged-in customer, the
    identity signed on its server (here) for an hour."""
    identity = sign_number(SECRET, DEMO, int(time.time()) + 3600)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Example Shop</title>
<link rel="icon" href="data:,">
</head><body style="font: 16px system-ui; margin: 2em">
<h1>Example Telecom shop</h1><p>Welcome back, Alex. Phones, plans and accessories.</p>
<script src="{base(server)}/chat/embed.js" async
        data-number="{DEMO}" data-identity="{identity}"></script>
</body></html>"""

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", SHOP_PORT).start()
    try:
        yield f"{SHOP}/"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture(scope="module", autouse=True)
def _screenshots(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    list_screenshots(request.config)


async def api(server: LiveServer, path: str) -> Any:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(f"{base(server)}{path}", headers=headers) as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def new_page(browser: Browser, width: int, height: int = 800) -> tuple[Page, PageErrors]:
    context = await browser.new_context(
        viewport={"width": width, "height": height}, locale="en-US", timezone_id="UTC"
    )
    page = await context.new_page()
    return page, PageErrors(page)


class Chat:
    """The widget, in a frame or a page of its own."""

    def __init__(self, root: FrameLocator | Page) -> None:
        self.root = root

    def bot(self, text: str) -> Locator:
        return self.root.locator("#messages li.bot", has_text=text)

    async def wait_bot(self, text: str) -> None:
        await self.bot(text).first.wait_for(timeout=60_000)

    async def write(self, text: str) -> None:
        box = self.root.locator("#text")
        await expect(box).to_be_enabled()
        await box.fill(text)
        await box.press("Enter")

    async def tap(self, choice: str) -> None:
        await self.root.locator("#replies").get_by_role("button", name=choice, exact=True).click()

    async def conversation_id(self) -> str:
        chat = self.root.locator("#chat")
        await expect(chat).to_have_attribute("data-conversation-id", re.compile(".+"))
        value = await chat.get_attribute("data-conversation-id")
        assert value
        return value


async def test_an_embedded_chat_checks_the_balance_asks_an_faq_and_books_a_callback(
    browser: Browser, server: LiveServer, shop: str
) -> None:
    page, errors = await new_page(browser, 1280)
    try:
        await page.goto(shop)
        await page.click("#ivr-chat-launcher")
        chat = Chat(page.frame_locator("#ivr-chat-frame"))
        await chat.wait_bot("Welcome to the Example Telecom hotline.")
        await expect(chat.root.locator("#chat-state")).to_have_text("online")
        await expect(chat.root.locator("#replies button")).not_to_have_count(0)
        await screenshot(page, "chat-embedded-open")
        await chat.write("how much money have I got left on my phone?")
        await chat.wait_bot(BALANCE)  # by the signed number: no account asked for
        await chat.tap("yes")  # anything else?
        await chat.write("I'm off to Italy next month, will my mobile still work over there?")
        await chat.wait_bot("Roaming in Europe is included")
        await screenshot(page, "chat-embedded-faq")
        await chat.write("could I speak to a real person")
        await chat.wait_bot(f"Shall we call you on {DEMO}?")
        await chat.tap("yes")
        await chat.wait_bot("When should we call?")
        await chat.write("tomorrow at 3pm")
        await chat.wait_bot("tomorrow at 3 PM. Is that right?")
        await chat.tap("yes")
        await chat.wait_bot("One of our team will call you tomorrow at 3 PM.")
        await expect(chat.root.locator("#chat-state")).to_have_text("ended")
        await expect(chat.root.locator("#text")).to_be_disabled()
        await expect(chat.root.locator("#restart")).to_be_visible()
        conversation = await chat.conversation_id()
        await screenshot(page, "chat-embedded-booked")
        assert errors.messages == []
    finally:
        await page.context.close()
    page_ = await api(server, "/v1/callbacks?number=%2B15551230001")
    [callback] = page_["items"]
    assert callback["status"] == "scheduled" and callback["due_at"].startswith("2030-01-08T15")
    detail = await api(server, f"/v1/callbacks/{callback['id']}")
    assert detail["transcript"]["conversation_id"] == conversation
    assert detail["transcript"]["channel"] == "web"
    record = await api(server, f"/v1/conversations/{conversation}")
    assert record["status"] == "ended" and record["end_reason"] == "callback_booked"
    assert record["number"] == DEMO and record["channel"] == "web"


async def test_the_widget_at_420px_and_the_consoles_live_page(
    browser: Browser, server: LiveServer
) -> None:
    page, errors = await new_page(browser, 420, 760)
    try:
        await page.goto(f"{base(server)}/chat")
        chat = Chat(page)
        await chat.wait_bot("Welcome to the Example Telecom hotline.")
        await chat.tap("balance")
        await chat.wait_bot("Please write your account number.")  # no number: asked
        await chat.write("1234")
        await chat.wait_bot(BALANCE)
        conversation = await chat.conversation_id()
        # it fits: nothing wider than the screen, the input and its button on screen
        assert await page.evaluate("document.documentElement.scrollWidth") <= 420
        for sel in ("#text", "#send", "#replies button"):
            box = await page.locator(sel).first.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 420, sel
        await screenshot(page, "chat-420")
        last = await page.locator("#messages li.bot").last.inner_text()
        await console_live(browser, server, conversation, last)
        assert errors.messages == []
    finally:
        await page.context.close()  # the customer leaves: the conversation ends
    deadline = time.monotonic() + 20
    while (await api(server, f"/v1/conversations/{conversation}"))["status"] != "ended":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)


async def console_live(browser: Browser, server: LiveServer, open_id: str, last: str) -> None:
    """The console's live page: the open chat (no number, its last message) and the ended
    one of the first test (its number), beside the calls; a click shows its messages."""
    async with console_page(browser, base(server), TOKEN, width=1400) as (page, errors):
        await page.wait_for_selector('#main[data-ready="live"]')
        card = page.locator(f'#live-conversations article[data-conversation-id="{open_id}"]')
        await card.wait_for(timeout=20_000)
        assert await card.get_attribute("data-status") == "open"
        await expect(card.locator('[data-role="channel"]')).to_have_text("web")
        await expect(card.locator("header strong")).to_have_text("no number")
        await expect(card.locator('[data-role="last"]')).to_have_text(f"Bot: {last}")
        assert await page.locator("#chat-count").inner_text() == "1"
        ended = page.locator('#live-conversations article[data-status="ended"]')
        await expect(ended).to_have_count(1)
        await expect(ended.locator("header strong")).to_have_text(DEMO)
        await expect(ended.locator('[data-role="status"]')).to_have_text("callback_booked")
        await expect(ended.locator('[data-role="last"]')).to_have_text(
            "Bot: Thank you for contacting Example Telecom. Goodbye."
        )
        assert await page.locator("#live-active").is_visible()  # the calls are still there
        await card.click()
        timeline = page.locator("#conversation-timeline")
        await timeline.locator('li[data-sender="customer"]').first.wait_for()
        await expect(timeline.locator('li[data-sender="bot"]', has_text=BALANCE)).to_have_count(1)
        await screenshot(page, "chat-console-live")
        assert errors.messages == []


async def test_the_embedded_widget_on_a_phone_opens_full_screen_and_closes(
    browser: Browser, server: LiveServer, shop: str
) -> None:
    page, errors = await new_page(browser, 420, 760)
    try:
        await page.goto(shop)
        await page.click("#ivr-chat-launcher")
        chat = Chat(page.frame_locator("#ivr-chat-frame"))
        await chat.wait_bot("Welcome to the Example Telecom hotline.")
        frame = await page.locator("#ivr-chat-frame").bounding_box()
        assert frame is not None and frame["width"] == 420 and frame["x"] == 0
        assert await page.locator("#ivr-chat-launcher").is_hidden()
        conversation = await chat.conversation_id()
        await screenshot(page, "chat-embedded-420")
        await chat.root.locator("#chat-close").click()  # ends the chat, closes the frame
        await page.locator("#ivr-chat-frame").wait_for(state="detached")
        await expect(page.locator("#ivr-chat-launcher")).to_be_visible()
        assert errors.messages == []
    finally:
        await page.context.close()
    deadline = time.monotonic() + 20
    while (record := await api(server, f"/v1/conversations/{conversation}"))["status"] != "ended":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert record["end_reason"] == "customer_left" and record["number"] == DEMO
