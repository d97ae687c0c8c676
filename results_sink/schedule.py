"""When the next delivery attempt happens, and which delay-tier topic holds it until then.

Retries wait in Kafka, not in memory: a delivery that must wait d seconds is produced to the tier
topic `<deliveries_topic>.retry.<d>s` for the smallest tier d that covers it, with its due time.
Every record in a tier waits about the same delay, so a tier partition is (nearly) ordered by due
time and the sink can pause it at the first record not yet due. Jitter only shortens a wait (by
up to `jitter` of it), which keeps that order within a jitter's width.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["RetryPlan", "parse_retry_after"]


@dataclass(frozen=True)
class RetryPlan:
    """`schedule[i]` is the wait before attempt i+1 (schedule[0], before the first, is 0 by spec)."""

    schedule: tuple[float, ...]
    prefix: str
    jitter: float = 0.1

    @classmethod
    def of(cls, schedule: Sequence[float], prefix: str, jitter: float) -> RetryPlan:
        return cls(tuple(schedule), prefix, jitter)

    @property
    def max_attempts(self) -> int:
        return len(self.schedule)

    @property
    def tiers(self) -> tuple[float, ...]:
        """The distinct positive waits, ascending; at least one, for deferrals."""
        return tuple(sorted({d for d in self.schedule[1:] if d > 0})) or (1.0,)

    def tier_topic(self, tier: float) -> str:
        return f"{self.prefix}.retry.{tier:g}s"

    @property
    def tier_topics(self) -> list[str]:
        return [self.tier_topic(t) for t in self.tiers]

    @property
    def dlq_topic(self) -> str:
        return f"{self.prefix}.dlq"

    def wait_before(self, attempt: int) -> float | None:
        """Seconds to wait before attempt number `attempt` (1-based), jittered; None after the last."""
        if attempt > self.max_attempts:
            return None
        base = self.schedule[attempt - 1]
        return base * (1 - self.jitter * random.random())

    def tier_for(self, wait: float) -> float:
        """The smallest tier that is at least `wait` (the largest tier if none is)."""
        for tier in self.tiers:
            if tier >= wait:
                return tier
        return self.tiers[-1]


def parse_retry_after(value: str | None, now: float, cap: float) -> float | None:
    """Seconds asked for by a Retry-After header (delta-seconds or HTTP-date), capped; None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - now), cap)
