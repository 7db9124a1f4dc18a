"""Limits kept in Redis: the tenants' submission rates (GCRA, ``lua/rate_limit.lua``)."""

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
    """Limits kept in Redis: the tenants' submission rates."""

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
