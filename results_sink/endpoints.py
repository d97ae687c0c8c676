"""Per-endpoint isolation: a connection limit, a wait line and a circuit breaker for each endpoint
(scheme://host:port), so one slow or failing receiver never holds up the others."""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar
from urllib.parse import urlsplit

__all__ = ["Breaker", "Endpoint", "Endpoints", "endpoint_key"]

T = TypeVar("T")


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

    def abandon(self) -> None:
        """An attempt ended without an answer (cancelled): if it was the probe, another may go.
        Otherwise a half-open breaker would wait for an answer that never comes, for ever."""
        self._probing = False

    def failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self.state = BreakerState.OPEN
            self.opened_at = self.clock()
            self._probing = False


class Endpoint(Generic[T]):
    """One receiver: at most `concurrency` requests at once; the rest wait in `line`, in order.

    The sink moves a line out to a retry tier when its oldest entry has waited too long, so a
    slow receiver holds memory (and other receivers' turn) for a bounded time only.
    """

    def __init__(self, key: str, concurrency: int, breaker: Breaker) -> None:
        self.key = key
        self.concurrency = concurrency
        self.breaker = breaker
        self.active = 0
        self.line: deque[tuple[float, T]] = deque()  # (monotonic time queued, item)

    def oldest_wait_s(self, now: float) -> float:
        return now - self.line[0][0] if self.line else 0.0


class Endpoints(Generic[T]):
    """Endpoint state by key, created on first use."""

    def __init__(self, concurrency: int, threshold: int, cooldown_s: float) -> None:
        self._limits = (concurrency, threshold, cooldown_s)
        self._by_key: dict[str, Endpoint[T]] = {}
        self._keys: dict[str, str] = {}  # url -> key; a few URLs recur for millions of deliveries

    def get(self, url: str) -> Endpoint[T]:
        key = self._keys.get(url)
        if key is None:
            if len(self._keys) >= 10_000:
                self._keys.clear()
            key = self._keys[url] = endpoint_key(url)
        found = self._by_key.get(key)
        if found is None:
            concurrency, threshold, cooldown_s = self._limits
            found = Endpoint(key, concurrency, Breaker(threshold, cooldown_s))
            self._by_key[key] = found
        return found

    def waiting(self) -> list[Endpoint[T]]:
        """Endpoints with deliveries in their line."""
        return [e for e in self._by_key.values() if e.line]

    def open_count(self) -> int:
        return sum(1 for e in self._by_key.values() if e.breaker.state is not BreakerState.CLOSED)
