"""Reading the hints file and applying it to the task's live settings.

Mirrors HintsReader and TaskSettings in examples/task_contract.h.

HintsReader: the agent replaces the hints file atomically (write a temporary
file, rename it), so a change shows as a new inode, size or mtime and poll()
costs one os.stat when nothing changed, cheap enough to call every step. One
gap remains: a rewrite with the same size within the file system's timestamp
granularity can reuse the freed inode number and look unchanged, so for
RECENT_WINDOW_S after the file's mtime poll() also re-reads the content and
compares it. A missing file means no hints. Warnings about unusable lines go
to stderr once per distinct file content.

LiveSettings: what a workload runs with right now, the start values with the
latest hints on top. A hint overrides while it is in the file; when the agent
removes batch_size or device_speed again, the start value (or full speed)
comes back. The shard set is different: the hints' set replaces the current
one and removing the key keeps the last set, because a shard set is a
handover, not a tunable. Shards at or above the shard count are dropped with a
warning rather than processed as garbage.

Threading: both classes are meant for the workload's main thread; not
thread-safe.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

from joule import contract
from joule._warn import warn

RECENT_WINDOW_S = 1.0


class HintsReader:
    """Re-reads the hints file at `path` when it changed (module docstring).

    `wall_clock_ns` is injected for tests; it is only compared with file
    modification times. An empty path: never any hints.
    """

    def __init__(self, path: str, *, wall_clock_ns: Callable[[], int] = time.time_ns):
        self._path = path
        self._wall_clock_ns = wall_clock_ns
        # (inode, size, mtime_ns) of the version last read; None: missing.
        self._version: Optional[tuple[int, int, int]] = None
        self._text: Optional[str] = None  # None: the file did not exist.
        self._current = contract.Hints()

    @property
    def path(self) -> str:
        return self._path

    @property
    def current(self) -> contract.Hints:
        return self._current

    def poll(self) -> bool:
        """True when the hints changed since the last call; current has them.

        The first call returns True iff the file exists and holds at least one
        usable hint.
        """
        if not self._path:
            return False
        try:
            st = os.stat(self._path)
            version = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            version = None
        recent = (version is not None and
                  self._wall_clock_ns() - version[2] < RECENT_WINDOW_S * 1e9)
        if version == self._version and not recent:
            return False

        text = None
        if version is not None:
            try:
                with open(self._path, "rb") as f:
                    text = f.read().decode("utf-8", errors="replace")
            except OSError:
                # Raced with a rename or lost permission: try again next poll.
                self._version = None
                return False
        self._version = version
        if text == self._text:
            return False
        self._text = text

        hints, warnings = (contract.parse_hints(text) if text is not None
                           else (contract.Hints(), []))
        for warning in warnings:
            warn(f"hints file {self._path}: {warning} (ignored)")
        if hints == self._current:
            return False
        self._current = hints
        return True


class LiveSettings:
    """Start values with the latest hints applied (rules in the module docstring)."""

    def __init__(self, batch_size: int, shard_count: int, shards):
        self._start_batch_size = batch_size
        self._shard_count = shard_count
        self.batch_size = batch_size
        self.device_speed = 1.0
        self.shards: frozenset[int] = frozenset(shards)
        self.stop = False

    @property
    def shard_count(self) -> int:
        return self._shard_count

    def apply(self, hints: contract.Hints) -> None:
        self.batch_size = (hints.batch_size if hints.batch_size is not None
                           else self._start_batch_size)
        self.device_speed = hints.device_speed if hints.device_speed is not None else 1.0
        self.stop = bool(hints.stop)
        if hints.shards is not None:
            kept, dropped = contract.shards_within(hints.shards, self._shard_count)
            if dropped:
                warn(f"hints name shards {contract.format_range_list(dropped)}, not below "
                     f"the shard count {self._shard_count} (ignored)")
            self.shards = kept
