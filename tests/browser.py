"""Headless Chromium for the console tests: Debian's chromium driven by Playwright (its own
browser download needs the internet; the Debian package does not), page errors collected,
screenshots kept as artifacts in test-artifacts/console/ and listed in the test output.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
TOKEN_KEY = "ivr.console.token"  # the console's localStorage key (static/js/api.js)
ARGS = (
    "--headless=new",
    "--no-sandbox",  # containers have no user namespaces for Chromium's sandbox
    "--disable-dev-shm-usage",  # a small /dev/shm crashes tabs
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",
)

SCREENSHOTS: list[Path] = []
"""Every screenshot taken in this test session (listed at the end of each module)."""


@asynccontextmanager
async def chromium(*args: str) -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} not found: install the Debian package chromium", pytrace=False)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *args])
        try:
            yield browser
        finally:
            await browser.close()


class PageErrors:
    """What the page reported as broken: console errors and uncaught exceptions."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", self._exception)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.messages.append(f"console error: {msg.text} ({msg.location.get('url', '')})")

    def _exception(self, exc: Error) -> None:
        self.messages.append(f"uncaught: {exc.message}\n{exc.stack or ''}")


@asynccontextmanager
async def console_page(
    browser: Browser,
    base_url: str,
    token: str | None,
    *,
    width: int = 1400,
    height: int = 900,
    timezone_id: str = "UTC",
) -> AsyncIterator[tuple[Page, PageErrors]]:
    """A fresh browser context on /console (signed in with `token`, as if entered before),
    `width` px wide, its clock in `timezone_id` (the console's own times are in the
    service's zone whatever the browser's)."""
    context = await browser.new_context(
        viewport={"width": width, "height": height}, timezone_id=timezone_id, locale="en-US"
    )
    if token is not None:
        await context.add_init_script(
            f"localStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(token)})"
        )
    page = await context.new_page()
    errors = PageErrors(page)
    try:
        await page.goto(f"{base_url}/console/")
        yield page, errors
    finally:
        await context.close()


async def show_tab(page: Page, tab: str) -> None:
    await page.click(f"#tab-{tab}")
    await page.wait_for_selector(f'#main[data-ready="{tab}"]')


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS.append(path)
    return path


def list_screenshots(config: pytest.Config) -> None:
    """Name the screenshots in the test output (also when pytest captures output)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not SCREENSHOTS:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(f"console screenshots ({len(SCREENSHOTS)}):")
        for path in dict.fromkeys(SCREENSHOTS):
            reporter.write_line(f"  {path.relative_to(ROOT)}")
    SCREENSHOTS.clear()
