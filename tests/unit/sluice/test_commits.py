from __future__ import annotations

from typing import Any

from sluice.commits import Committer
from sluice.offsets import OffsetTracker
from tests.unit.fakes import FakeConsumer


def test_offsets_go_through_the_consumer_of_their_topic_and_sync_commits_resend() -> None:
    tracker = OffsetTracker()
    jobs, high = FakeConsumer(), FakeConsumer()
    consumers: dict[str, Any] = {"jobs": jobs, "jobs.high": high}
    counted: list[int] = []
    # The clock of a machine booted a moment ago: monotonic time starts near zero at boot.
    committer = Committer(
        tracker, consumers, interval_s=3600, on_commit=lambda: counted.append(1), clock=lambda: 5.0
    )
    for tp in (("jobs", 0), ("jobs.high", 1)):
        epoch = tracker.assign(tp)
        tracker.add(tp, 5)
        tracker.done(tp, 5, epoch)
    committer.maybe_commit()  # the first call commits: no commit has happened yet
    assert jobs.commits == [{("jobs", 0): 6}] and high.commits == [{("jobs.high", 1): 6}]
    committer.maybe_commit()  # within the interval: nothing
    committer.commit(sync=False)  # nothing advanced: nothing to send
    assert len(jobs.commits) == 1
    committer.commit(sync=True, tps=[("jobs", 0)])  # before a revoke: send again
    assert jobs.commits[-1] == {("jobs", 0): 6} and len(jobs.commits) == 2 and len(high.commits) == 1
    assert len(counted) == 2
