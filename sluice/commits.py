"""Offset commits shared by the worker and the sink: what OffsetTracker allows, through the consumer
that owns each topic, at most every `interval_s` (asynchronously) or now (synchronously).

A synchronous commit (revoke, shutdown) sends every partition's committable offset again, even one
already sent asynchronously: an asynchronous commit can fail unseen, and the last commit before
a partition changes hands is the one that decides how much is redelivered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from sluice.clients import ConsumerLike
from sluice.clock import Every
from sluice.kafka import commit
from sluice.offsets import TP, OffsetTracker

__all__ = ["Commits", "Committer"]

log = logging.getLogger("sluice.commits")


class Commits(Protocol):
    """How a service commits what OffsetTracker allows: Committer (at least once) or
    sluice.transactions.Transactions (exactly once, with the results)."""

    def maybe_commit(self) -> None:
        """Commit if the commit interval has passed."""
        ...

    def commit(self, sync: bool, tps: list[TP] | None = None) -> None:
        """Commit now (for `tps`, or every tracked partition)."""
        ...


class Committer:
    """Commits `tracker`'s offsets; `consumers` maps each topic to the consumer that reads it."""

    def __init__(
        self,
        tracker: OffsetTracker,
        consumers: Mapping[str, ConsumerLike],
        interval_s: float,
        on_commit: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.consumers = consumers
        self.on_commit = on_commit
        self._every = Every(interval_s, clock)

    def maybe_commit(self) -> None:
        """Commit asynchronously if the interval has passed since the last commit."""
        if self._every.due():
            self.commit(sync=False)

    def commit(self, sync: bool, tps: list[TP] | None = None) -> None:
        """Commit what is done (for `tps`, or every tracked partition); a failure is logged, and
        only means those records are delivered again later."""
        self._every.done()
        offsets = self.tracker.committable(tps, again=sync)
        if not offsets:
            return
        try:
            for topic, consumer in self.consumers.items():
                mine = {tp: o for tp, o in offsets.items() if tp[0] == topic}
                if mine:
                    commit(consumer, mine, sync)
        except Exception as exc:
            log.warning("commit failed: %s", exc)
            return
        self.tracker.mark_committed(offsets)
        if self.on_commit is not None:
            self.on_commit()
