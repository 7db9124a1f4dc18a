"""What producers and executors do: publish, read, wait, take back, ack."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.exceptions import ResponseError

from taskstream.shared.domain import Delivery
from taskstream.shared.keys import GROUP
from taskstream.shared.streams.base import (
    PUBLISH_CHUNK,
    STREAM_INDEX,
    BadEntry,
    Base,
    Publish,
    _id_tuple,
    _s,
)
from taskstream.shared.streams.boundary import is_lost


class DeliveryOps(Base):
    """What producers and executors do: publish, read, wait, take back, ack."""

    async def publish(self, entries: Sequence[Publish]) -> int:
        """Add one entry per task to its priority's stream; returns how many were added.

        One script call per ``PUBLISH_CHUNK`` entries (``lua/publish.lua``): a single command
        to pack and parse, where a pipeline of XADDs costs tens of microseconds each in the
        client.
        """
        added = 0
        script = self._script("publish")
        keys = list(self.keys.streams.values())
        index = STREAM_INDEX
        for start in range(0, len(entries), PUBLISH_CHUNK):
            lines = "".join(
                f"{index[e.priority]} {e.task_id} {e.attempt} {e.trace_context or ''}\n"
                for e in entries[start : start + PUBLISH_CHUNK]
            )
            added += int(await script(keys=keys, args=[lines]))
        return added

    async def publish_fair(
        self, entries: Sequence[Publish], caps: Mapping[str, int], *, ttl_ms: int = 600_000
    ) -> list[Publish]:
        """``publish`` for entries that count toward their tenant's fair share (each has a
        ``tenant`` in ``caps``): a tenant's entries beyond its cap of unread ones are not added
        but returned, to be held back (``lua/publish_fair.lua``)."""
        script = self._script("publish_fair")
        streams = list(self.keys.streams.values())
        held: list[Publish] = []
        for start in range(0, len(entries), PUBLISH_CHUNK):
            chunk = entries[start : start + PUBLISH_CHUNK]
            tenants = sorted({e.tenant or "default" for e in chunk})
            number = {t: i + 1 for i, t in enumerate(tenants)}
            lines = "".join(
                f"{STREAM_INDEX[e.priority]} {e.task_id} {e.attempt} "
                f"{number[e.tenant or 'default']} {e.trace_context or ''}\n"
                for e in chunk
            )
            keys = streams + [self.keys.fair(t) for t in tenants]
            args = [lines, ",".join(str(caps[t]) for t in tenants), " ".join(tenants), ttl_ms]
            out = {_s(x) for x in await script(keys=keys, args=args)}
            held += [e for e in chunk if str(e.task_id) in out]
        return held

    async def fair_read(self, counts: Mapping[str, int]) -> None:
        """Entries of these tenants' fair shares were read: take them off their counts."""
        if counts:
            tenants = list(counts)
            await self._script("fair_read")(
                keys=[self.keys.fair(t) for t in tenants], args=[counts[t] for t in tenants]
            )

    async def fair_counts(self, tenants: Sequence[str]) -> dict[str, int]:
        """How many entries of each tenant's fair share are on the streams, unread."""
        if not tenants:
            return {}
        values = await self._r.mget([self.keys.fair(t) for t in tenants])
        return {t: int(v or 0) for t, v in zip(tenants, values, strict=True)}

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
                if is_lost(reply):
                    await self._ensure_groups()
                    continue
                raise reply
            if isinstance(reply, BaseException):
                raise reply
            out[p] = list(self._decode(reply))
        return out

    async def wait(
        self,
        consumer: str,
        block_ms: int,
        count: int = 1,
        priorities: Sequence[str] | None = None,
    ) -> list[Delivery | BadEntry]:
        """Block up to ``block_ms`` until any stream (of ``priorities``, default all) has a
        new entry; returns at most ``count`` entries per stream (a backlog is then read by
        weight)."""
        keys = self.keys.streams
        wanted = keys.values() if priorities is None else [keys[p] for p in priorities]
        streams: dict[Any, Any] = dict.fromkeys(wanted, ">")
        try:
            reply = await self._r.xreadgroup(GROUP, consumer, streams, count=count, block=block_ms)
        except ResponseError as exc:
            if not is_lost(exc):
                raise
            await self._ensure_groups()
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
                    if not is_lost(exc):
                        raise
                    await self._ensure_groups()
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
            if is_lost(reply):
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
