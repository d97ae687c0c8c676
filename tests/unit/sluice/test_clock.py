from __future__ import annotations

from sluice.clock import Every


def test_every_is_due_at_once_even_when_the_clock_is_near_zero() -> None:
    now = [0.5]  # monotonic time half a second after boot
    every = Every(3600, clock=lambda: now[0])
    assert every.tick()
    assert not every.due()
    now[0] += 3599
    assert not every.tick()
    now[0] += 1
    assert every.tick()
