"""The web console in a real headless Chromium against a real `ivr serve`: every page loads
without an error, a live phone call (real speech) shows up with its transcript and then its
recording, callbacks are worked from the queue, the flow is validated and tested (typed and
spoken into a fake microphone), analytics render. Screenshots: test-artifacts/console/.

One server and one browser for the module; each test opens its own browser context.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
import soundfile as sf
from audio_fixtures import recording
from browser import (
    ROOT,
    chromium,
    console_page,
    list_screenshots,
    screenshot,
    show_tab,
)
from live_server import FEED_TOKEN, LiveServer, free_port, live_server
from playwright.async_api import Browser, Dialog, Page, expect
from speech import flite

from ivr.api import hash_token
from ivr.audio.pcm import Audio, write_wav
from ivr.auth import PROTOCOL
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.dial import Caller, CallerTurn
from ivr.store import open_store

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "console-test-token-0123456789"
AGENT = "kim"  # the token's name: the agent of a claim made with it
READER = "reader-token-0123456789"  # callbacks.read only
KNOWN = "+15551230001"  # a demo account: "Your balance is 23 dollars and 50 cents."
DUE = (datetime.now(UTC) + timedelta(days=2)).replace(hour=10, minute=0, second=0, microsecond=0)
NUMBERS = ["+15550100001", "+15550100002", "+15550100003"]
SEEDED: dict[str, str] = {}  # number → callback id
SEEDED_BY_ID: dict[str, str] = {}  # callback id → number
PAGES = ("live", "callbacks", "grammar", "analytics", "webhooks", "softphone")


def seed(db: Path) -> None:
    """Callbacks as a call would book them, written before the server starts."""

    async def run() -> None:
        store = await open_store(str(db))
        try:
            callbacks = Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC")))
            for i, number in enumerate(NUMBERS):
                transcript = {
                    "reason": "bill",
                    "turns": [
                        {"node": "main_menu", "kind": "prompt", "text": "Say balance…"},
                        {"node": "main_menu", "kind": "recognized", "text": "my bill",
                         "intent": "bill", "confidence": 0.8},
                    ],
                }  # fmt: skip
                due = DUE + timedelta(minutes=15 * i)
                cb, _ = await callbacks.book(number, due, reason="bill", transcript=transcript)
                SEEDED[number] = cb.id
                SEEDED_BY_ID[cb.id] = number
        finally:
            await store.close()

    asyncio.run(run())


def microphone(tmp: Path) -> Path:
    """Chromium's fake microphone (looped): silence, "check my balance", silence."""
    rate = 48000
    word = flite("check my balance", tmp / "balance48k.wav", rate=rate).samples
    silence = np.zeros(int(rate * 1.5), dtype=np.int16)
    path = tmp / "microphone.wav"
    write_wav(path, Audio(np.concatenate([silence, word, silence]), rate))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("console")
    seed(tmp / "data" / "ivr.db")
    flow = tmp / "flows" / "hotline.yaml"  # a copy: the page saves the flow it edits
    flow.parent.mkdir()
    shutil.copy(ROOT / "grammars" / "hotline.yaml", flow)
    tokens = f"{AGENT}:{hash_token(TOKEN)}:*,reader:{hash_token(READER)}:callbacks.read"
    # The CRM's receiver is down (nothing listens there): each event is parked at its first
    # failed POST, as after an outage, for the webhooks page to show and replay.
    crm = f"http://127.0.0.1:{free_port()}/crm"
    with live_server(
        tmp,
        IVR_API_TOKENS=tokens,
        IVR_FLOW=str(flow),
        IVR_WEBHOOK_URLS=crm,
        IVR_WEBHOOK_MAX_ATTEMPTS="1",
    ) as live:
        yield live


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    mic = microphone(tmp_path_factory.mktemp("microphone"))
    media = (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}",
    )
    async with chromium(*media) as b:
        yield b


