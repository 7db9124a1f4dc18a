"""Limits kept in Redis: the tenants' submission rates (GCRA, ``lua/rate_limit.lua``) and the
running slots of the concurrency caps (``lua/acquire_slots.lua``)."""

from __future__ import annotations

import msgspec

from taskstream.shared.streams.base import Base


class RateDecision(msgspec.Struct, frozen=True, kw_only=True):
    """What the rate limiter said of one request."""

    admitted: bool
    retry_after_ms: float  # 0 when admitted
    remaining: int  # tasks the bucket holds now
    reset_ms: float  # until the bucket is full again


class LimitOps(Base):
    """The tenants' submission rates."""

    async def rate_limit(self, tenant: str, rate_per_s: float, burst: int, n: int) -> RateDecision:
        """Take ``n`` tasks from ``tenant``'s bucket (``rate_per_s``, holding ``burst``), all
        or none."""
        reply = await self._script("rate_limit")(
            keys=[self.keys.rate(tenant)], args=[1000.0 / rate_per_s, burst, n]
        )
        admitted, retry, left, reset = reply
        return RateDecision(
            admitted=int(admitted) == 1,
            retry_after_ms=float(retry),
            remaining=max(0, int(left)),
            reset_ms=float(reset),
        )


class SlotRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A task asking for running slots: its member (``task:attempt``) and its caps' keys."""

    member: str
    caps: list[str]


class SlotOps(Base):
    """Running slots of the concurrency caps (``lua/acquire_slots.lua``)."""

    async def acquire_slots(
        self, requests: list[SlotRequest], limits: dict[str, int], lease_ms: int
    ) -> list[str | None]:
        """Take each request's slots (all of its caps or none); per request, None if it got
        them, else the key of a cap that was full. ``limits``: cap key → most running."""
        caps = sorted({k for r in requests for k in r.caps})
        index = {k: i + 1 for i, k in enumerate(caps)}
        args: list[object] = [lease_ms, len(caps), *(limits[k] for k in caps)]
        for r in requests:
            args += [r.member, ",".join(str(index[k]) for k in r.caps)]
        reply = await self._script("acquire_slots")(keys=caps, args=args)
        return [None if int(full) == 0 else caps[int(full) - 1] for full in reply]

    async def release_slots(self, held: list[SlotRequest]) -> None:
        """Give slots back (a task finished, or never started)."""
        if not held:
            return
        pipe = self._r.pipeline(transaction=False)
        for r in held:
            for key in r.caps:
                pipe.zrem(key, r.member)
        await pipe.execute()

    async def slots_used(self, keys: list[str]) -> dict[str, int]:
        """How many slots of each cap are held (leases that ran out dropped first)."""
        if not keys:
            return {}
        seconds, micros = await self._r.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        pipe = self._r.pipeline(transaction=False)
        for key in keys:
            pipe.zremrangebyscore(key, "-inf", now_ms)
            pipe.zcard(key)
        replies = await pipe.execute()
        return {key: int(replies[2 * i + 1]) for i, key in enumerate(keys)}
