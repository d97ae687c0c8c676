"""Per-endpoint isolation: a connection limit, a bounded wait line and a circuit breaker for each
endpoint (scheme://host:port), so one slow or failing receiver never holds up the others."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from urllib.parse import urlsplit

__all__ = ["Breaker", "Endpoint", "Endpoints", "endpoint_key"]


def endpoint_key(url: str) -> str:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{parts.port or default}"


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    """Opens after `threshold` consecutive failures; after `cooldown_s` lets one probe through
    (half-open): its success closes the breaker, its failure opens it again."""

    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._probing = False

    def allow(self) -> bool:
        """May a request go now? (In half-open state, True once: the probe.)"""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and self.clock() - self.opened_at >= self.cooldown_s:
            self.state = BreakerState.HALF_OPEN
            self._probing = False
        if self.state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def remaining_s(self) -> float:
        """Seconds until a probe may go (0 when closed)."""
        if self.state is BreakerState.CLOSED:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - self.clock())

    def success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._probing = False

    def failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()
            self._probing = False


class Endpoint:
    """One receiver's limits: at most `concurrency` requests at once, `queue` more waiting."""

    def __init__(self, key: str, concurrency: int, queue: int, breaker: Breaker) -> None:
        self.key = key
        self.queue = queue
        self.slots = asyncio.Semaphore(concurrency)
        self.breaker = breaker
        self.waiting = 0  # admitted deliveries not yet finished (in a request or waiting for a slot)
        self.concurrency = concurrency

    def full(self) -> bool:
        return self.waiting >= self.concurrency + self.queue


class Endpoints:
    """Endpoint state by key, created on first use."""

    def __init__(self, concurrency: int, queue: int, threshold: int, cooldown_s: float) -> None:
        self._limits = (concurrency, queue, threshold, cooldown_s)
        self._by_key: dict[str, Endpoint] = {}

    def get(self, url: str) -> Endpoint:
        key = endpoint_key(url)
        found = self._by_key.get(key)
        if found is None:
            concurrency, queue, threshold, cooldown_s = self._limits
            found = Endpoint(key, concurrency, queue, Breaker(threshold, cooldown_s))
            self._by_key[key] = found
        return found

    def open_count(self) -> int:
        return sum(1 for e in self._by_key.values() if e.breaker.state is not BreakerState.CLOSED)
