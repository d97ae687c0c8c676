from __future__ import annotations

import pytest

from gateway.limits import RateLimits


def test_a_key_gets_its_requests_per_minute_then_waits_for_the_refill() -> None:
    now = [0.0]
    limits = RateLimits(clock=lambda: now[0])
    assert [limits.take("k", 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limits.take("k", 3) == pytest.approx(20.0)  # one token every 20 s at 3 rpm
    now[0] = 20.0
    assert limits.take("k", 3) == 0.0 and limits.take("k", 3) > 0
    assert limits.take("other", 3) == 0.0  # keys are counted apart
    assert all(limits.take("free", None) == 0.0 for _ in range(1000))
