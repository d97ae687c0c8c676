"""Which offset is safe to commit when records finish out of order.

Records of a partition are added in offset order as they are polled and marked done in any order.
The committable offset is the lowest offset still pending (or one past the highest added when none
is): committing it never skips a record that is not done (faust's `_new_offset` idea).

Each assignment of a partition gets a new epoch; a completion from an older epoch (the partition was
revoked and maybe reassigned since) is ignored, so a stale job can never move a new owner's offsets.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["TP", "OffsetTracker"]

TP = tuple[str, int]


@dataclass
class _Partition:
    epoch: int
    pending: deque[int] = field(default_factory=deque)
    done: set[int] = field(default_factory=set)
    next_offset: int | None = None
    committed: int | None = None


class OffsetTracker:
    """Per-partition bookkeeping of polled, finished and committed offsets. Not thread-safe."""

    def __init__(self) -> None:
        self._parts: dict[TP, _Partition] = {}
        self._epochs = 0

    def assign(self, tp: TP) -> int:
        """Start tracking `tp` afresh; returns the epoch completions must carry."""
        self._epochs += 1
        self._parts[tp] = _Partition(self._epochs)
        return self._epochs

    def revoke(self, tp: TP) -> None:
        """Forget `tp`; later completions for it are ignored."""
        self._parts.pop(tp, None)

    def epoch(self, tp: TP) -> int | None:
        """The current epoch of `tp`, None when not assigned."""
        part = self._parts.get(tp)
        return part.epoch if part else None

    def add(self, tp: TP, offset: int) -> int:
        """Record a polled offset (offsets of a partition arrive in increasing order)."""
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition(self.assign(tp))
        part.pending.append(offset)
        return part.epoch

    def done(self, tp: TP, offset: int, epoch: int) -> bool:
        """Mark an offset finished; False (and no effect) if it belongs to a stale epoch."""
        part = self._parts.get(tp)
        if part is None or part.epoch != epoch:
            return False
        part.done.add(offset)
        pending = part.pending
        while pending and pending[0] in part.done:
            part.done.discard(pending[0])
            part.next_offset = pending.popleft() + 1
        return True

    def pending_count(self) -> int:
        """Records added and not yet done (or done behind an unfinished one), all partitions."""
        return sum(len(p.pending) for p in self._parts.values())

    def committable(self, tps: list[TP] | None = None, again: bool = False) -> dict[TP, int]:
        """Offsets to commit: per partition, the first offset not yet done, where it advanced
        since the last commit (or, with `again`, wherever it is known)."""
        out = {}
        for tp in tps if tps is not None else list(self._parts):
            part = self._parts.get(tp)
            if part is None or part.next_offset is None:
                continue
            if part.next_offset == part.committed and not again:
                continue
            out[tp] = part.next_offset
        return out

    def mark_committed(self, offsets: dict[TP, int]) -> None:
        """Record that `offsets` were sent to the group coordinator."""
        for tp, offset in offsets.items():
            part = self._parts.get(tp)
            if part is not None:
                part.committed = offset
