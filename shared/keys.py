"""Every Redis key taskstream uses, built under one namespace.

All keys carry the hash tag ``{<namespace>}`` so that, in Redis Cluster, a stream, its consumer
group and every other key a Lua script touches share one slot.
"""

from __future__ import annotations

from taskstream.shared.domain import PRIORITIES

GROUP = "executors"


class Keys:
    """Key names under one namespace (tests use a fresh uuid namespace each)."""

    __slots__ = ("epoch", "namespace", "prefix", "streams")

    def repaired(self, epoch: str) -> str:
        """Set by the one watcher that re-publishes everything after ``epoch`` began."""
        return f"{self.prefix}:repaired:{epoch}"

    def rate(self, tenant: str) -> str:
        """A tenant's submission-rate bucket (``lua/rate_limit.lua``)."""
        return f"{self.prefix}:rate:{tenant}"

    def slots(self, kind: str, name: str) -> str:
        """Running slots of a concurrency limit (``type`` or ``tenant``): a sorted set of
        ``task:attempt`` scored by lease expiry."""
        return f"{self.prefix}:slots:{kind}:{name}"

    def fair(self, tenant: str) -> str:
        """A tenant's entries on the streams not yet read (``lua/publish_fair.lua``)."""
        return f"{self.prefix}:fair:{tenant}"

    def alive(self, consumer: str) -> str:
        """Set by an executor's heartbeat with a short expiry: the consumer is alive."""
        return f"{self.prefix}:alive:{consumer}"

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.prefix = "{" + namespace + "}"
        self.streams: dict[str, str] = {p: f"{self.prefix}:stream:{p}" for p in PRIORITIES}
        # Created with the consumer groups; its absence tells the watcher Redis lost data.
        self.epoch = f"{self.prefix}:epoch"

    def stream(self, priority: str) -> str:
        return self.streams[priority]

    def priority_of(self, stream: str) -> str:
        return stream.rsplit(":", 1)[1]
