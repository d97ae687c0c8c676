from __future__ import annotations

import email.utils

from results_sink.endpoints import Breaker, BreakerState, endpoint_key
from results_sink.schedule import Intake, RetryPlan, intake, parse_retry_after

PLAN = RetryPlan.of([0, 5, 300, 1800, 7200, 18000, 36000, 36000], "d", jitter=0.1)


def test_the_default_schedule_has_one_tier_per_distinct_wait() -> None:
    assert PLAN.tiers == (5, 300, 1800, 7200, 18000, 36000)
    assert PLAN.tier_topics[0] == "d.retry.5s" and PLAN.dlq_topic == "d.dlq"
    assert PLAN.max_attempts == 8 and PLAN.wait_before(9) is None


def test_jitter_only_shortens_a_wait_within_its_bound() -> None:
    waits = [PLAN.wait_before(3) for _ in range(500)]
    assert all(w is not None and 270 <= w <= 300 for w in waits)
    assert len(set(waits)) > 400  # actually random


def test_tier_for_picks_the_largest_tier_not_above_the_wait_within_jitter() -> None:
    assert PLAN.tier_for(0.2) == 5 and PLAN.tier_for(5) == 5 and PLAN.tier_for(6) == 5
    assert PLAN.tier_for(30) == 5 and PLAN.tier_for(271) == 300  # 271: 300 shortened by jitter
    assert PLAN.tier_for(10**9) == 36000
    for attempt in range(2, 9):  # a scheduled retry goes to its own tier, jittered or not
        wait = PLAN.wait_before(attempt)
        assert wait is not None and PLAN.tier_for(wait) == PLAN.schedule[attempt - 1]


def test_intake_holds_a_partition_no_longer_than_its_head_records_release() -> None:
    now = 1000.0
    assert intake(due_at=999, produced_at=990, tier=5, now=now) == (Intake.ATTEMPT, 0.0)
    assert intake(due_at=1003, produced_at=998, tier=5, now=now) == (Intake.HOLD, 3.0)
    # Due in 5 min but produced to the 5 s tier 2 s ago: held 3 s, then hopped, never 5 min.
    assert intake(due_at=1300, produced_at=998, tier=5, now=now) == (Intake.HOLD, 3.0)
    assert intake(due_at=1300, produced_at=990, tier=5, now=now) == (Intake.HOP, 300.0)


def test_retry_after_in_seconds_or_http_date() -> None:
    assert parse_retry_after("120", now=0, cap=3600) == 120
    assert parse_retry_after("99999", now=0, cap=3600) == 3600
    date = email.utils.formatdate(1_000_060, usegmt=True)
    assert parse_retry_after(date, now=1_000_000, cap=3600) == 60
    assert parse_retry_after("soon", now=0, cap=10) is None and parse_retry_after(None, 0, 10) is None


def test_breaker_opens_probes_once_and_closes_on_success() -> None:
    now = [0.0]
    b = Breaker(threshold=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(2):
        b.failure()
    assert b.allow() and _state(b) is BreakerState.CLOSED
    b.failure()
    assert _state(b) is BreakerState.OPEN and not b.allow() and b.remaining_s() == 10
    now[0] = 10.0
    assert b.allow() and _state(b) is BreakerState.HALF_OPEN
    assert not b.allow()  # one probe at a time
    b.failure()  # the probe failed: open again, cooldown restarts
    assert _state(b) is BreakerState.OPEN and not b.allow()
    now[0] = 20.0
    assert b.allow()
    b.success()
    assert _state(b) is BreakerState.CLOSED and b.allow() and b.failures == 0


def test_endpoint_key_is_scheme_host_port() -> None:
    assert endpoint_key("https://A.example/x?y") == "https://a.example:443"
    assert endpoint_key("http://a.example:8080/") == "http://a.example:8080"


def test_an_abandoned_probe_lets_another_probe_go() -> None:
    now = [0.0]
    b = Breaker(threshold=1, cooldown_s=10, clock=lambda: now[0])
    b.failure()
    now[0] = 10
    assert b.allow() and not b.allow()  # the probe, and nothing else while it is out
    b.abandon()  # cancelled (a rebalance, a shutdown): no answer will ever come
    assert b.allow() and b.state is BreakerState.HALF_OPEN


def _state(b: Breaker) -> BreakerState:
    return b.state  # read through a call: mypy would keep the state narrowed across failure()