@pytest.fixture(scope="module", autouse=True)
def _screenshots(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    list_screenshots(request.config)


def base(server: LiveServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def api(server: LiveServer, path: str, token: str = TOKEN) -> Any:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{base(server)}{path}", headers=headers) as r:
            assert r.status == 200, await r.text()
            return await r.json() if r.content_type == "application/json" else await r.read()


async def documented(server: LiveServer, method: str, path: str) -> bool:
    """Whether the server has the operation (some pages' APIs come from other work)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base(server)}/v1/openapi.json") as r:
            doc = await r.json()
    return method.lower() in doc["paths"].get(path, {})


# --- the WebSocket feed's authentication ----------------------------------------------------


async def test_live_feed_takes_the_token_as_subprotocol_or_query(server: LiveServer) -> None:
    url = f"ws://127.0.0.1:{server.port}/v1/live"
    async with aiohttp.ClientSession() as http:
        for protocols, query, status in [
            ((), "", 401),
            ((PROTOCOL, "bearer.not-a-token"), "", 401),
            ((PROTOCOL,), "?token=not-a-token", 401),
            ((PROTOCOL, f"bearer.{READER}"), "", 403),  # a token without calls.read
            ((), f"?token={READER}", 403),
        ]:
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await http.ws_connect(url + query, protocols=protocols)
            assert exc.value.status == status, (protocols, query)
        ws = await http.ws_connect(url, protocols=(PROTOCOL, f"bearer.{TOKEN}"))
        assert ws.protocol == PROTOCOL  # the browser insists the server picks one of its own
        await ws.close()
        ws = await http.ws_connect(f"{url}?token={TOKEN}")
        await ws.close()
        async with http.get(f"{base(server)}/v1/live/calls") as r:
            assert r.status == 401
    assert await api(server, "/v1/live/calls") == {"items": []}


# --- every page -----------------------------------------------------------------------------


async def test_sign_in_refuses_an_unknown_token(browser: Browser, server: LiveServer) -> None:
    async with console_page(browser, base(server), None) as (page, errors):
        await page.fill("#token", "not-a-token")
        await page.click("#login button[type=submit]")
        await page.wait_for_selector("#login .notice.error")
        assert "unknown bearer token" in await page.inner_text("#login")
        assert await page.evaluate("localStorage.length") == 0  # not kept
        # the refused request is the only complaint
        assert errors.messages and all("401" in m for m in errors.messages), errors.messages


async def test_every_page_loads_without_errors(browser: Browser, server: LiveServer) -> None:
    async with console_page(browser, base(server), None) as (page, errors):
        await screenshot(page, "sign-in")
        await page.fill("#token", TOKEN)
        await page.click("#login button[type=submit]")
        await page.wait_for_selector('#main[data-ready="live"]')
        assert await page.evaluate("localStorage.getItem('ivr.console.token')") == TOKEN
        await page.wait_for_selector("#feed-state.open")  # the live feed connected
        for tab in PAGES:
            await show_tab(page, tab)
            await check_page(page, server, tab)
            await screenshot(page, tab)
        # A reload keeps the token and the page (#fragment).
        await page.reload()
        await page.wait_for_selector('#main[data-ready="softphone"]')
        assert errors.messages == []


async def check_page(page: Page, server: LiveServer, tab: str) -> None:
    """What each page shows once loaded (an API another change brings may be missing: then
    the page must say so)."""
    if tab == "live":
        await page.wait_for_selector("#live-active")
        await page.wait_for_selector("#history tbody tr")
    elif tab == "callbacks":
        rows = page.locator("#cb-table tbody tr[data-callback-id]")
        await rows.first.wait_for()
        assert await rows.count() == len(NUMBERS)
    elif tab == "grammar":
        if await documented(server, "GET", "/v1/flows/{name}"):
            await expect(page.locator("#flow-text")).to_have_value(re.compile("name: hotline"))
            assert await page.locator(".editor .gutter span").count() > 100  # line numbers
        else:
            await page.wait_for_selector("#main .unavailable")
    elif tab == "analytics":
        for section in ("summary", "intents", "histogram", "nodes", "unrecognized"):
            box = page.locator(f"#an-{section}")
            await box.locator("p, table, figure, .cards-grid").first.wait_for()
            assert await box.locator(".notice.error").count() == 0
    elif tab == "webhooks":
        await page.locator("#wh-table tbody tr[data-event-id]").first.wait_for()
    elif tab == "softphone":
        assert await page.is_enabled("#sp-dial") and await page.is_disabled("#sp-hangup")


# --- a live call ----------------------------------------------------------------------------


async def test_live_call_shows_its_transcript_then_its_recording(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    speech = tmp_path / "balance.wav"
    write_wav(speech, flite("check my balance", speech))
    async with console_page(browser, base(server), TOKEN) as (page, errors):
        await page.wait_for_selector('#main[data-ready="live"]')
        await page.wait_for_selector("#feed-state.open")
        caller = Caller(
            server.media_url, [CallerTurn(wav=speech)], KNOWN, out=None, token=FEED_TOKEN
        )
        call = asyncio.create_task(caller.run())
        for _ in range(400):  # until the server names the call (its call_started event)
            if caller.report.call_id != caller.call_sid:
                break
            await asyncio.sleep(0.05)
        card = page.locator(f'#live-active article[data-call-id="{caller.report.call_id}"]')
        await card.wait_for(timeout=20_000)
        assert KNOWN in await card.locator("header").inner_text()
        # In progress: the card and the REST list show the node it is at.
        await card.locator('[data-role="node"]:not(:empty)').wait_for()
        [live] = (await api(server, "/v1/live/calls"))["items"]
        assert live["id"] == caller.report.call_id and live["caller"] == KNOWN
        assert live["transport"] == "websocket" and live["flow"] == "hotline"
        assert live["node"] and live["events"] >= 1
        assert (await api(server, "/v1/live/calls?transport=browser"))["items"] == []
        # The caller's word appears with its intent and confidence, while the call goes on.
        said = card.locator('li[data-kind="recognized"]')
        await said.locator('.tag.intent:text-is("balance")').wait_for(timeout=40_000)
        assert "balance" in (await said.inner_text()).lower()  # "Check my balance."
        assert await said.locator(".tag.conf").inner_text() != ""
        await screenshot(page, "live-call")
        report = await asyncio.wait_for(call, 60)
        assert report.hangup == "caller_hangup"
        # Ended: in "ended while watching", then in the history; open its timeline.
        ended = page.locator(f'#live-ended article[data-call-id="{caller.report.call_id}"]')
        await ended.wait_for(timeout=10_000)
        row = page.locator(f'#history tr[data-call-id="{caller.report.call_id}"]')
        await row.wait_for(timeout=10_000)
        await row.click()
        timeline = page.locator('#call-timeline li[data-kind="recognized"]')
        await timeline.locator('.tag.intent:text-is("balance")').wait_for()
        audio = page.locator("#call-audio")
        await audio.wait_for()
        assert (await audio.get_attribute("src") or "").startswith("blob:")
        duration = await audio.evaluate(
            """a => a.readyState >= 1 ? a.duration : new Promise(ok =>
                 a.addEventListener("loadedmetadata", () => ok(a.duration), {once: true}))"""
        )
        await screenshot(page, "call-detail")
        assert errors.messages == []
    record = await api(server, f"/v1/calls/{caller.report.call_id}")
    seconds = (
        datetime.fromisoformat(record["ended_at"]) - datetime.fromisoformat(record["started_at"])
    ).total_seconds()
    assert abs(duration - seconds) < 2.0, (duration, seconds)
    # The recording: the caller's side holds the word, the bot's side the prompts.
    wav, rate = sf.read(io.BytesIO(await api(server, f"/v1/calls/{caller.report.call_id}/audio")))
    assert rate == 8000 and wav.shape[1] == 2
    assert np.abs(wav[:, 0]).max() > 0.05 and np.abs(wav[:, 1]).max() > 0.05


# --- callbacks --------------------------------------------------------------------------------


async def test_callbacks_are_worked_from_the_queue(browser: Browser, server: LiveServer) -> None:
    done, moved, dropped = (SEEDED[n] for n in NUMBERS)
    async with console_page(browser, base(server), TOKEN) as (page, errors):
        await show_tab(page, "callbacks")
        status = page.locator("#cb-status")

        def row(cb_id: str, state: str = "") -> Any:
            extra = f'[data-status="{state}"]' if state else ""
            return page.locator(f'#cb-table tr[data-callback-id="{cb_id}"]{extra}')

        # claim, then complete with an outcome
        await row(done).locator('button[data-action="claim"]').click()
        claimed = row(done, "claimed")
        await claimed.wait_for()
        assert AGENT in await claimed.inner_text()
        await claimed.locator('select[name="outcome"]').select_option("resolved")
        await claimed.locator('button[data-action="complete"]').click()
        await status.locator("text=completed: resolved").wait_for()
        await row(done).wait_for(state="detached")  # the default filter shows open ones
        # reschedule (the browser's zone is UTC here) and cancel
        await row(moved).locator('input[name="due_at"]').fill("2031-02-03T10:30")
        await row(moved).locator('button[data-action="reschedule"]').click()
        await status.locator("text=rescheduled").wait_for()
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))  # asks first
        await row(dropped).locator('button[data-action="cancel"]').click()
        await status.locator("text=now cancelled").wait_for()
        # the filter finds the finished one again
        await page.locator('#cb-filters input[value="completed"]').check()
        await page.fill("#cb-number", NUMBERS[0])
        await page.click('#cb-filters button[type="submit"]')
        await row(done, "completed").wait_for()
        assert await page.locator("#cb-table tbody tr[data-callback-id]").count() == 1
        # and shows what the caller said
        await row(done).locator("a").click()
        await page.locator("#cb-detail").get_by_text("my bill").wait_for()
        await screenshot(page, "callbacks-worked")
        assert errors.messages == []
    completed = await api(server, f"/v1/callbacks/{done}")
    assert completed["status"] == "completed" and completed["outcome"] == "resolved"
    assert [a["agent"] for a in completed["attempt_log"]] == [AGENT]
    rescheduled = await api(server, f"/v1/callbacks/{moved}")
    assert datetime.fromisoformat(rescheduled["due_at"]) == datetime(2031, 2, 3, 10, 30, tzinfo=UTC)
    assert (await api(server, f"/v1/callbacks/{dropped}"))["status"] == "cancelled"


async def test_parked_webhooks_are_inspected_and_replayed(
    browser: Browser, server: LiveServer
) -> None:
    """The seeded bookings' callback.scheduled events were parked by real failed POSTs."""

    async def parked() -> list[Any]:
        page = await api(server, "/v1/webhooks/events?state=parked&type=callback.scheduled")
        items: list[Any] = page["items"]
        return items

    deadline = time.monotonic() + 30
    while len(await parked()) < len(NUMBERS):
        assert time.monotonic() < deadline, "the bookings' events were not parked"
        await asyncio.sleep(0.2)
    event = (await parked())[0]
    async with console_page(browser, base(server), TOKEN) as (page, errors):
        await show_tab(page, "webhooks")
        await page.select_option("#wh-state", "parked")
        await page.click('#wh-filters button[type="submit"]')
        row = page.locator(f'#wh-table tr[data-event-id="{event["id"]}"][data-state="parked"]')
        await row.wait_for()
        assert "ClientConnectorError" in await row.inner_text()
        await row.locator("a").click()
        deliveries = page.locator("#wh-deliveries tr[data-ok]")
        await expect(deliveries).to_have_count(1)
        assert "no answer" in await deliveries.first.inner_text()
        data = (await api(server, f"/v1/webhooks/events/{event['id']}"))["data"]
        number = SEEDED_BY_ID[data["callback"]["id"]]
        await page.locator("#wh-detail pre.json").get_by_text(number).wait_for()
        # dismissed: nothing sent; accepted: sent again (and parked again: still down)
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
        await row.locator('button[data-action="replay"]').click()
        await asyncio.sleep(0.5)
        assert len((await api(server, f"/v1/webhooks/events/{event['id']}"))["deliveries"]) == 1
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await row.locator('button[data-action="replay"]').click()
        await page.locator("#wh-status").get_by_text("replayed").wait_for()
        deadline = time.monotonic() + 20
        while len((await api(server, f"/v1/webhooks/events/{event['id']}"))["deliveries"]) < 2:
            assert time.monotonic() < deadline, "the replayed event was not sent"
            await asyncio.sleep(0.2)
        await page.select_option("#wh-state", "")  # it may have been pending at the reload
        await page.click('#wh-filters button[type="submit"]')
        await page.locator(f'#wh-table tr[data-event-id="{event["id"]}"] a').click()
        await expect(deliveries).to_have_count(2)
        await screenshot(page, "webhooks-replayed")
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.click("#wh-replay-parked")
        await page.locator("#wh-status").get_by_text("parked event").wait_for()
        assert errors.messages == []


# --- grammar ----------------------------------------------------------------------------------


async def test_flow_is_validated_saved_and_tested(browser: Browser, server: LiveServer) -> None:
    if not await documented(server, "GET", "/v1/flows/{name}"):
        pytest.fail("GET /v1/flows/{name} is not served: the grammar page has nothing to edit")
    async with console_page(browser, base(server), TOKEN) as (page, errors):
        await show_tab(page, "grammar")
        area = page.locator("#flow-text")
        await expect(area).to_have_value(re.compile("name: hotline"))
        original = await area.input_value()
        line = original.split("\n").index("start: greeting") + 1
        # a broken reference: validation marks its line
        await area.fill(original.replace("start: greeting", "start: nowhere"))
        await page.click("#flow-validate")
        problem = page.locator(f'#flow-problems li[data-line="{line}"]')
        await problem.wait_for()
        assert "nowhere" in await problem.inner_text()
        assert await page.locator(f'.gutter span.bad[data-line="{line}"]').count() == 1
        await screenshot(page, "grammar-problems")
        # saving asks first: dismissed, nothing is sent
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
        await page.click("#flow-save")
        await page.locator("#flow-status").get_by_text("the save was cancelled").wait_for()
        # accepted, it is refused (422) with the problem listed; nothing changes
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.click("#flow-save")
        await page.locator("#flow-status").get_by_text("Not saved:").wait_for()
        await expect(page.locator("#flow-status")).not_to_contain_text("cancelled")
        # a good edit is saved and served
        edited = "# edited from the console\n" + original
        await area.fill(edited)
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await page.click("#flow-save")
        await page.locator("#flow-status").get_by_text("Saved").wait_for()
        # the tester: typed, then spoken into the (fake) microphone
        await page.fill("#test-node", "main_menu")
        await page.fill("#test-text", "check my balance")
        await page.click("#test-run")
        await page.locator("#test-result .verdict").get_by_text("balance").wait_for()
        assert await page.inner_text('#test-result dd[data-field="phrase"]') != ""
        await page.click("#test-record")
        # The fake microphone's loop (silence, "check my balance", silence) is about 4.2 s:
        # 6 s of it hold the phrase once whole.
        await page.wait_for_timeout(6000)
        await page.click("#test-record")
        heard = page.locator('#test-result dd[data-field="text"]')
        await heard.wait_for(timeout=20_000)
        assert "balance" in (await heard.inner_text()).lower()
        assert await page.inner_text("#test-result .verdict") == "balance"
        await screenshot(page, "grammar-tester")
        # the refused save is the only complaint (the browser logs every 4xx response)
        [refused] = errors.messages
        assert "422" in refused and "/v1/flows/hotline" in refused
    flow = await api(server, "/v1/flows/hotline")
    assert flow["text"] == edited


# --- analytics --------------------------------------------------------------------------------


async def test_analytics_page(browser: Browser, server: LiveServer) -> None:
    paths = {
        "summary": "/v1/analytics/summary",
        "intents": "/v1/analytics/intents",
        "nodes": "/v1/analytics/nodes",
        "unrecognized": "/v1/analytics/unrecognized",
    }
    served = {k: await documented(server, "GET", p) for k, p in paths.items()}
    adopt = await documented(server, "POST", "/v1/analytics/unrecognized/adopt")
    if served["unrecognized"]:
        # A caller the menu does not understand ("password"): an unrecognized utterance.
        turns = [CallerTurn(wav=recording("vm-password"))]
        report = await Caller(server.media_url, turns, KNOWN, out=None, token=FEED_TOKEN).run()
        assert "no_match" in [e["event"] for e in report.events], report.events
    async with console_page(browser, base(server), TOKEN) as (page, errors):
        await show_tab(page, "analytics")
        for section, present in served.items():
            box = page.locator(f"#an-{section}")
            if not present:
                await box.locator(".unavailable").wait_for()
                assert paths[section] in await box.inner_text()
        if served["summary"]:
            # the calls of this module are counted: a card per figure
            await page.locator("#an-cards .card").first.wait_for()
            data = await api(server, paths["summary"])
            scalars = [k for k, v in data.items() if isinstance(v, int | float)]
            for key in scalars:
                assert await page.locator(f'#an-cards .card[data-key="{key}"]').count() == 1
            assert await page.inner_text('#an-cards .card[data-key="calls"] .value') != "0"
        if served["intents"]:
            # After the live test (module order), its caller's "balance" is a bar.
            counts = await api(server, f"{paths['intents']}?bucket=hour")
            bars = page.locator('#an-intents-chart rect:not([height="0"])')
            if "balance" in json.dumps(counts):
                await bars.first.wait_for()
                assert "balance" in (await bars.first.locator("title").text_content() or "")
                await page.select_option("#an-bucket", "day")
                await bars.first.wait_for()
            else:
                await page.locator("#an-intents").get_by_text("No intents").wait_for()
        if served["nodes"]:
            await page.locator("#an-nodes-table tbody tr").first.wait_for()
            await page.locator("#an-histogram-chart").wait_for()
        if served["unrecognized"]:
            row = page.locator("#an-unrecognized-table tbody tr").first
            await row.wait_for()
            assert "main_menu" in await row.inner_text()
            # play what the caller said (its own recording, or the call's from that moment)
            await row.locator("button.play").first.click()
            player = page.locator('#an-player[src^="blob:"]')
            await player.wait_for()
            await expect(player).to_have_js_property("paused", False)
            await screenshot(page, "analytics-data")
            if adopt:
                await row.locator("button.adopt-open").click()
                form = row.locator("form.adopt")
                await form.locator('input[name="intent"]').fill("agent")
                await form.locator('input[name="phrase"]').fill("password help")
                # adding saves the served flow: it asks first
                page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
                await form.locator('button[type="submit"]').click()
                await page.locator("#an-adopt-status").get_by_text("Added").wait_for()
        else:
            await screenshot(page, "analytics-data")
        assert errors.messages == []
    if served["unrecognized"] and adopt:
        assert "password help" in (await api(server, "/v1/flows/hotline"))["text"]


# --- time zones, the call timeline, narrow screens (issue 13) ---------------------------------

BROWSER_ZONE = "America/Los_Angeles"  # not the service's (UTC): the console must not use it


async def no_overflow(page: Page, selector: str) -> None:
    """Nothing inside `selector` sticks out of it, and the page does not scroll sideways."""
    out = await page.evaluate(
        """sel => {
            const root = document.documentElement;
            const bad = [];
            if (root.scrollWidth > root.clientWidth) {
                bad.push(`page ${root.scrollWidth} > ${root.clientWidth}`);
            }
            for (const box of document.querySelectorAll(sel)) {
                const edge = box.getBoundingClientRect();
                for (const el of box.querySelectorAll("button, input, select")) {
                    const r = el.getBoundingClientRect();
                    if (r.width && (r.right > edge.right + 0.5 || r.left < edge.left - 0.5)) {
                        const where = `${r.left}..${r.right} not in ${edge.left}..${edge.right}`;
                        bad.push(`${el.outerHTML.slice(0, 60)}: ${where}`);
                    }
                }
            }
            return bad;
        }""",
        selector,
    )
    assert out == [], out


async def test_healthz_names_the_service_time_zone(server: LiveServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base(server)}/healthz") as r:  # no token: the console's sign-in
            assert r.status == 200
            assert (await r.json())["timezone"] == "UTC"


async def test_transcript_lines_show_diagnostics_as_diagnostics(
    browser: Browser, server: LiveServer
) -> None:
    """What the recognizer reports (nothing heard, [unk] sounds, a no-match and its reason)
    is a muted italic note, never quoted as the caller's words."""
    at = "2030-01-07T08:15:30+00:00"
    events = [
        {"event": "recognized", "text": "", "confidence": 0.12, "at": at},
        {"event": "recognized", "text": "[unk] [unk]", "confidence": 0.31, "at": at},
        {"event": "recognized", "text": "my [unk] bill", "intent": "bill", "confidence": 0.7},
        {"event": "no_match", "text": "no grammar phrase matched", "at": at},
        {"event": "no_input", "text": "", "at": at},
    ]
    async with console_page(browser, base(server), TOKEN, timezone_id=BROWSER_ZONE) as (
        page,
        errors,
    ):
        await page.wait_for_selector('#main[data-ready="live"]')
        lines = await page.evaluate(
            """events => import("/console/static/js/transcript.js").then(m => {
                const ol = m.transcript(events);
                ol.id = "probe";
                document.querySelector("#live-active").append(ol);
                return [...ol.children].map(li => ({
                    diag: li.classList.contains("diag"),
                    what: li.querySelector(".what").textContent,
                    who: li.querySelector(".who").textContent,
                    tags: li.querySelector(".tags")?.textContent || "",
                    at: li.querySelector("time")?.textContent || "",
                    italic: getComputedStyle(li.querySelector(".what")).fontStyle,
                }));
            })""",
            events,
        )
        await screenshot(page, "transcript-diagnostics")
        assert errors.messages == []
    silence, unknown, words, no_match, no_input = lines
    for diag in (silence, unknown, no_match, no_input):
        assert diag["diag"] and diag["italic"] == "italic" and "“" not in diag["what"], diag
        assert diag["who"] != "caller", diag
    assert "silence" in silence["what"] and "12%" in silence["tags"]
    assert "unintelligible" in unknown["what"] and "[unk]" not in unknown["what"]
    assert "31%" in unknown["tags"] and "no match" in unknown["tags"]
    assert no_match["what"] == "no match: no grammar phrase matched"
    assert not words["diag"] and words["what"] == "“my (?) bill”" and words["who"] == "caller"
    assert silence["at"] == "08:15:30 UTC"  # the service's zone, named; not Los Angeles'


async def test_live_calls_at_420px_history_refreshes_and_timeline_seeks(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    speech = tmp_path / "balance.wav"
    write_wav(speech, flite("check my balance", speech))
    # "password" is no menu choice: a recognized turn and a no-match, then the balance
    turns = [CallerTurn(wav=recording("vm-password")), CallerTurn(wav=speech)]
    async with console_page(
        browser, base(server), TOKEN, width=420, height=900, timezone_id=BROWSER_ZONE
    ) as (page, errors):
        await page.wait_for_selector('#main[data-ready="live"]')
        await page.wait_for_selector("#feed-state.open")
        await page.locator("#history tbody tr").first.wait_for()
        report = await Caller(server.media_url, turns, KNOWN, out=None, token=FEED_TOKEN).run()
        assert "no_match" in [e["event"] for e in report.events], report.events
        # no reload, no search: the feed's hangup brings the ended call into the history
        row = page.locator(f'#history tr[data-call-id="{report.call_id}"][data-ended="true"]')
        await row.wait_for(timeout=20_000)
        assert "UTC" in await row.locator("td").first.inner_text()
        await no_overflow(page, "#main .panel")
        await screenshot(page, "live-420")
        await row.click()
        timeline = page.locator("#call-timeline")
        miss = timeline.locator('li[data-kind="no_match"]').first
        await miss.wait_for()
        assert "diag" in (await miss.get_attribute("class") or "")
        assert (await miss.locator(".what").inner_text()).startswith("no match")
        # the timeline is the page's: no inner scroll box
        sizes = await timeline.evaluate(
            "t => [t.scrollHeight, t.clientHeight, getComputedStyle(t).overflowY]"
        )
        assert sizes[0] <= sizes[1] + 1 and sizes[2] == "visible", sizes
        audio = page.locator("#call-audio")
        await audio.wait_for()
        await page.locator("#call-timeline.playable").wait_for()
        # a turn well into the call: the recording plays from its moment
        said = timeline.locator('li[data-kind="recognized"]').last
        offset = float(await said.get_attribute("data-offset") or "nan")
        assert offset > 2, offset
        await said.click()
        await expect(said).to_have_class(re.compile("current"))
        position = await audio.evaluate(
            "a => new Promise(ok => a.currentTime > 0 ? ok(a.currentTime) :"
            " a.addEventListener('seeked', () => ok(a.currentTime), {once: true}))"
        )
        assert abs(position - offset) < 1.0, (position, offset)
        await no_overflow(page, "#call-detail")
        await screenshot(page, "call-timeline-420")
        assert errors.messages == []


async def book(server: LiveServer, number: str, due: datetime) -> str:
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        body = {"number": number, "due_at": due.isoformat(), "reason": "bill"}
        async with http.post(f"{base(server)}/v1/callbacks", json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
            return str((await r.json())["id"])


@pytest.mark.parametrize("width", [1400, 420])
async def test_callback_detail_actions_fit_confirm_and_update(
    browser: Browser, server: LiveServer, width: int
) -> None:
    number = f"+1555019{width:04d}"
    cb_id = await book(server, number, DUE + timedelta(hours=5))
    async with console_page(
        browser, base(server), TOKEN, width=width, timezone_id=BROWSER_ZONE
    ) as (page, errors):
        await show_tab(page, "callbacks")
        row = page.locator(f'#cb-table tr[data-callback-id="{cb_id}"]')
        await row.wait_for()
        assert (await row.locator("td").first.inner_text()).endswith("UTC")
        assert "(UTC)" in await page.inner_text("#cb-filters")
        await row.locator("a").click()
        detail = page.locator("#cb-detail")
        status = detail.locator("#cb-detail-status")
        await expect(status).to_have_text("scheduled")
        await no_overflow(page, "#cb-detail")
        await no_overflow(page, "#cb-table td.actions")
        # the reschedule input is in the service's zone (UTC), not the browser's
        when = detail.locator('input[name="due_at"]')
        assert await when.input_value() == (DUE + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M")
        await when.fill("2031-03-04T09:45")
        await detail.locator('button[data-action="reschedule"]').click()
        await page.locator("#cb-status").get_by_text("rescheduled").wait_for()
        await expect(detail.locator("dd").first).to_contain_text("09:45:00 UTC")
        # claim from the detail: its status follows
        await detail.locator('button[data-action="claim"]').click()
        await expect(status).to_have_text("claimed")
        await expect(row).to_have_attribute("data-status", "claimed")
        # cancel asks first: dismissed, nothing changes; accepted, it is cancelled
        page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
        await detail.locator('button[data-action="cancel"]').click()
        await page.locator("#cb-status").get_by_text("not cancelled").wait_for()
        assert (await api(server, f"/v1/callbacks/{cb_id}"))["status"] == "claimed"
        await no_overflow(page, "#cb-detail")
        await screenshot(page, f"callback-detail-{width}")
        messages: list[str] = []

        async def accept(dialog: Dialog) -> None:
            messages.append(dialog.message)
            await dialog.accept()

        page.once("dialog", accept)
        await detail.locator('button[data-action="cancel"]').click()
        await expect(status).to_have_text("cancelled")
        assert number in messages[0]
        await expect(detail.locator('button[data-action="cancel"]')).to_have_count(0)
        await screenshot(page, f"callback-cancelled-{width}")
        assert errors.messages == []
    done = await api(server, f"/v1/callbacks/{cb_id}")
    assert done["status"] == "cancelled"
    assert datetime.fromisoformat(done["due_at"]) == datetime(2031, 3, 4, 9, 45, tzinfo=UTC)


# --- analytics: the time range, CSV export, chart axes (issue 13) -------------------------------


async def test_analytics_range_export_and_axes(browser: Browser, server: LiveServer) -> None:
    """The range picker asks the server for its period (or custom dates typed in the service's
    zone), each report downloads as the server's CSV, and the charts name their axes with
    hours on a 24-hour clock in the service's zone (UTC here; the browser is in Los Angeles)."""
    # a caller who keys 1: a topic (balance) in the intents chart whatever ran before
    await Caller(server.media_url, [CallerTurn(dtmf="1")], KNOWN, out=None, token=FEED_TOKEN).run()
    async with console_page(browser, base(server), TOKEN, timezone_id="America/Los_Angeles") as (
        page,
        errors,
    ):
        await show_tab(page, "analytics")
        await page.locator("#an-cards .card").first.wait_for()
        assert await page.inner_text("#an-zone") == "Times in UTC"
        # the axes: named, and the hour labels are the buckets' UTC hours as HH:00
        chart = page.locator("#an-intents-chart")
        await chart.wait_for()
        titles = await chart.locator("text.axis-title").all_text_contents()
        assert titles == ["Hour (UTC)", "Contacts"]  # calls and conversations (every channel)
        intents = await api(server, "/v1/analytics/intents?period=24h&bucket=hour")
        hours = [b[11:16] for b in intents["buckets"]]
        labels = await chart.locator("text.label:not(.date)").all_text_contents()
        assert labels and all(re.fullmatch(r"\d\d:00", label) for label in labels), labels
        assert labels == hours[:: -(-len(hours) // 12)]  # every other hour of 24
        await screenshot(page, "analytics-hours")
        histogram = page.locator("#an-histogram-chart text.axis-title")
        assert await histogram.all_text_contents() == ["Recognizer confidence", "Utterances"]
        # containment: abandoned calls are their own line
        assert "Abandoned" in await page.inner_text('#an-cards .card[data-key="containment"]')

        # the last 7 days: every section asks for period=7d, intents by day
        async with page.expect_response(
            lambda r: "/v1/analytics/summary?" in r.url and "period=7d" in r.url
        ):
            await page.select_option("#an-range", "7d")
        await expect(page.locator("#an-bucket")).to_have_value("day")
        await expect(chart.locator("text.axis-title").first).to_have_text("Day (UTC)")
        async with page.expect_download() as info:
            await page.click("#an-intents-csv")
        download = await info.value
        assert re.fullmatch(r"ivr-intents-\d{4}-\d\d-\d\dT\d{4}-\d{4}-\d\d-\d\dT\d{4}\.csv",
                            download.suggested_filename)  # fmt: skip
        rows = (await download.path()).read_text().splitlines()
        week = await api(server, "/v1/analytics/intents?period=7d&bucket=day")
        assert rows[0] == ",".join(["day"] + [s["intent"] for s in week["series"]])
        assert len(rows) == 1 + len(week["buckets"])
        async with page.expect_download() as info:
            await page.click("#an-summary-csv")
        summary = dict(
            line.split(",", 1)
            for line in (await (await info.value).path()).read_text().splitlines()
        )
        assert summary["calls"] == str(
            (await api(server, "/v1/analytics/summary?period=7d"))["calls"]
        )
        assert "abandoned" in summary
        await page.locator("#an-summary-csv + .status").get_by_text("Downloaded").wait_for()

        # custom: a day in 2030 (typed as UTC wall times): no calls then
        await page.select_option("#an-range", "custom")
        await page.fill("#an-since", "2030-01-07T13:00")
        await page.fill("#an-until", "2030-01-08T01:00")
        async with page.expect_response(
            lambda r: (
                "/v1/analytics/summary?" in r.url
                and "since=2030-01-07T13%3A00%3A00.000Z" in r.url
                and "until=2030-01-08T01%3A00%3A00.000Z" in r.url
            )
        ):
            await page.click("#an-apply")
        await expect(page.locator('#an-cards .card[data-key="calls"] .value')).to_have_text("0")
        line = await page.inner_text("#an-summary p.window")
        assert "13:00:00" in line and "01:00:00" in line and "PM" not in line, line
        await expect(page.locator("#an-intents")).to_contain_text("No intents in this window")
        # back to the last 7 days for the screenshot: the calls of this module, by day
        await page.select_option("#an-range", "7d")
        await chart.wait_for()
        await screenshot(page, "analytics-range")
        assert errors.messages == []
