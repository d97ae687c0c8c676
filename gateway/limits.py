"""Per-key request rate limits: a token bucket per key, `rpm` tokens, refilled continuously.

Each gateway replica counts on its own: behind N replicas a key gets up to N x rpm. The in-flight
limit is counted from the result store instead (jobs submitted and not yet answered), which every
replica shares through Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RateLimits"]


class RateLimits:
    """Whether a key may make a request now (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when counted)

    def take(self, key_id: str, rpm: int | None) -> float:
        """Take one request's token: 0.0 if it may go now, else the seconds until it may."""
        if rpm is None:
            return 0.0
        now = self.clock()
        tokens, then = self._buckets.get(key_id, (float(rpm), now))
        tokens = min(float(rpm), tokens + (now - then) * rpm / 60.0)
        if tokens < 1.0:
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) * 60.0 / rpm
        self._buckets[key_id] = (tokens - 1.0, now)
        return 0.0
