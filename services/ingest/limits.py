"""The tenants' limits at submission: payload size (413 naming the field), submission rate
(GCRA in Redis, 429 with ``Retry-After`` and ``RateLimit-*``) and tasks in flight (checked in
the insert's transaction: 429 with a clear message).

The limits are read from Postgres at most every ``LIMITS_CACHE_MS``; a tenant without a row
(and every request while no tenant has limits) costs a dict lookup. A batch counts its tasks
and is admitted whole or not at all by the rate and the quota. **A Redis outage fails open**:
the request is admitted without a rate check (counted in ``rate_checks_skipped_total``), since
Redis down already means tasks are accepted and published later, and refusing every request
would turn a Redis outage into an API outage; the in-flight quota, kept in Postgres, still
holds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from taskstream.services.ingest.errors import Invalid
from taskstream.shared.db import Database
from taskstream.shared.domain import NewTask
from taskstream.shared.domain.access import TenantLimits
from taskstream.shared.errors import QuotaExceeded, StoreError
from taskstream.shared.metrics import Metrics
from taskstream.shared.models import ApiError
from taskstream.shared.streams import RateDecision, Streams

log = logging.getLogger(__name__)


class Limiter:
    """The limits of every tenant, cached; checks for one request."""

    def __init__(
        self,
        db: Database,
        streams: Streams,
        metrics: Metrics,
        *,
        cache_ms: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._streams = streams
        self._metrics = metrics
        self._cache_s = cache_ms / 1000
        self._clock = clock
        self._limits: dict[str, TenantLimits] = {}
        self._loaded_at = -math.inf

    async def of(self, tenant: str) -> TenantLimits | None:
        """``tenant``'s limits, or None when it has none."""
        if self._clock() - self._loaded_at >= self._cache_s:
            await self._reload()
        return self._limits.get(tenant)

    def weight(self, tenant: str) -> int:
        """The tenant's fair-share weight as last read (1 when it has no row)."""
        limits = self._limits.get(tenant)
        return limits.weight if limits is not None else 1

    def forget(self) -> None:
        """Read the limits again on the next request (after a change through this process)."""
        self._loaded_at = -math.inf

    async def _reload(self) -> None:
        self._loaded_at = self._clock()
        try:
            self._limits = {t.name: t for t in await self._db.tenants()}
        except StoreError as exc:  # keep what was read; the insert itself will say 503
            log.warning("cannot read the tenants' limits: %s", exc,
                        extra={"event": "ingest.limits_unreadable"})  # fmt: skip

    def payload_error(self, limits: TenantLimits, task: NewTask) -> Invalid | None:
        """413 naming ``payload`` when the task's payload is over its tenant's limit."""
        cap = limits.max_payload_bytes
        if cap is None or len(task.payload) <= cap:
            return None
        return Invalid(
            413,
            ApiError(
                code="payload_too_large",
                message=f"the payload is {len(task.payload)} bytes of JSON; tenant "
                f"{limits.name} may send at most {cap}",
                field="payload",
            ),
        )

    async def admit(self, limits: TenantLimits, n: int) -> dict[str, str]:
        """Take ``n`` tasks from the tenant's rate; the ``RateLimit-*`` headers to answer
        with, or ``Invalid`` 429 (with them and ``Retry-After``) when over the rate."""
        if limits.rate_per_s is None or n == 0:
            return {}
        burst = limits.effective_burst
        try:
            decision = await self._streams.rate_limit(limits.name, limits.rate_per_s, burst, n)
        except StoreError as exc:
            self._metrics.rate_checks_skipped.add(1)
            log.warning("rate limit not checked (Redis: %s): admitted", exc,
                        extra={"event": "ingest.rate_fail_open"})  # fmt: skip
            return {}
        headers = _headers(burst, decision)
        if decision.admitted:
            return headers
        self._metrics.rejected.add(1, {"reason": "rate_limited"})
        retry_s = max(1, math.ceil(decision.retry_after_ms / 1000))
        if n > burst:
            message = (
                f"{n} tasks at once is more than tenant {limits.name}'s burst of {burst}: "
                "send them in smaller batches"
            )
        else:
            message = (
                f"tenant {limits.name} is over its rate of {limits.rate_per_s:g}/s (burst "
                f"{burst}): retry in {decision.retry_after_ms / 1000:.2f} s"
            )
        raise Invalid(
            429,
            ApiError(code="rate_limited", message=message),
            {**headers, "Retry-After": str(retry_s)},
        )

    def quota_error(self, exc: QuotaExceeded) -> Invalid:
        self._metrics.rejected.add(1, {"reason": "quota"})
        return Invalid(429, ApiError(code="quota_exceeded", message=str(exc)),
                       {"Retry-After": "1"})  # fmt: skip


def _headers(burst: int, decision: RateDecision) -> dict[str, str]:
    """The IETF RateLimit fields: the bucket's size, what is left, seconds until full."""
    return {
        "RateLimit-Limit": str(burst),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(math.ceil(decision.reset_ms / 1000)),
    }
