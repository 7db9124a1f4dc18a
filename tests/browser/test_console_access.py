"""Sign-in in a real Chromium: a key signs in, a read-only key sees the pages without their
buttons and its forged POST gets 403, a revoked key's session ends.

The keys come from a stand-in ``Access`` (the console's one sign-in hook) until API keys
exist in the API; the console's side (sessions, cookies, CSRF, scopes) is what is tested."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect

from taskstream.services.ingest.console.session import Principal
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.browser.conftest import Browser, open_browser
from tests.ops_helpers import executor

READER = Principal(name="reader", key_id="k-read", scopes=frozenset({"ops:read", "tasks:read"}))
WRITER = Principal(name="operator", key_id="k-write", scopes=frozenset({"ops:read", "ops:write"}))


class StaticKeys:
    """Two keys; a key id in ``revoked`` ends its sessions."""

    required = True

    def __init__(self) -> None:
        self.keys = {"ts_read_secret": READER, "ts_write_secret": WRITER}
        self.revoked: set[str] = set()

    async def sign_in(self, api_key: str) -> Principal | None:
        found = self.keys.get(api_key)
        return None if found is None or found.key_id in self.revoked else found

    async def still_valid(self, principal: Principal) -> bool:
        return principal.key_id not in self.revoked


@pytest.fixture
def keys() -> StaticKeys:
    return StaticKeys()


@pytest.fixture
async def signed(
    config: Config, db: Database, streams: Streams, metrics: Metrics, keys: StaticKeys
) -> AsyncIterator[Browser]:
    await streams.ensure_groups()
    async with open_browser(config, db, streams, metrics, access=keys) as b:
        yield b


async def sign_in(b: Browser, key: str) -> None:
    await b.page.get_by_label("API key").fill(key)
    await b.page.get_by_role("button", name="Sign in").click()


async def test_sign_in_then_a_read_only_key_sees_no_buttons_and_its_forged_post_gets_403(
    signed: Browser, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    b, page = signed, signed.page
    answer = await b.api.post("/v1/tasks", json={"type": "always_fail", "max_attempts": 1})
    task_id = (await answer.json())["id"]
    await executor(config, db, streams, metrics).run_once()

    # Every page sends an unsigned visitor to the login page, and back after it.
    await page.goto(f"{b.base}/ui/dlq")
    await expect(page).to_have_url(f"{b.base}/ui/login?next=/ui/dlq")
    await b.shot("login")
    await sign_in(b, "not-a-key")
    await expect(page.get_by_role("alert")).to_contain_text("not valid")
    b.expect_refused(401)
    await sign_in(b, "ts_read_secret")
    await expect(page).to_have_url(f"{b.base}/ui/dlq")
    await expect(page.locator(".who")).to_contain_text("read only")
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["taskstream_console"]
    assert (session["httpOnly"], session["sameSite"], session["path"]) == (True, "Strict", "/ui/")

    # The pages, without their buttons.
    await expect(page.locator(f"tr[data-task='{task_id}']")).to_be_visible()
    await expect(page.locator("#dlq-form button")).to_have_count(0)
    await expect(page.locator("#dlq-form input[type=checkbox]")).to_have_count(0)
    await b.goto(f"/ui/tasks/{task_id}")
    await expect(page.locator("main form")).to_have_count(0)
    await b.goto("/ui/queues")
    await expect(page.get_by_role("button", name="Remove")).to_have_count(0)

    # A POST sent anyway, with the session's own CSRF token: 403, nothing replayed.
    csrf = await page.locator("header input[name=csrf]").get_attribute("value")
    forged = await page.request.post(
        f"{b.base}/ui/dlq/apply", form={"csrf": csrf or "", "op": "replay:matching"}
    )
    assert forged.status == 403
    assert "ops:write" in await forged.text()
    cancel = await page.request.post(
        f"{b.base}/ui/tasks/{task_id}/cancel", form={"csrf": csrf or ""}
    )
    assert cancel.status == 403
    assert (await db.get_task(uuid.UUID(task_id))).status == "dead"  # type: ignore[union-attr]
    b.assert_clean()


async def test_a_writer_sees_the_buttons_and_needs_the_csrf_token(
    signed: Browser, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    b, page = signed, signed.page
    answer = await b.api.post("/v1/tasks", json={"type": "always_fail", "max_attempts": 1})
    task_id = (await answer.json())["id"]
    await executor(config, db, streams, metrics).run_once()
    await page.goto(f"{b.base}/ui/dlq")
    await sign_in(b, "ts_write_secret")
    await expect(page.get_by_role("button", name="Replay all matching…")).to_be_visible()
    # Without the token (or with another session's), a write is refused.
    forms: list[dict[str, str | float | bool]] = [
        {"op": "purge:matching"},
        {"op": "purge:matching", "csrf": "forged"},
    ]
    for form in forms:
        refused = await page.request.post(f"{b.base}/ui/dlq/apply", form=form)
        assert refused.status == 403
    await expect(page.locator(f"tr[data-task='{task_id}']")).to_be_visible()
    await page.get_by_role("button", name="Purge all matching…").click()
    await expect(page.locator("#dry-count")).to_have_text("1")
    await page.get_by_role("button", name="Yes, purge 1").click()
    await expect(page.locator("#dlq-result")).to_contain_text("Purged 1 dead letter")
    b.assert_clean()


async def test_a_revoked_key_ends_its_session(signed: Browser, keys: StaticKeys) -> None:
    b, page = signed, signed.page
    await page.goto(f"{b.base}/ui/")
    await sign_in(b, "ts_read_secret")
    await expect(page.locator("main h1")).to_have_text("Overview")
    keys.revoked.add("k-read")
    await page.goto(f"{b.base}/ui/tasks")
    await expect(page).to_have_url(f"{b.base}/ui/login?next=/ui/tasks")
    await sign_in(b, "ts_read_secret")
    await expect(page.get_by_role("alert")).to_contain_text("not valid")
    b.expect_refused(401)
    b.assert_clean()
