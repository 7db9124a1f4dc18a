"""Browser tests of the console: a real ingest app on a local port, driven by Playwright with
Debian's Chromium (``/usr/bin/chromium``, installed by ``python -m tools deps`` when missing;
Playwright's own browser downloads are never used).

Each page collects its console messages and page errors; ``Browser.assert_clean`` fails a
test on any of them. Screenshots go to ``docs/screenshots/`` when missing or when
``CONSOLE_SCREENSHOTS=1`` (so an ordinary run leaves the checkout unchanged).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from taskstream.services.ingest.console.session import Access
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.helpers import api_client

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed (python -m tools deps installs it as root)",
)

if CHROMIUM.exists():
    from playwright.async_api import Page, async_playwright
else:  # pragma: no cover
    Page = Any  # type: ignore[misc,assignment]


@dataclass
class Browser:
    """One browser page on the console, with what its console said."""

    page: Page
    base: str
    api: TestClient[Any, Any]
    problems: list[str] = field(default_factory=list)

    async def goto(self, path: str) -> None:
        answer = await self.page.goto(self.base + path)
        assert answer is not None and answer.status < 400, (path, answer and answer.status)

    def expect_refused(self, status: int) -> None:
        """The browser logged the refusal the test provoked (a wrong key): that one only."""
        assert len(self.problems) == 1 and f"status of {status}" in self.problems[0], self.problems
        self.problems.clear()

    def assert_clean(self) -> None:
        assert self.problems == [], self.problems

    async def shot(self, name: str) -> None:
        target = SHOTS / f"{name}.png"
        if target.exists() and os.environ.get("CONSOLE_SCREENSHOTS") != "1":
            return
        SHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(target), full_page=True)


@asynccontextmanager
async def open_browser(
    config: Config,
    db: Database,
    streams: Streams,
    metrics: Metrics,
    access: Access | None = None,
) -> AsyncIterator[Browser]:
    async with (
        api_client(config, db, streams, metrics, console_access=access) as (client, _),
        async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
        context = await browser.new_context(viewport={"width": 1366, "height": 800})
        page = await context.new_page()
        page.set_default_timeout(10_000)
        found = Browser(page=page, base=str(client.make_url("")).rstrip("/"), api=client)

        def on_console(message: Any) -> None:
            if message.type in ("error", "warning"):
                found.problems.append(f"console {message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: found.problems.append(f"page error: {exc}"))
        try:
            yield found
        finally:
            await context.close()
            await browser.close()


@pytest.fixture
def config(config: Config) -> Config:
    from taskstream.shared import config as config_mod

    # The overview refreshes quickly so a test sees a refresh; no retry waits.
    return config_mod.replace(config, console_refresh_ms=400, console_sample_ms=200)


@pytest.fixture
async def browser(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[Browser]:
    await streams.ensure_groups()
    async with open_browser(config, db, streams, metrics) as b:
        yield b
