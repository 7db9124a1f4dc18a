"""The only module that talks to Redis (redis-py with hiredis).

One stream per priority and one consumer group of executors. An entry carries only the task id
and the attempt (the fencing token), plus the trace context: the task itself lives in Postgres.
Services call typed methods; every key comes from ``shared.keys``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.config import PRIORITIES
from shared.errors import StoreUnavailable
from shared.keys import GROUP, Keys
from shared.models import Delivery

LUA_DIR = Path(__file__).resolve().parent / "lua"
PUBLISH_CHUNK = 1000  # entries per publish script call (it runs atomically: keep it short)
STREAM_INDEX = {p: i + 1 for i, p in enumerate(PRIORITIES)}  # KEYS index in publish.lua

# What "Redis is down" looks like from redis-py.
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
# Either store unreachable, as seen by a service's loop.
STORES_DOWN: tuple[type[BaseException], ...] = (StoreUnavailable, *UNAVAILABLE)


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


class Streams:
    """Typed operations on the priority streams of one namespace."""

    def __init__(self, client: aioredis.Redis, keys: Keys, url: str = "") -> None:
        self._r = client
        self.keys = keys
        self.url = url
        self._scripts: dict[str, Any] = {}

    @classmethod
    def connect(cls, url: str, keys: Keys, *, max_connections: int = 32) -> Streams:
        client = aioredis.Redis.from_url(
            url,
            max_connections=max_connections,
            socket_connect_timeout=2,
            health_check_interval=0,
            decode_responses=False,
        )
        return cls(client, keys, url)

    async def close(self) -> None:
        await self._r.aclose()

    async def ping(self) -> None:
        try:
            await self._r.ping()
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis is not reachable: {exc}") from exc

    async def ensure_groups(self) -> None:
        """Create every stream with the executors' group (idempotent), and the epoch key."""
        pipe = self._r.pipeline(transaction=False)
        for key in self.keys.streams.values():
            pipe.xgroup_create(key, GROUP, id="0", mkstream=True)
        pipe.set(self.keys.epoch, uuid.uuid4().hex, nx=True)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and "BUSYGROUP" not in str(result):
                raise result

    async def epoch(self) -> str | None:
        """The current epoch (set with the groups); None when Redis lost it."""
        value = await self._r.get(self.keys.epoch)
        return _s(value) if value is not None else None

    async def claim_repair(self, epoch: str, ttl_s: int = 86_400) -> bool:
        """True for exactly one caller per epoch: that one re-publishes after a loss."""
        return bool(await self._r.set(self.keys.repaired(epoch), "1", nx=True, ex=ttl_s))

    async def delivery_marks(self) -> dict[str, DeliveryMark]:
        """Per priority: whether the group exists and how far it has delivered."""
        pipe = self._r.pipeline(transaction=False)
        for key in self.keys.streams.values():
            pipe.xinfo_stream(key)
            pipe.xinfo_groups(key)
        replies = await pipe.execute(raise_on_error=False)
        marks: dict[str, DeliveryMark] = {}
        for i, p in enumerate(PRIORITIES):
            stream, groups = replies[2 * i], replies[2 * i + 1]
            group = None
            if not isinstance(groups, BaseException):
                group = next((g for g in groups if _s(g["name"]) == GROUP), None)
            if isinstance(stream, BaseException) or group is None:
                marks[p] = DeliveryMark(exists=False, last_delivered_ms=0, all_delivered=False)
                continue
            delivered = _s(group["last-delivered-id"])
            generated = _s(stream["last-generated-id"])
            marks[p] = DeliveryMark(
                exists=True,
                last_delivered_ms=int(delivered.split("-")[0]),
                all_delivered=_id_tuple(delivered) >= _id_tuple(generated),
            )
        return marks

    async def publish(self, entries: Sequence[Publish]) -> list[str]:
        """Add one entry per task to its priority's stream; returns the entry ids in order.

        One script call per ``PUBLISH_CHUNK`` entries (``lua/publish.lua``): a single command
        to pack and parse, where a pipeline of XADDs costs tens of microseconds each in the
        client.
        """
        ids: list[str] = []
        script = self._script("publish")
        keys = list(self.keys.streams.values())
        try:
            for start in range(0, len(entries), PUBLISH_CHUNK):
                args: list[str | int] = []
                for e in entries[start : start + PUBLISH_CHUNK]:
                    args += (STREAM_INDEX[e.priority], str(e.task_id), e.attempt,
                             e.trace_context or "")  # fmt: skip
                ids.extend(i.decode() for i in await script(keys=keys, args=args))
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis is not reachable: {exc}") from exc
        return ids

    async def read(
        self, consumer: str, counts: Mapping[str, int]
    ) -> dict[str, list[Delivery | BadEntry]]:
        """Read up to ``counts[priority]`` new entries from each stream, without blocking
        (one pipelined round trip). Recreates missing groups (Redis lost its data) and
        returns nothing for that call."""
        wanted = [(p, n) for p, n in counts.items() if n > 0]
        if not wanted:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for p, n in wanted:
            pipe.xreadgroup(GROUP, consumer, {self.keys.stream(p): ">"}, count=n)
        replies = await pipe.execute(raise_on_error=False)
        out: dict[str, list[Delivery | BadEntry]] = {}
        for (p, _), reply in zip(wanted, replies, strict=True):
            if isinstance(reply, ResponseError):
                if _lost(reply):
                    await self.ensure_groups()
                    continue
                raise reply
            if isinstance(reply, BaseException):
                raise reply
            out[p] = list(self._decode(reply))
        return out

    async def wait(self, consumer: str, block_ms: int, count: int = 1) -> list[Delivery | BadEntry]:
        """Block up to ``block_ms`` until any stream has a new entry; returns at most ``count``
        entries per stream (a backlog is then read by weight)."""
        streams: dict[Any, Any] = {key: ">" for key in self.keys.streams.values()}
        try:
            reply = await self._r.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
        except ResponseError as exc:
            if not _lost(exc):
                raise
            await self.ensure_groups()
            return []
        return list(self._decode(reply))

    async def read_own(self, consumer: str, count: int) -> list[Delivery | BadEntry]:
        """This consumer's own pending entries (after a restart under the same name)."""
        out: list[Delivery | BadEntry] = []
        for key in self.keys.streams.values():
            start = "0"
            while True:
                try:
                    streams: dict[Any, Any] = {key: start}
                    reply = await self._r.xreadgroup(GROUP, consumer, streams, count=count)
                except ResponseError as exc:
                    if not _lost(exc):
                        raise
                    await self.ensure_groups()
                    break
                batch = list(self._decode(reply))
                if not batch:
                    break
                out.extend(batch)
                start = batch[-1].entry_id
        return out

    async def ack(self, entries: Iterable[tuple[str, str]]) -> int:
        """XACK ``(priority, entry_id)`` pairs, one command per stream in one round trip."""
        by_stream: dict[str, list[str]] = {}
        for priority, entry_id in entries:
            by_stream.setdefault(self.keys.stream(priority), []).append(entry_id)
        if not by_stream:
            return 0
        pipe = self._r.pipeline(transaction=False)
        for key, ids in by_stream.items():
            pipe.xack(key, GROUP, *ids)
        acked = 0
        for reply in await pipe.execute(raise_on_error=False):
            if isinstance(reply, ResponseError) and "NOGROUP" in str(reply):
                continue  # Redis lost the group: those entries are gone already
            if isinstance(reply, BaseException):
                raise reply
            acked += int(reply)
        return acked

    async def delivery_counts(
        self, consumer: str, entries: Sequence[Delivery]
    ) -> dict[tuple[str, str], int]:
        """Times each of this consumer's pending entries was delivered (XPENDING), by
        ``(priority, entry_id)`` (entry ids are unique per stream only)."""
        by_priority: dict[str, list[str]] = {}
        for d in entries:
            by_priority.setdefault(d.priority, []).append(d.entry_id)
        pipe = self._r.pipeline(transaction=False)
        for priority, ids in by_priority.items():
            pipe.xpending_range(
                self.keys.stream(priority),
                GROUP,
                min=min(ids, key=_id_tuple),
                max=max(ids, key=_id_tuple),
                count=len(ids) * 2 + 100,
                consumername=consumer,
            )
        counts: dict[tuple[str, str], int] = {}
        for priority, reply in zip(by_priority, await pipe.execute(), strict=True):
            for item in reply:
                counts[(priority, _s(item["message_id"]))] = int(item["times_delivered"])
        return counts

    async def pending_count(self) -> dict[str, int]:
        """Pending (delivered, not acknowledged) entries per priority."""
        pipe = self._r.pipeline(transaction=False)
        for key in self.keys.streams.values():
            pipe.xpending(key, GROUP)
        replies = await pipe.execute(raise_on_error=False)
        out: dict[str, int] = {}
        for p, reply in zip(PRIORITIES, replies, strict=True):
            out[p] = 0 if isinstance(reply, BaseException) else int(reply["pending"])
        return out

    async def lengths(self) -> dict[str, int]:
        pipe = self._r.pipeline(transaction=False)
        for key in self.keys.streams.values():
            pipe.xlen(key)
        return {p: int(n) for p, n in zip(PRIORITIES, await pipe.execute(), strict=True)}

    async def entries(self, priority: str) -> list[tuple[str, dict[str, str]]]:
        """Every entry of one stream (tests and operators; not for hot paths)."""
        reply: Any = await self._r.xrange(self.keys.stream(priority))
        return [(i.decode(), _strs(f)) for i, f in reply]

    async def delete_namespace(self) -> None:
        """Delete every key of this namespace (tests clean up what they own, nothing else)."""
        keys = [k async for k in self._r.scan_iter(match=_glob_escape(self.keys.prefix) + ":*")]
        if keys:
            await self._r.delete(*keys)

    async def reclaim(
        self, priority: str, consumer: str, min_idle_ms: int, cursor: str, count: int
    ) -> Reclaimed:
        """XAUTOCLAIM entries idle at least ``min_idle_ms`` to ``consumer``, from ``cursor``.

        Redis 7 lists the ids of entries deleted from the stream (and drops them from the
        pending list itself); Redis 6.2 returns them as nil entries and keeps them pending, so
        they are found through XPENDING (just claimed, yet not returned) and acknowledged here.
        """
        key = self.keys.stream(priority)
        reply = await self._r.xautoclaim(key, GROUP, consumer, min_idle_ms, cursor, count=count)
        claimed = reply[1]
        raw = [(i, f) for i, f in claimed if i is not None]
        nils = len(claimed) - len(raw)
        deleted = [_s(i) for i in reply[2]] if len(reply) > 2 else []
        entries = list(self._decode([(key.encode(), raw)]))
        deliveries: dict[str, int] = {}
        if claimed:
            low = _s(raw[0][0]) if raw and not nils else ("-" if cursor == "0-0" else cursor)
            info = await self._r.xpending_range(
                key, GROUP, min=low, max="+", count=2 * len(claimed) + 100, consumername=consumer
            )
            seen = {e.entry_id for e in entries}
            gone: list[str] = []
            for item in info:
                eid = _s(item["message_id"])  # type: ignore[arg-type]
                if eid in seen:
                    deliveries[eid] = int(item["times_delivered"])
                elif nils and int(item["time_since_delivered"]) < 1000:
                    gone.append(eid)  # claimed just now, yet no entry came back: deleted
            if gone:  # Redis 6.2: deleted entries stay pending until acknowledged
                await self._r.xack(key, GROUP, *gone)
                deleted.extend(gone)
        return Reclaimed(
            cursor=_s(reply[0]), entries=entries, deliveries=deliveries, deleted=deleted
        )

    async def are_pending(self, entries: Sequence[tuple[str, str]]) -> dict[tuple[str, str], bool]:
        """Whether each ``(priority, entry_id)`` is in the group's pending list."""
        if not entries:
            return {}
        pipe = self._r.pipeline(transaction=False)
        for priority, entry_id in entries:
            pipe.xpending_range(self.keys.stream(priority), GROUP, entry_id, entry_id, 1)
        replies = await pipe.execute(raise_on_error=False)
        return {
            entry: not isinstance(reply, BaseException) and bool(reply)
            for entry, reply in zip(entries, replies, strict=True)
        }

    async def trim_acknowledged(self, priority: str) -> int:
        """Delete the entries every group has delivered and acknowledged (XTRIM MINID, exact).

        The cut is the smallest of each group's oldest pending id and the id after its last
        delivered one, so nothing unacknowledged or undelivered is ever removed; delivery only
        moves forward, so a concurrent read cannot slip under it. Returns entries removed.
        """
        key = self.keys.stream(priority)
        try:
            groups = await self._r.xinfo_groups(key)
        except ResponseError:
            return 0  # no stream yet
        if not groups:
            return 0
        pipe = self._r.pipeline(transaction=False)
        for g in groups:
            pipe.xpending(key, g["name"])
        cut: tuple[int, int] | None = None
        for g, summary in zip(groups, await pipe.execute(), strict=True):
            ms, seq = _id_tuple(_s(g["last-delivered-id"]))
            limit = (ms, seq + 1)
            if int(summary["pending"]) > 0:
                limit = min(limit, _id_tuple(_s(summary["min"])))
            cut = limit if cut is None else min(cut, limit)
        if cut is None or cut <= (0, 1):
            return 0
        return int(await self._r.xtrim(key, minid=f"{cut[0]}-{cut[1]}", approximate=False))

    async def consumers(self) -> list[ConsumerInfo]:
        """Every consumer of the group on every stream."""
        pipe = self._r.pipeline(transaction=False)
        for key in self.keys.streams.values():
            pipe.xinfo_consumers(key, GROUP)
        out: list[ConsumerInfo] = []
        for p, reply in zip(PRIORITIES, await pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, BaseException):
                continue
            out.extend(
                ConsumerInfo(
                    priority=p,
                    name=_s(c["name"]),
                    pending=int(c["pending"]),
                    idle_ms=int(c["idle"]),
                )
                for c in reply
            )
        return out

    async def remove_idle_consumer(self, priority: str, name: str, min_idle_ms: int) -> bool:
        """Remove ``name`` from the group on ``priority``'s stream if it has nothing pending and
        has been idle ``min_idle_ms``; atomic (a Lua script), so no pending entry is lost."""
        removed = await self._script("remove_idle_consumer")(
            keys=[self.keys.stream(priority)], args=[GROUP, name, min_idle_ms]
        )
        return bool(removed)

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
                    yield Delivery(
                        priority=priority,
                        entry_id=eid,
                        task_id=uuid.UUID(fields[b"t"].decode()),
                        attempt=int(fields[b"a"]),
                        trace_context=fields[b"tp"].decode() if b"tp" in fields else None,
                    )
                except (KeyError, ValueError, UnicodeDecodeError):
                    yield BadEntry(priority=priority, entry_id=eid, fields=_strs(fields))

    async def stream_stats(self, count_cap: int = 100_000) -> list[StreamStats]:
        """Per priority: length, the group's lag, pending and consumers counts, the oldest
        pending entry (XPENDING) and the first undelivered one, with Redis's clock.

        Two pipelined round trips; when Redis does not report ``lag`` (6.2, or NULL after a
        deletion inside the undelivered range) the entries after ``last-delivered-id`` are
        counted with XRANGE, up to ``count_cap``.
        """
        keys = list(self.keys.streams.values())
        with _store_errors():
            pipe = self._r.pipeline(transaction=False)
            pipe.time()
            for key in keys:
                pipe.xlen(key)
                pipe.xinfo_groups(key)
                pipe.xpending_range(key, GROUP, "-", "+", 1)
            replies = await pipe.execute(raise_on_error=False)
            seconds, micros = replies[0]
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            groups: list[dict[str, Any] | None] = []
            for i in range(len(keys)):
                info, oldest = replies[2 + 3 * i], replies[3 + 3 * i]
                group = None
                if not isinstance(info, BaseException):
                    group = next((g for g in info if _s(g["name"]) == GROUP), None)
                groups.append(
                    None
                    if group is None
                    else {**group, "oldest": [] if isinstance(oldest, BaseException) else oldest}
                )
            pipe = self._r.pipeline(transaction=False)
            for key, group in zip(keys, groups, strict=True):
                if group is not None:
                    pipe.xrange(key, "(" + _s(group["last-delivered-id"]), "+", count=1)
            firsts = iter(await pipe.execute())
            out: list[StreamStats] = []
            for i, (p, key, group) in enumerate(zip(PRIORITIES, keys, groups, strict=True)):
                length = int(replies[1 + 3 * i])
                if group is None:
                    out.append(StreamStats(priority=p, exists=False, length=length, now_ms=now_ms))
                    continue
                first = next(firsts)
                delivered = _s(group["last-delivered-id"])
                lag, source = group.get("lag"), "xinfo"
                if lag is None:
                    lag, capped = await self._count_after(key, delivered, count_cap)
                    source = "counted_capped" if capped else "counted"
                oldest = group["oldest"][0] if group["oldest"] else None
                out.append(
                    StreamStats(
                        priority=p,
                        exists=True,
                        length=length,
                        lag=int(lag),
                        lag_source=source,
                        pending=int(group["pending"]),
                        consumers=int(group["consumers"]),
                        oldest_pending_id=_s(oldest["message_id"]) if oldest else None,
                        oldest_pending_idle_ms=(
                            int(oldest["time_since_delivered"]) if oldest else None
                        ),
                        first_undelivered_id=_s(first[0][0]) if first else None,
                        now_ms=now_ms,
                    )
                )
        return out

    async def _count_after(self, key: str, entry_id: str, cap: int) -> tuple[int, bool]:
        """Entries after ``entry_id`` (at most ``cap``), and whether there are more."""
        n, start = 0, "(" + entry_id
        while n < cap:
            batch: Any = await self._r.xrange(key, start, "+", count=min(1000, cap - n))
            if not batch:
                return n, False
            n += len(batch)
            start = "(" + _s(batch[-1][0])
        return n, bool(await self._r.xrange(key, start, "+", count=1))

    async def pending_entries(
        self,
        priority: str,
        *,
        consumer: str | None = None,
        min_idle_ms: int = 0,
        start: str = "-",
        end: str = "+",
        count: int = 50,
    ) -> list[PendingEntry]:
        """The group's pending entries on one stream, oldest first (XPENDING's extended form,
        with IDLE and an optional consumer), each read back from the stream (one pipelined
        XRANGE id id each) for its task id and attempt; those are null when the entry was
        deleted from the stream or does not decode."""
        key = self.keys.stream(priority)
        with _store_errors():
            try:
                info = await self._r.xpending_range(
                    key, GROUP, start, end, count, consumername=consumer, idle=min_idle_ms
                )
            except ResponseError as exc:
                if "NOGROUP" in str(exc) or "no such key" in str(exc):
                    return []
                raise
            if not info:
                return []
            pipe = self._r.pipeline(transaction=False)
            pipe.time()
            for item in info:
                eid = _s(item["message_id"])  # type: ignore[arg-type]
                pipe.xrange(key, eid, eid)
            replies = await pipe.execute()
        seconds, micros = replies[0]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        out: list[PendingEntry] = []
        for item, found in zip(info, replies[1:], strict=True):
            eid = _s(item["message_id"])  # type: ignore[arg-type]
            task_id, attempt = None, None
            if found:
                fields = found[0][1]
                try:
                    task_id, attempt = uuid.UUID(fields[b"t"].decode()), int(fields[b"a"])
                except (KeyError, ValueError, UnicodeDecodeError):
                    task_id, attempt = None, None
            out.append(
                PendingEntry(
                    priority=priority,
                    entry_id=eid,
                    consumer=_s(item["consumer"]),  # type: ignore[arg-type]
                    idle_ms=int(item["time_since_delivered"]),
                    deliveries=int(item["times_delivered"]),
                    age_ms=max(0, now_ms - _id_tuple(eid)[0]),
                    task_id=task_id,
                    attempt=attempt,
                )
            )
        return out


