"""A real Chromium (Debian's, never `playwright install`) on the dashboard of the API process that runs
next to the real operator on the session's control plane.

Every page a test opens fails it if the page asks for anything outside the API's origin, or breaks its
own Content-Security-Policy.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from devrun.processes import Service
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Route, async_playwright

from tests.integration.api.conftest import api_process, token

__all__ = ["api_process"]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
AXE_SOURCE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
# Where `make screenshots` wants the pictures; unset in a normal test run.
SCREENSHOTS = Path(os.environ["UI_SCREENSHOTS"]) if os.environ.get("UI_SCREENSHOTS") else None


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)")
    if SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return CHROMIUM


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = _chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield launched
        await launched.close()


@dataclass
class Visitor:
    """One browser context (cookies of its own) and what it saw that it should not have."""

    context: BrowserContext
    page: Page
    origin: str
    foreign: list[str] = field(default_factory=list)
    csp_errors: list[str] = field(default_factory=list)

    async def open(self, path: str) -> Page:
        await self.page.goto(self.origin + path)
        return self.page

    async def log_in(self, jwt: str) -> None:
        await self.open("/ui/")
        await self.page.get_by_label("Token").fill(jwt)
        await self.page.get_by_role("button", name="Log in").click()
        await self.page.wait_for_url(re.compile(r".*/ui/$"))

    async def csrf(self) -> str:
        value = await self.page.locator("input[name=csrf_token]").first.get_attribute("value")
        assert value
        return value

    def assert_clean(self) -> None:
        assert self.foreign == [], f"requests left the origin: {self.foreign}"
        assert self.csp_errors == [], f"Content-Security-Policy violations: {self.csp_errors}"

    async def axe(self, name: str, *, screenshot: bool = True) -> None:
        """0 axe violations on the page as it is now; and its screenshot for `make screenshots`."""
        await self.page.evaluate(AXE_SOURCE)  # through the DevTools protocol: the page's CSP stays strict
        result: dict[str, Any] = await self.page.evaluate(
            "async () => await axe.run(document, {resultTypes: ['violations']})"
        )
        violations = [
            f"{v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in result["violations"]
        ]
        assert violations == [], f"axe on {name}: {violations}"
        if SCREENSHOTS and screenshot:
            await self.screenshot(name, SCREENSHOTS)

    async def screenshot(self, name: str, directory: Path) -> None:
        """<directory>/<name>.png of the whole page, which is left exactly as it was found.

        `caret="initial"`: Playwright's default `caret="hide"` sets `caret-color` on every input and
        textarea and "restores" it by setting an empty value, so each keeps an empty `style=""`. The
        next htmx poll that swaps such a field's region settles the new elements by copying the old
        ones' `style` attribute with setAttribute, which `style-src 'self'` blocks and reports
        ("Applying inline style violates ...", with the empty string's hash): the visitor failed the
        test. Hiding the caret through the CSSOM ourselves is no better (Chromium may still serialize
        `style=""` after removeAttribute), so a focused field may show its caret in the picture.
        """
        styled = "() => [...document.querySelectorAll('[style]')].map((e) => e.outerHTML.slice(0, 160))"
        before = await self.page.evaluate(styled)
        await self.page.screenshot(path=str(directory / f"{name}.png"), full_page=True, caret="initial")
        assert await self.page.evaluate(styled) == before, f"the screenshot of {name} left inline styles behind"


Visit = Callable[..., Awaitable[Visitor]]


async def open_visitor(browser: Browser, origin: str, color_scheme: str = "light") -> Visitor:
    """A browser context on the dashboard at `origin` that refuses (and records) any request to another
    origin and hears CSP violations; close its context and `assert_clean()` it when done."""
    context = await browser.new_context(
        color_scheme=color_scheme,  # type: ignore[arg-type]
        timezone_id="Europe/Zurich",
        locale="en-GB",
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(15_000)
    page = await context.new_page()
    visitor = Visitor(context, page, origin)

    async def guard(route: Route) -> None:
        url = route.request.url
        if url.startswith(origin + "/") or url.startswith("data:"):
            await route.continue_()
        else:
            visitor.foreign.append(url)
            await route.abort("blockedbyclient")

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            visitor.csp_errors.append(message.text)

    await context.route("**/*", guard)
    page.on("console", on_console)
    page.on("dialog", lambda dialog: pytest.fail(f"unexpected browser dialog: {dialog.message}"))
    return visitor


@pytest_asyncio.fixture(loop_scope="session")
async def visitor(browser: Browser, api_process: str, running_operator: Service) -> AsyncIterator[Visit]:
    """Opens browser contexts on the dashboard; each refuses (and records) any request to another origin."""
    contexts: list[Visitor] = []

    async def open_context(color_scheme: str = "light") -> Visitor:
        visitor = await open_visitor(browser, api_process, color_scheme)
        contexts.append(visitor)
        return visitor

    yield open_context
    for opened in contexts:
        await opened.context.close()
    for opened in contexts:
        opened.assert_clean()


def admin_token(subject: str = "alice") -> str:
    return token(subject)


def viewer_token(subject: str = "victor") -> str:
    return token(subject, ("admin.scheduled_job.read",))
