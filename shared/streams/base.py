"""Redis access shared by the operation families: the client, entry types. Every public
coroutine method of every family goes through the error boundary (``boundary``)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any, Self

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from taskstream.shared.domain import PRIORITIES, Delivery
from taskstream.shared.keys import GROUP, Keys
from taskstream.shared.streams.boundary import wrap_public

LUA_DIR = Path(str(files("taskstream.shared") / "lua"))  # package data


MAX_ATTEMPT = 2**31 - 1
PUBLISH_CHUNK = 1000  # entries per publish script call (it runs atomically: keep it short)


STREAM_INDEX = {p: i + 1 for i, p in enumerate(PRIORITIES)}  # KEYS index in publish.lua


log = logging.getLogger(__name__)


class BadEntry(msgspec.Struct, frozen=True, kw_only=True):
    """A stream entry that does not decode as a delivery."""

    priority: str
    entry_id: str
    fields: dict[str, str]


class DeliveryMark(msgspec.Struct, frozen=True, kw_only=True):
    """How far the executors' group has read one stream."""

    exists: bool  # the stream and its group exist
    last_delivered_ms: int  # time part of the last delivered entry id (0: none)
    all_delivered: bool  # nothing in the stream is waiting for its first delivery


class Reclaimed(msgspec.Struct, frozen=True, kw_only=True):
    """One XAUTOCLAIM step on one stream."""

    cursor: str  # "0-0" when the sweep is complete
    entries: list[Delivery | BadEntry]
    deliveries: dict[str, int]  # entry id → times delivered (this claim included)
    deleted: list[str]  # ids of entries gone from the stream (acknowledged for Redis 6.2)


class ConsumerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One consumer of the executors' group on one stream (XINFO CONSUMERS)."""

    priority: str
    name: str
    pending: int
    idle_ms: int


class Publish(msgspec.Struct, frozen=True, kw_only=True):
    """One entry to add: a task's attempt on its priority's stream."""

    priority: str
    task_id: uuid.UUID
    attempt: int
    trace_context: str | None = None
    tenant: str | None = None  # set: it counts toward its tenant's fair share


class StreamStats(msgspec.Struct, frozen=True, kw_only=True):
    """One stream and the executors' group on it (``Streams.stream_stats``).

    ``lag_source``: ``xinfo`` (XINFO GROUPS reported it, Redis ≥ 7), ``counted`` (entries after
    ``last-delivered-id``), ``counted_capped`` (the count stopped at its cap: a lower bound), or
    ``none`` (no group). ``now_ms`` is Redis's clock, to age entry ids against.
    """

    priority: str
    exists: bool
    length: int
    now_ms: int
    lag: int | None = None
    lag_source: str = "none"
    pending: int = 0
    consumers: int = 0
    oldest_pending_id: str | None = None
    oldest_pending_idle_ms: int | None = None
    first_undelivered_id: str | None = None


class PendingEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One pending entry (XPENDING, extended form) and what its stream entry carries.
    ``age_ms`` is how long ago it was added to the stream (Redis's clock)."""

    priority: str
    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int
    age_ms: int
    task_id: uuid.UUID | None
    attempt: int | None


class Base:
    """One namespace's streams on one client; the operation families below add to it."""

    def __init__(self, client: aioredis.Redis, keys: Keys, url: str = "") -> None:
        self._r = client
        self.keys = keys
        self.url = url
        self.timeout_s = 5.0
        self._scripts: dict[str, Any] = {}

    @classmethod
    def connect(
        cls, url: str, keys: Keys, *, max_connections: int = 32, timeout_s: float = 5.0
    ) -> Self:
        """A client with a socket timeout (redis-py's asyncio client has none by default:
        a black-holed host would hang every command until TCP gives up)."""
        client = aioredis.Redis.from_url(
            url,
            max_connections=max_connections,
            socket_connect_timeout=min(2.0, timeout_s),
            socket_timeout=timeout_s,
            socket_keepalive=True,
            health_check_interval=0,
            decode_responses=False,
        )
        streams = cls(client, keys, url)
        streams.timeout_s = timeout_s
        return streams

    async def close(self) -> None:
        await self._r.aclose()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        wrap_public(cls)

    async def ping(self) -> None:
        await self._r.ping()

    async def ensure_groups(self) -> None:
        """Create every stream with the executors' group (idempotent), and the epoch key."""
        await self._ensure_groups()

    async def _ensure_groups(self) -> None:
        pipe = self._r.pipeline(transaction=False)
        for key in self.keys.streams.values():
            pipe.xgroup_create(key, GROUP, id="0", mkstream=True)
        pipe.set(self.keys.epoch, uuid.uuid4().hex, nx=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                raise result

    async def _recreate_groups(self) -> None:
        """After Redis lost a stream or the group (the boundary calls this before raising
        ``DataLost``): best effort, the next call tries again."""
        try:
            await self._ensure_groups()
        except Exception as exc:  # Redis unreachable or refusing: the caller retries
            log.warning("cannot recreate the groups: %r", exc, extra={"event": "streams.regroup"})

    def _script(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            source = (LUA_DIR / f"{name}.lua").read_text()
            script = self._scripts[name] = self._r.register_script(source)
        return script

    def _decode(self, reply: Any) -> Iterable[Delivery | BadEntry]:
        for stream, items in reply or ():
            priority = self.keys.priority_of(stream.decode())
            for entry_id, fields in items:
                eid = entry_id.decode()
                if fields is None:  # deleted entry (Redis 6.2 replies nil for it)
                    continue
                try:
                    attempt = int(fields[b"a"])
                    if not 1 <= attempt <= MAX_ATTEMPT:  # Postgres's integer, the column's
                        raise ValueError(f"attempt {attempt} out of range")
                    yield Delivery(
                        priority=priority,
                        entry_id=eid,
                        task_id=uuid.UUID(fields[b"t"].decode()),
                        attempt=attempt,
                        trace_context=fields[b"tp"].decode() if b"tp" in fields else None,
                        tenant=fields[b"tn"].decode() if b"tn" in fields else None,
                    )
                except (KeyError, ValueError, UnicodeDecodeError):
                    yield BadEntry(priority=priority, entry_id=eid, fields=_strs(fields))


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _strs(fields: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def entry_time_ms(entry_id: str) -> int:
    """The millisecond timestamp part of a stream entry id."""
    return _id_tuple(entry_id)[0]


wrap_public(Base)
