from __future__ import annotations

import random

from sluice.offsets import OffsetTracker

TP = ("jobs", 0)


def test_commits_only_up_to_the_first_unfinished_offset() -> None:
    t = OffsetTracker()
    epoch = t.assign(TP)
    for offset in range(10, 15):
        t.add(TP, offset)
    t.done(TP, 12, epoch)
    t.done(TP, 11, epoch)
    assert t.committable() == {}  # 10 is still running
    t.done(TP, 10, epoch)
    assert t.committable() == {TP: 13}
    t.mark_committed({TP: 13})
    assert t.committable() == {}
    t.done(TP, 14, epoch)
    t.done(TP, 13, epoch)
    assert t.committable() == {TP: 15}


def test_gaps_in_offsets_do_not_block() -> None:
    t = OffsetTracker()
    epoch = t.assign(TP)
    for offset in (3, 7, 20):
        t.add(TP, offset)
    for offset in (20, 3, 7):
        t.done(TP, offset, epoch)
    assert t.committable() == {TP: 21}


def test_stale_epoch_completions_are_ignored() -> None:
    t = OffsetTracker()
    old = t.assign(TP)
    t.add(TP, 0)
    t.revoke(TP)
    new = t.assign(TP)
    t.add(TP, 0)
    assert not t.done(TP, 0, old)
    assert t.committable() == {}
    assert t.done(TP, 0, new)
    assert t.committable() == {TP: 1}


def test_random_completion_order_never_commits_past_an_unfinished_offset() -> None:
    rng = random.Random(7)
    for _ in range(200):
        t = OffsetTracker()
        epoch = t.assign(TP)
        offsets = sorted(rng.sample(range(1000), 50))
        for o in offsets:
            t.add(TP, o)
        finished: set[int] = set()
        for o in rng.sample(offsets, len(offsets)):
            t.done(TP, o, epoch)
            finished.add(o)
            commit = t.committable().get(TP)
            if commit is not None:
                t.mark_committed({TP: commit})
                assert all(x in finished for x in offsets if x < commit)
                unfinished = [x for x in offsets if x not in finished]
                assert not unfinished or commit <= min(unfinished)
        assert t.pending_count() == 0


def test_partitions_are_independent() -> None:
    t = OffsetTracker()
    a, b = ("jobs", 0), ("jobs", 1)
    ea, eb = t.assign(a), t.assign(b)
    t.add(a, 0)
    t.add(b, 0)
    t.done(b, 0, eb)
    assert t.committable() == {b: 1}
    assert t.committable([a]) == {}
    t.done(a, 0, ea)
    assert t.committable([a]) == {a: 1}


def test_a_synchronous_commit_can_resend_what_an_asynchronous_one_may_have_lost() -> None:
    t = OffsetTracker()
    epoch = t.assign(TP)
    t.add(TP, 0)
    t.done(TP, 0, epoch)
    t.mark_committed(t.committable())
    assert t.committable() == {}
    assert t.committable(again=True) == {TP: 1}
