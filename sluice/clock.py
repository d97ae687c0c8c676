"""Periodic work measured on the monotonic clock.

`time.monotonic()` counts from an arbitrary point, on Linux the machine's boot: a "last done" of 0.0
compared with it makes the first run wait until the machine has been up for the interval (a commit
that waited an hour on a freshly booted CI machine). An `Every` starts with nothing done, so the
first call is due at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Every"]


class Every:
    """Due at once, then again each time `interval_s` has passed since it was last marked done."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        return self._last is None or self.clock() - self._last >= self.interval_s

    def done(self) -> None:
        self._last = self.clock()

    def tick(self) -> bool:
        """`due()`, marking it done when it is."""
        if self.due():
            self.done()
            return True
        return False
