"""What operators and tests read: counts, stream figures, pending entries."""

from __future__ import annotations

import uuid
from typing import Any

from redis.exceptions import ResponseError

from taskstream.shared.domain import PRIORITIES
from taskstream.shared.keys import GROUP
from taskstream.shared.streams.base import (
    Base,
    PendingEntry,
    StreamStats,
    _glob_escape,
    _id_tuple,
    _s,
    _strs,
)


def _pairs(reply: Any) -> dict[Any, Any]:
    """A flat ``[name, value, …]`` reply as a mapping."""
    items = list(reply)
    return dict(zip(items[::2], items[1::2], strict=False))


class InspectOps(Base):
    """What operators and tests read: counts, stream figures, pending entries."""

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

    async def stream_stats(self, count_cap: int = 100_000) -> list[StreamStats]:
        """Per priority: length, the group's lag, pending and consumers counts, the oldest
        pending entry (XPENDING) and the first undelivered one, with Redis's clock.

        Two pipelined round trips; when Redis does not report ``lag`` (6.2, or NULL after a
        deletion inside the undelivered range) the entries after ``last-delivered-id`` are
        counted with XRANGE, up to ``count_cap``.
        """
        keys = list(self.keys.streams.values())
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

    async def stream_counters(self) -> dict[str, tuple[int | None, int | None]]:
        """Per priority: the stream's ``entries-added`` and the executors' group's
        ``entries-read``, counters that only grow (Redis ≥ 7; None before, or when the stream
        or group is missing). Sampled over time they give enqueue and delivery rates. One
        pipelined round trip."""
        pipe = self._r.pipeline(transaction=False)
        for key in self.keys.streams.values():
            pipe.execute_command("XINFO", "STREAM", key)
            pipe.xinfo_groups(key)
        replies = await pipe.execute(raise_on_error=False)
        out: dict[str, tuple[int | None, int | None]] = {}
        for i, p in enumerate(PRIORITIES):
            info, groups = replies[2 * i], replies[2 * i + 1]
            added = None
            if not isinstance(info, BaseException):
                fields = info if isinstance(info, dict) else _pairs(info)
                raw = fields.get("entries-added", fields.get(b"entries-added"))
                added = int(raw) if raw is not None else None
            read = None
            if not isinstance(groups, BaseException):
                group = next((g for g in groups if _s(g["name"]) == GROUP), None)
                if group is not None and group.get("entries-read") is not None:
                    read = int(group["entries-read"])
            out[p] = (added, read)
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
