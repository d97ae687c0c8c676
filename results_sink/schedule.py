"""When the next delivery attempt happens, and which delay-tier topic holds it until then.

Retries wait in Kafka, not in memory, in delay-tier topics `<deliveries_topic>.retry.<d>s`, one
per distinct wait of the schedule. A record of tier d is released d seconds after it was produced:
release times grow with offsets, so the sink can pause a tier partition at its first record not yet
released and nothing behind it waits longer than its own tier delay.

A record is never held past its release for its own due time: a wait longer than every tier it
fits (a breaker deferral of 30 s with tiers of 5 s and 300 s, a Retry-After) is produced to the
largest tier not above it and, once released, produced again for the rest of the wait (a hop).
Holding it instead stalled every record behind it: deferrals due in seconds waited behind a retry
due in five minutes (issue 12, A6). Jitter only shortens a wait (by up to `jitter` of it).
"""

from __future__ import annotations

import email.utils
import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

from sluice.topics import delivery_dlq_topic, retry_tiers, tier_topic

__all__ = ["Intake", "RetryPlan", "intake", "parse_retry_after"]


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
        return retry_tiers(self.schedule)

    def tier_topic(self, tier: float) -> str:
        return tier_topic(self.prefix, tier)

    @property
    def tier_topics(self) -> list[str]:
        return [self.tier_topic(t) for t in self.tiers]

    @property
    def dlq_topic(self) -> str:
        return delivery_dlq_topic(self.prefix)

    def wait_before(self, attempt: int) -> float | None:
        """Seconds to wait before attempt number `attempt` (1-based), jittered; None after the last."""
        if attempt > self.max_attempts:
            return None
        base = self.schedule[attempt - 1]
        return base * (1 - self.jitter * random.random())

    def tier_for(self, wait: float) -> float:
        """The largest tier not above `wait` (within the jitter that may have shortened it), the
        smallest tier if none is: a record released from it is due, or hops on for the rest."""
        fits = [t for t in self.tiers if t * (1 - self.jitter) <= wait]
        return fits[-1] if fits else self.tiers[0]


class Intake(enum.Enum):
    """What to do with the record at the head of a retry-tier partition."""

    ATTEMPT = "attempt"  # due: deliver it now
    HOLD = "hold"  # not released yet: pause its partition for the returned seconds
    HOP = "hop"  # released but not due: produce it to the tier for the returned wait


def intake(due_at: float, produced_at: float, tier: float, now: float) -> tuple[Intake, float]:
    """The retry-tier record at its partition's head: attempt it, hold the partition (never past the
    record's release, `produced_at` + `tier`), or hop it to another tier (all times time.time())."""
    wait = due_at - now
    if wait <= 0:
        return Intake.ATTEMPT, 0.0
    release = produced_at + tier - now
    if release > 0:
        return Intake.HOLD, min(wait, release)
    return Intake.HOP, wait


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
