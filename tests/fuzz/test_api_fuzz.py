"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis): every route, bounded and
seeded, against a real ingest on the real Postgres and Redis. No input may give a server error,
and the answers must agree with the document (status codes, content types, bodies); inputs the
document allows must not be rejected as invalid. The ingest runs with API keys on, the fuzzer
sending an admin key (and schemathesis checking that a request without it is refused)."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from taskstream.services.ingest import openapi
from taskstream.services.ingest.app import build_app
from taskstream.services.ingest.publisher import Publisher
from taskstream.shared import config as config_mod
from taskstream.shared import db as db_mod
from taskstream.shared import metrics as metrics_mod
from taskstream.shared import ops
from taskstream.shared.db import Database
from taskstream.shared.keys import Keys
from taskstream.shared.streams import Streams
from tests.conftest import REDIS_URL, SERVER_URL

# The dead-letter cursor is opaque (``next_cursor`` of a page): generated as real ones are.
schemathesis.openapi.format(
    "dlq-cursor",
    st.builds(
        ops.encode_cursor,
        st.datetimes(timezones=st.just(dt.UTC), min_value=dt.datetime(2000, 1, 1)),
        st.uuids(),
    ),
)
schema = schemathesis.openapi.from_dict(openapi.spec())
# What JSON Schema cannot say: a replay names exactly one of ids, a non-empty filter, or all;
# a schedule's cron expression, time zone and durations have a grammar of their own; a pause
# names exactly one of a priority and a type. So a body the document allows may still be
# refused (422 naming the field) there.
_GRAMMAR = [schemathesis.checks.positive_data_acceptance]
EXCLUDED = {
    "POST /v1/dlq/replay": _GRAMMAR,
    "PUT /v1/schedules/{name}": _GRAMMAR,
    "POST /v1/queues/pause": _GRAMMAR,
    "POST /v1/queues/resume": _GRAMMAR,
    # A workflow's steps must form a DAG of distinct names (and a step with parents takes no
    # delay): a body the document allows may still be refused, naming the steps.
    "POST /v1/workflows": _GRAMMAR,
}
ADMIN_KEY = "ts_live_" + "fuzz" * 11


@schema.auth()
class _AdminKey:
    """Every generated request carries the admin key (schemathesis knows it is the auth, so
    its own checks send some without it and expect 401)."""

    def get(self, case: Any, ctx: Any) -> str:
        return ADMIN_KEY

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


class Server:
    """A real ingest on its own event loop in a thread (schemathesis calls it over HTTP)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self._started.wait(30), "the fuzzed ingest did not start"

    def stop(self) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        namespace = f"fuzz-{uuid.uuid4().hex[:8]}"
        config = config_mod.load(
            {}, redis_url=REDIS_URL, database_url=self.database_url, namespace=namespace,
            read_block_ms=50, auth_mode="keys",
        )  # fmt: skip
        db = await Database.connect(self.database_url, min_size=1, max_size=4)
        await db.create_api_key("default", ["admin"], name="fuzz", key=ADMIN_KEY)
        streams = Streams.connect(REDIS_URL, Keys(namespace))
        metrics = metrics_mod.noop()
        app = build_app(config, db, streams, metrics, Publisher(streams, metrics, retry_ms=100))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()
        await streams.delete_namespace()
        await streams.close()
        await db.close()


@pytest.fixture(scope="module")
def server(template_db: str) -> Iterator[Server]:
    url = db_mod.with_database(SERVER_URL, f"ts_fuzz_{uuid.uuid4().hex[:10]}")
    asyncio.run(db_mod.create_database(url, template=template_db))
    s = Server(url)
    s.start()
    yield s
    s.stop()
    asyncio.run(db_mod.drop_database(url))


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_gives_a_server_error_or_disagrees_with_the_document(
    case: schemathesis.Case[Any], server: Server
) -> None:
    excluded = EXCLUDED.get(f"{case.method.upper()} {case.path}", [])
    case.call_and_validate(base_url=server.url, excluded_checks=excluded)