class LeaseExtender:
    """Extends leases from a thread of its own (its own blocking connection), so a handler
    that blocks the event loop with CPU work cannot starve the heartbeat."""

    def __init__(self, url: str, keys: Keys) -> None:
        import redis

        self._r = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._keys = keys

    def extend(self, consumer: str, entries: Iterable[tuple[str, str]]) -> None:
        """XCLAIM … JUSTID with min-idle 0: reset idle time, count no delivery."""
        by_stream: dict[str, list[str]] = {}
        for priority, entry_id in entries:
            by_stream.setdefault(self._keys.stream(priority), []).append(entry_id)
        if not by_stream:
            return
        pipe = self._r.pipeline(transaction=False)
        for key, ids in by_stream.items():
            pipe.xclaim(key, GROUP, consumer, 0, ids, justid=True)  # type: ignore[arg-type]
        pipe.execute()

    def close(self) -> None:
        self._r.close()


def _lost(exc: BaseException) -> bool:
    """The reply Redis gives when a stream or its group vanished (restart, flush, deletion):
    NOGROUP, or UNBLOCKED for a blocked read whose stream was deleted."""
    text = str(exc)
    return "NOGROUP" in text or "UNBLOCKED" in text


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _strs(fields: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


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


def entry_time_ms(entry_id: str) -> int:
    """The millisecond timestamp part of a stream entry id."""
    return _id_tuple(entry_id)[0]


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Turn "Redis could not be reached" into ``StoreUnavailable``."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise StoreUnavailable(f"Redis is not reachable: {exc}") from exc
