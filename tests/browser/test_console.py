"""The console in a real Chromium: an operator finds a failing task, reads its traceback,
replays it from the dead letters after a dry run and sees it succeed; removes a dead
consumer; every page loads without console errors and is usable from the keyboard."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import expect

from taskstream.services.watcher.watcher import Watcher
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.handlers import Context
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.browser.conftest import Browser
from tests.ops_helpers import executor


class Broken:
    """A handler that fails (with a traceback) until it is fixed."""

    def __init__(self) -> None:
        self.fixed = False

        async def charge(payload: Any, ctx: Context) -> None:
            if not self.fixed:
                _charge(payload)

        self.handler = charge


def _charge(payload: Any) -> None:
    raise ValueError(f"card declined for order {payload['order']}")


async def submit(b: Browser, body: dict[str, Any]) -> str:
    answer = await b.api.post("/v1/tasks", json=body)
    assert answer.status == 201, await answer.text()
    return str((await answer.json())["id"])


async def test_find_a_failing_task_read_its_traceback_replay_it_and_see_it_succeed(
    browser: Browser, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    b, page = browser, browser.page
    broken = Broken()
    run = executor(config, db, streams, metrics, charge=broken.handler)
    task_id = await submit(
        b, {"type": "charge", "payload": {"order": 42}, "max_attempts": 1, "priority": "high"}
    )
    await submit(b, {"type": "noop", "payload": {"hello": "world"}})
    await run.run_once()

    # Find it by id, from the keyboard.
    await b.goto("/ui/tasks")
    await b.shot("tasks")
    await page.get_by_label("Task id or idempotency key").fill(task_id)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{b.base}/ui/tasks/{task_id}")
    await expect(page.locator("#task-status")).to_have_text("dead")
    await expect(page.locator("#timeline")).to_contain_text("card declined for order 42")

    # Its traceback, opened with the keyboard.
    traceback = page.locator("#timeline pre.traceback")
    await expect(traceback).to_be_hidden()
    await page.get_by_text("Traceback", exact=True).focus()
    await page.keyboard.press("Enter")
    await expect(traceback).to_be_visible()
    await expect(traceback).to_contain_text("in _charge")
    await expect(traceback).to_contain_text("ValueError")
    # The payload stays hidden until asked (htmx puts it in place).
    await expect(page.locator("pre.payload")).to_have_count(0)
    await page.get_by_role("link", name="Show payload").click()
    await expect(page.locator("pre.payload")).to_contain_text('"order": 42')
    await b.shot("task")

    # Among the dead letters: select it, dry run first.
    await page.get_by_role("link", name="Dead letters").first.click()
    row = page.locator(f"tr[data-task='{task_id}']")
    await expect(row).to_contain_text("charge")
    await expect(row).to_contain_text("attempts_exhausted")
    await b.shot("dead_letters")
    await page.get_by_label(f"Select task {task_id}").check()
    await page.get_by_role("button", name="Replay selected…").click()
    await expect(page.locator("#dry-run")).to_contain_text("would replay 1 dead letter")
    await expect(page.locator("#dry-count")).to_have_text("1")
    await b.shot("dead_letters_dry_run")
    # Nothing changed yet.
    assert (await db.get_task(uuid.UUID(task_id))).status == "dead"  # type: ignore[union-attr]

    broken.fixed = True
    await page.get_by_role("button", name="Yes, replay 1").click()
    await expect(page.locator("#dlq-result")).to_contain_text("Replayed 1 dead letter")
    await expect(page.locator(f"tr[data-task='{task_id}']")).to_have_count(0)

    await run.run_once()
    await b.goto(f"/ui/tasks/{task_id}")
    await expect(page.locator("#task-status")).to_have_text("succeeded")
    await expect(page.locator("#timeline")).to_contain_text("card declined")  # history kept
    b.assert_clean()


async def test_queues_page_removes_a_dead_consumer_and_keeps_a_busy_one(
    browser: Browser, config: Config, db: Database, streams: Streams
) -> None:
    b, page = browser, browser.page
    await submit(b, {"type": "noop"})
    await submit(b, {"type": "noop", "priority": "high"})
    await streams.read("worker-busy", {"default": 1})  # holds the entry, unacknowledged
    [done] = (await streams.read("worker-dead", {"high": 1}))["high"]
    await streams.ack([("high", done.entry_id)])  # holds nothing

    await b.goto("/ui/queues")
    dead = page.locator("tr[data-consumer='worker-dead'][data-priority='high']")
    busy = page.locator("tr[data-consumer='worker-busy'][data-priority='default']")
    await expect(busy).to_contain_text("busy")
    await expect(busy.get_by_role("button")).to_have_count(0)
    await expect(page.locator("#pending")).to_contain_text("worker-busy")
    await b.shot("queues")
    await page.get_by_role("button", name="Remove consumer worker-dead from high").click()
    await expect(page.locator("#queues-notice")).to_contain_text("Removed consumer worker-dead")
    await expect(dead).to_have_count(0)
    assert {(c.name, c.priority) for c in await streams.consumers()} >= {("worker-busy", "default")}
    assert ("worker-dead", "high") not in {(c.name, c.priority) for c in await streams.consumers()}
    b.assert_clean()


async def test_pause_and_resume_a_queue_from_the_queues_page(
    browser: Browser, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    b, page = browser, browser.page
    await b.goto("/ui/queues")
    high = page.locator("#queues tr[data-priority='high']")
    await page.get_by_label("Note for pausing high").fill("deploy in progress")
    await page.get_by_role("button", name="Pause high").click()
    await expect(page.locator("#queues-notice")).to_contain_text("Paused priority high")
    await expect(high.locator(".state")).to_contain_text("paused deploy in progress")
    task_id = await submit(b, {"type": "noop", "priority": "high"})
    await executor(config, db, streams, metrics).run_once()
    assert (await db.get_task(uuid.UUID(task_id))).status == "queued"  # type: ignore[union-attr]
    await b.goto("/ui/")
    await expect(page.locator("#live tr[data-priority='high']")).to_contain_text("paused")
    await b.goto("/ui/queues")
    await page.get_by_label("Task type to pause").fill("payments.charge")
    await page.get_by_role("button", name="Pause type").click()
    await expect(page.locator("#paused-types tr[data-type='payments.charge']")).to_be_visible()
    await b.shot("queues_paused")

    await page.get_by_role("button", name="Resume high").click()
    await expect(page.locator("#queues-notice")).to_contain_text("Resumed priority high")
    await expect(high.locator(".state")).to_contain_text("running")
    await page.get_by_role("button", name="Resume type payments.charge").click()
    await expect(page.locator("#paused-types-none")).to_be_visible()
    await executor(config, db, streams, metrics).run_once()
    assert (await db.get_task(uuid.UUID(task_id))).status == "succeeded"  # type: ignore[union-attr]
    b.assert_clean()


async def test_schedules_pause_with_a_note_trigger_and_resume(browser: Browser) -> None:
    b, page = browser, browser.page
    spec = {"task": {"type": "noop", "priority": "low"}, "cron": "0 3 * * *",
            "timezone": "Europe/Paris"}  # fmt: skip
    answer = await b.api.put("/v1/schedules/nightly-report", json=spec)
    assert answer.status in (200, 201), await answer.text()
    await b.goto("/ui/schedules")
    row = page.locator("tr[data-schedule='nightly-report']")
    await expect(row).to_contain_text("0 3 * * *")
    await expect(row.locator(".state")).to_contain_text("active")
    await page.get_by_label("Note for pausing schedule nightly-report").fill("quarter close")
    await page.get_by_role("button", name="Pause schedule nightly-report").click()
    await expect(page.locator("#schedule-notice")).to_have_text("Paused.")
    await expect(page.locator("#schedule-state")).to_contain_text("paused quarter close")
    await page.get_by_role("button", name="Trigger schedule nightly-report now").click()
    await expect(page.locator("#schedule-notice")).to_contain_text("Triggered: task")
    await expect(page.locator("#runs")).to_contain_text("triggered")
    await b.shot("schedule")
    await page.locator("#runs a").first.click()
    await expect(page.locator("main")).to_contain_text("nightly-report, tick")
    await b.goto("/ui/schedules/nightly-report")
    await page.get_by_role("button", name="Resume schedule nightly-report").click()
    await expect(page.locator("#schedule-state")).to_contain_text("active")
    await b.goto("/ui/schedules")
    await expect(row.locator(".num").last).to_have_text("1")  # triggered once
    await b.shot("schedules")
    b.assert_clean()


async def test_a_workflow_drawn_with_each_steps_state(
    browser: Browser, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    b, page = browser, browser.page
    steps = [
        {"name": "fetch", "type": "noop"},
        {"name": "words", "type": "noop", "depends_on": ["fetch"]},
        {"name": "links", "type": "always_fail", "max_attempts": 1, "depends_on": ["fetch"]},
        {"name": "report", "type": "noop", "depends_on": ["words", "links"]},
    ]
    answer = await b.api.post("/v1/workflows", json={"name": "crawl", "steps": steps})
    assert answer.status == 201, await answer.text()
    workflow_id = (await answer.json())["id"]
    run = executor(config, db, streams, metrics)
    watcher = Watcher(config, db, streams, metrics)
    for _ in range(4):  # a parent's success releases its children; the watcher sends them
        await watcher.run_once()
        await run.run_once()
    await b.goto("/ui/workflows")
    row = page.locator(f"tr[data-workflow='{workflow_id}']")
    await expect(row).to_contain_text("failed")
    await row.get_by_role("link").click()
    dag = page.locator("#dag")
    await expect(dag.locator("[data-step='fetch']")).to_have_class("node s-succeeded")
    await expect(dag.locator("[data-step='words']")).to_have_class("node s-succeeded")
    await expect(dag.locator("[data-step='links']")).to_have_class("node s-dead")
    await expect(dag.locator("[data-step='report']")).to_have_class("node s-cancelled")
    assert await dag.locator("path.edge").count() == 4
    await expect(page.locator("#steps tr[data-step='report']")).to_contain_text("words, links")
    await b.shot("workflow")
    await dag.locator("[data-step='links']").click()
    await expect(page.locator("#task-status")).to_have_text("dead")
    await expect(page.locator("main")).to_contain_text(workflow_id)
    b.assert_clean()


async def test_every_page_loads_without_console_errors_and_the_overview_refreshes(
    browser: Browser, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    b, page = browser, browser.page
    task_id = await submit(b, {"type": "always_fail", "max_attempts": 1})
    await executor(config, db, streams, metrics).run_once()
    for path in (
        "/ui/",
        "/ui/tasks",
        "/ui/tasks?status=dead&priority=default",
        f"/ui/tasks/{task_id}",
        f"/ui/tasks/{task_id}?show=payload",
        "/ui/dlq",
        "/ui/dlq?reason=attempts_exhausted",
        "/ui/queues",
        "/ui/schedules",
        "/ui/workflows",
        "/ui/login",
    ):
        await b.goto(path)
        await expect(page.locator("main h1")).to_be_visible()
    # The overview's live part is refreshed in place by htmx.
    await b.goto("/ui/")
    await expect(page.locator("[data-figure='dead']")).to_have_text("1")
    async with page.expect_response(lambda r: r.url.endswith("/ui/overview/live")):
        pass
    await submit(b, {"type": "always_fail", "max_attempts": 1})
    await executor(config, db, streams, metrics).run_once()
    await expect(page.locator("[data-figure='dead']")).to_have_text("2")
    await expect(page.locator("#live")).to_have_attribute("aria-live", "polite")
    await b.shot("overview")
    b.assert_clean()


async def test_pages_are_labelled_and_reachable_from_the_keyboard(browser: Browser) -> None:
    b, page = browser, browser.page
    for path in ("/ui/", "/ui/tasks", "/ui/dlq", "/ui/queues"):
        await b.goto(path)
        # The first Tab stop skips to the content; landmarks are there.
        await page.keyboard.press("Tab")
        await expect(page.locator(".skip")).to_be_focused()
        for landmark in ("banner", "navigation", "main"):
            await expect(page.get_by_role(landmark).first).to_be_attached()
        # Every visible field has a label.
        unlabelled = await page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select')]
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                .map(e => e.name)"""
        )
        assert unlabelled == [], (path, unlabelled)
    # The current page is marked in the navigation.
    await expect(page.get_by_role("link", name="Queues and consumers")).to_have_attribute(
        "aria-current", "page"
    )
    b.assert_clean()
