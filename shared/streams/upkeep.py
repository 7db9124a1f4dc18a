"""What the watcher and the janitor do: epochs, delivery marks, reclaims, trimming, consumers."""

from __future__ import annotations

from collections.abc import Sequence

from redis.exceptions import ResponseError

from taskstream.shared.domain import PRIORITIES
from taskstream.shared.keys import GROUP
from taskstream.shared.streams.base import (
    Base,
    ConsumerInfo,
    DeliveryMark,
    Reclaimed,
    _id_tuple,
    _s,
)
from taskstream.shared.streams.boundary import is_lost


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """A Lua reply's flat field list as the mapping redis-py gives for stream entries."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


class UpkeepOps(Base):
    """What the watcher and the janitor do: epochs, marks, reclaims, trimming, consumers."""

    async def epoch(self) -> str | None:
        """The current epoch (set with the groups); None when Redis lost it."""
        value = await self._r.get(self.keys.epoch)
        return _s(value) if value is not None else None

    async def run_id(self) -> str:
        """The Redis server's run id: a new one after a restart or a failover (whose new
        primary may lack the last writes even when the epoch key survived)."""
        info = await self._r.info("server")
        return str(info.get("run_id", ""))

    async def time_s(self) -> float:
        """Redis's clock (TIME), in seconds."""
        seconds, micros = await self._r.time()
        return int(seconds) + int(micros) / 1_000_000

    async def alive(self, consumers: Sequence[str]) -> set[str]:
        """Which of ``consumers`` have a live heartbeat (their liveness key exists)."""
        if not consumers:
            return set()
        pipe = self._r.pipeline(transaction=False)
        for c in consumers:
            pipe.exists(self.keys.alive(c))
        return {c for c, n in zip(consumers, await pipe.execute(), strict=True) if n}

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

    async def reclaim(
        self, priority: str, consumer: str, min_idle_ms: int, cursor: str, count: int
    ) -> Reclaimed:
        """Take over entries idle at least ``min_idle_ms`` to ``consumer``, from ``cursor``
        (``lua/reclaim.lua``: XAUTOCLAIM … JUSTID, so no delivery is counted; deleted entries
        are reported, on Redis 6.2 and 7 alike)."""
        key = self.keys.stream(priority)
        try:
            next_cursor, raw, deleted = await self._script("reclaim")(
                keys=[key], args=[GROUP, consumer, min_idle_ms, cursor, count]
            )
        except ResponseError as exc:
            if not is_lost(exc):
                raise
            # Redis lost the stream or the group (restarted empty): nothing is pending there
            # any more. Recreate them; running tasks whose entries vanished are orphans.
            await self._ensure_groups()
            return Reclaimed(cursor="0-0", entries=[], deliveries={}, deleted=[])
        pairs = [(entry_id, _pairs(fields)) for entry_id, fields, _ in raw]
        return Reclaimed(
            cursor=_s(next_cursor),
            entries=list(self._decode([(key.encode(), pairs)])),
            deliveries={_s(entry_id): int(times) for entry_id, _, times in raw},
            deleted=[_s(i) for i in deleted],
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
