"""The console over plain HTTP (no browser): cookies, CSRF, lookups, filters, errors as
pages, throughput from the streams' counters."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from taskstream.services.ingest.console.session import COOKIE, Sessions
from taskstream.services.ingest.console.throughput import Sample, Throughput
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams
from tests.helpers import api_client

Client = TestClient[Any, Any]


@pytest.fixture
async def client(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> AsyncIterator[Client]:
    await streams.ensure_groups()
    async with api_client(config, db, streams, metrics) as (c, _):
        yield c


async def page(client: Client, path: str, status: int = 200, **kw: Any) -> str:
    answer = await client.get(path, allow_redirects=False, **kw)
    text = await answer.text()
    assert answer.status == status, text[:500]
    if status == 200:
        assert answer.content_type == "text/html"
    return text


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


async def submit(client: Client, **body: Any) -> dict[str, Any]:
    answer = await client.post("/v1/tasks", json={"type": "noop", **body})
    assert answer.status == 201, await answer.text()
    return dict(await answer.json())


async def test_the_session_cookie_is_httponly_strict_and_secure_over_tls(client: Client) -> None:
    answer = await client.get("/ui/")
    cookie = answer.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/ui/"
    assert not cookie["secure"]  # plain HTTP here
    client.session.cookie_jar.clear()
    behind_tls = await client.get("/ui/", headers={"X-Forwarded-Proto": "https"})
    assert behind_tls.cookies[COOKIE]["secure"]
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]


async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    client: Client, db: Database
) -> None:
    task = await submit(client, delay_ms=60_000)
    html = await page(client, f"/ui/tasks/{task['id']}")
    refused = await client.post(f"/ui/tasks/{task['id']}/cancel", data={})
    assert refused.status == 403
    forged = await client.post(f"/ui/tasks/{task['id']}/cancel", data={"csrf": "x" * 43})
    assert forged.status == 403
    assert (await db.get_task(uuid.UUID(task["id"]))).status == "scheduled"  # type: ignore[union-attr]
    done = await client.post(f"/ui/tasks/{task['id']}/cancel", data={"csrf": csrf_of(html)})
    assert done.status == 200 and "Cancelled." in await done.text()
    assert (await db.get_task(uuid.UUID(task["id"]))).status == "cancelled"  # type: ignore[union-attr]
    again = await client.post(f"/ui/tasks/{task['id']}/cancel", data={"csrf": csrf_of(html)})
    assert again.status == 409 and "the task is cancelled" in await again.text()


async def test_a_tampered_cookie_is_a_new_session(client: Client, config: Config) -> None:
    html = await page(client, "/ui/")
    token = csrf_of(html)
    sessions = Sessions("another secret", 60_000)
    client.session.cookie_jar.clear()
    forged = sessions.dump(sessions.new(None))
    answer = await client.get("/ui/", headers={"Cookie": f"{COOKIE}={forged}"})
    assert COOKIE in answer.cookies  # not accepted: a fresh one was issued
    assert csrf_of(await answer.text()) != token


async def test_lookup_by_id_or_idempotency_key(client: Client) -> None:
    task = await submit(client, idempotency_key="order-7")
    for lookup in (task["id"], "order-7"):
        answer = await client.get("/ui/tasks", params={"lookup": lookup}, allow_redirects=False)
        assert (answer.status, answer.headers["Location"]) == (303, f"/ui/tasks/{task['id']}")
    html = await page(client, "/ui/tasks?lookup=nothing-like-it")
    assert "No task has the id or idempotency key" in html


async def test_the_task_list_filters_by_status_type_priority_and_time_and_pages(
    client: Client, config: Config
) -> None:
    made = [await submit(client, type="email", priority="high") for _ in range(3)]
    await submit(client, type="sms")
    html = await page(client, "/ui/tasks?type=email&priority=high")
    assert all(t["id"] in html for t in made) and "sms" not in html.split("<tbody>")[1]
    # Before the first of them: none; from it on: all three.
    first = dt.datetime.fromisoformat(made[0]["created_at"])
    before = (first - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    html = await page(client, f"/ui/tasks?type=email&until={before}")
    assert "No tasks match." in html
    html = await page(client, f"/ui/tasks?type=email&since={before}")
    assert all(t["id"] in html for t in made)
    await page(client, "/ui/tasks?status=bogus", 400)
    await page(client, "/ui/tasks?since=yesterday", 400)


async def test_unknown_task_and_bad_id_are_pages_not_json(client: Client) -> None:
    html = await page(client, f"/ui/tasks/{uuid.uuid4()}", 404)
    assert "<html" in html and "There is no task" in html
    await page(client, "/ui/no-such-page", 404)


async def test_dlq_selection_needs_a_choice(client: Client) -> None:
    html = await page(client, "/ui/dlq")
    answer = await client.post(
        "/ui/dlq/preview", data={"csrf": csrf_of(html), "op": "replay:selected"}
    )
    assert answer.status == 400 and "Select at least one" in await answer.text()


async def test_login_goes_back_only_to_a_console_page(client: Client) -> None:
    from taskstream.services.ingest.console.login import _next

    assert _next("/ui/dlq?x=1") == "/ui/dlq?x=1"
    for outside in ("https://evil.example/", "//evil.example/ui/", "/v1/tasks", None):
        assert _next(outside) == "/ui/"


async def test_overview_shows_the_queue_figures(client: Client, streams: Streams) -> None:
    await submit(client, priority="low")
    html = await page(client, "/ui/overview/live")
    assert 'data-priority="low"' in html and 'aria-live="polite"' in html


async def test_throughput_from_the_stream_counters(
    client: Client, streams: Streams, config: Config
) -> None:
    sampler = Throughput(streams, 1000)
    await submit(client)
    await streams.read("reader", {"default": 1})
    first = await sampler.run_once(now=1_000_000.0)
    assert first is not None and (first.added["default"], first.read["default"]) == (1, 1)
    for _ in range(3):
        await submit(client)
    await streams.read("reader", {"default": 2})
    await sampler.run_once(now=1_000_010.0)
    [minute] = sampler.minutes(1, now=1_000_010.0)
    assert (minute.added, minute.delivered, minute.delivered_by_priority["default"]) == (3, 2, 2)
    assert sampler.recent_rate() == (0.3, 0.2)


def test_throughput_skips_a_counter_that_went_back() -> None:
    sampler = Throughput(None, 1000)  # type: ignore[arg-type]
    counts = [(10, 5), (3, 1), (8, 4)]  # Redis restarted between the first two
    for i, (added, read) in enumerate(counts):
        sampler._samples.append(
            Sample(at=600.0 + i, added=dict.fromkeys(PRIORITIES, added) | {"low": None},
                   read={"default": read} | dict.fromkeys(("critical", "high", "low"), None))
        )  # fmt: skip
    [minute] = sampler.minutes(1, now=602.0)
    assert (minute.added, minute.delivered) == (3 * 5, 3)


async def test_removing_a_busy_consumer_keeps_it(
    client: Client, streams: Streams, config: Config
) -> None:
    await submit(client)
    await streams.read("busy-1", {"default": 1})
    html = await page(client, "/ui/queues")
    answer = await client.post(
        "/ui/queues/consumers/remove",
        data={"csrf": csrf_of(html), "priority": "default", "name": "busy-1"},
    )
    assert answer.status == 409 and "Kept consumer busy-1" in await answer.text()
    assert "busy-1" in {c.name for c in await streams.consumers()}


async def test_a_filtered_page_walks_a_bounded_stretch_and_says_where_to_go_on(
    client: Client, db: Database
) -> None:
    rare = await submit(client, type="rare")
    common = [await submit(client, type="common") for _ in range(6)]
    # Looking at 4 tasks from the newest: none is rare; go on from the oldest looked at.
    found, further = await db.list_tasks_bounded(
        status=None, type="rare", priority=None, after=None, limit=2, since=None, scan=4
    )
    assert found == [] and further == uuid.UUID(common[2]["id"])
    found, further = await db.list_tasks_bounded(
        status=None, type="rare", priority=None, after=further, limit=2, since=None, scan=4
    )
    assert [str(t.id) for t in found] == [rare["id"]] and further is None  # the range ended
    # A full page needs no continuation.
    found, further = await db.list_tasks_bounded(
        status=None, type="common", priority=None, after=None, limit=2, since=None, scan=4
    )
    assert [str(t.id) for t in found] == [common[5]["id"], common[4]["id"]] and further is None


async def test_the_task_page_shows_the_result(
    client: Client, config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    from tests.ops_helpers import executor

    async def charge(payload: Any, ctx: Any) -> dict[str, int]:
        return {"charged": 4200}

    task = await submit(client, type="charge")
    await executor(config, db, streams, metrics, charge=charge).run_once()
    html = await page(client, f"/ui/tasks/{task['id']}")
    assert 'id="result-h"' in html and "&#34;charged&#34;: 4200" in html
    waiting = await submit(client, delay_ms=60_000)
    assert 'id="result-h"' not in await page(client, f"/ui/tasks/{waiting['id']}")


async def test_a_store_outage_while_checking_a_session_is_an_html_503(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    from taskstream.services.ingest.console.session import Principal
    from taskstream.shared.errors import StoreUnavailable

    class Flaky:
        required = True
        down = False

        async def sign_in(self, api_key: str) -> Principal | None:
            return Principal(name="op", key_id="k", scopes=frozenset({"ops:read"}))

        async def still_valid(self, principal: Principal) -> bool:
            if self.down:
                raise StoreUnavailable("Postgres is not reachable")
            return True

    access = Flaky()
    async with api_client(config, db, streams, metrics, console_access=access) as (c, _):
        login = await page(c, "/ui/login")
        signed = await c.post(
            "/ui/login", data={"csrf": csrf_of(login), "api_key": "k", "next": "/ui/"}
        )
        assert signed.status == 200 and "Overview" in await signed.text()
        access.down = True
        answer = await c.get("/ui/")
        assert answer.status == 503 and answer.content_type == "text/html"
        assert "Postgres is not reachable" in await answer.text()


async def test_a_key_lookup_finds_the_default_tenants_then_any_tenants_for_an_admin(
    config: Config, db: Database, streams: Streams, metrics: Metrics
) -> None:
    from taskstream.shared import config as config_mod

    keyed = config_mod.replace(config, auth_mode="keys", api_key_cache_ms=0)
    created = await db.create_api_key("acme", ["tasks:write"])
    assert created is not None
    async with api_client(keyed, db, streams, metrics) as (c, _):
        answer = await c.post(
            "/v1/tasks",
            json={"type": "noop", "idempotency_key": "order-9"},
            headers={"Authorization": f"Bearer {created.key}"},
        )
        task_id = uuid.UUID((await answer.json())["id"])
    assert await db.task_of_idempotency_key("order-9") == task_id  # an admin: any tenant's
    assert await db.task_of_idempotency_key("order-9", "acme") == task_id
    assert await db.task_of_idempotency_key("order-9", "globex") is None
