"""How many entries to read from each priority stream: weighted fair shares or strict order.

Weighted mode hands out read slots one at a time by smooth weighted round robin (the nginx
algorithm), so over any run of slots each priority gets its weight's share however small each
read is, and ``low`` is never starved. Slots a stream cannot fill (it is empty) go to the
others in a second pass, so a lone busy priority still gets the whole executor.
"""

from __future__ import annotations

from collections.abc import Mapping


class FairShare:
    """Splits free read slots among priorities."""

    def __init__(self, weights: Mapping[str, int], *, strict: bool = False) -> None:
        self.order = list(weights)
        self.weights = dict(weights)
        self.strict = strict
        self._current = dict.fromkeys(self.order, 0)
        self._total = sum(self.weights.values())

    def split(self, slots: int, among: list[str] | None = None) -> dict[str, int]:
        """Slots per priority for one read; ``among`` limits it to some priorities."""
        names = [p for p in self.order if among is None or p in among]
        counts = dict.fromkeys(names, 0)
        if not names or slots <= 0:
            return counts
        if self.strict:
            # Strict priority: ask the first stream for everything; what it cannot fill goes
            # to the next one in the second pass.
            counts[names[0]] = slots
            return counts
        total = sum(self.weights[p] for p in names)
        current = self._current
        for _ in range(slots):
            best = names[0]
            for p in names:
                current[p] += self.weights[p]
                if current[p] > current[best]:
                    best = p
            current[best] -= total
            counts[best] += 1
        return counts
