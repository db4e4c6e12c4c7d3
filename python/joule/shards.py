"""The shards a replica still has to process in one pass, kept in step with hints.

Mirrors ShardWorklist in examples/task_contract.h, and with it the sharder's
assumptions about workloads (scheduler/sharding/sharder.h):

1. The owned set from the hints is authoritative for shards not yet started:
   newly owned ones are queued, no-longer-owned ones are dropped.
2. The shard in progress is always finished, owned or not (it is small, and
   abandoning it half done would lose the work).
3. A finished shard is never processed twice in the same pass.
4. Shards are processed in ascending order, so runs are reproducible.

Also here: contiguous_shard_bounds, how a dataset of n items splits into
shard_count contiguous shards.

Threading: not thread-safe; one pass belongs to one loop.
"""

from __future__ import annotations

from typing import Iterable, Optional


class ShardWorklist:
    """One pass over the owned shards (rules in the module docstring)."""

    def __init__(self, owned: Iterable[int]):
        self._owned: frozenset[int] = frozenset()
        self._pending: set[int] = set()
        self._done: set[int] = set()
        self._current: Optional[int] = None
        self.set_owned(owned)

    def set_owned(self, owned: Iterable[int]) -> None:
        """Replaces the owned set (from a hints update)."""
        self._owned = frozenset(owned)
        self._pending = {s for s in self._owned
                         if s not in self._done and s != self._current}

    def next(self) -> Optional[int]:
        """The shard to work on: the current one if any, else the lowest
        pending one (which becomes current); None when nothing is left."""
        if self._current is None and self._pending:
            self._current = min(self._pending)
            self._pending.discard(self._current)
        return self._current

    def finish_current(self) -> None:
        """Marks the current shard finished (no-op when there is none)."""
        if self._current is not None:
            self._done.add(self._current)
            self._current = None

    @property
    def owned(self) -> frozenset[int]:
        return self._owned

    @property
    def pending(self) -> frozenset[int]:
        return frozenset(self._pending)

    @property
    def done(self) -> frozenset[int]:
        return frozenset(self._done)

    @property
    def current(self) -> Optional[int]:
        return self._current


def contiguous_shard_bounds(item_count: int, shard_count: int, shard: int) -> range:
    """The items of `shard` when item_count items are split into shard_count
    contiguous shards whose sizes differ by at most one: [k*n//S, (k+1)*n//S)."""
    if shard_count <= 0:
        raise ValueError(f"shard_count must be positive, got {shard_count}")
    if not 0 <= shard < shard_count:
        raise ValueError(f"shard {shard} is not in 0..{shard_count - 1}")
    return range(shard * item_count // shard_count, (shard + 1) * item_count // shard_count)
