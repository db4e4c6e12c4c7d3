"""Writing the progress file: whole lines, throttled, never fatal.

Mirrors ProgressWriter / ProgressThrottle / ProgressReporter in
examples/task_contract.h:

* ProgressWriter appends one line per event with a single os.write on an
  O_APPEND descriptor, so lines never interleave with another writer's and the
  agent, which tails the file, never sees half a line (unless the disk is
  full). There is no user-space buffer, nothing to flush.
* ProgressThrottle allows at most one periodic line per interval.
* ProgressReporter applies the contract's policy on top: periodic lines go
  through the throttle, forced ones (epoch end with a quality, final totals)
  bypass it, a line that would repeat the previous one exactly is skipped, and
  a failed write is reported once on stderr and otherwise ignored, because
  reporting is advisory: a task that reports nothing still runs.

Threading: meant for one thread (the workload's main loop); not thread-safe.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

from joule import contract
from joule._warn import warn


class ProgressWriter:
    """An open progress file; every write_line is one os.write.

    Built from an empty path it is disabled: writes succeed and do nothing.
    Raises OSError on failure (open or write); ProgressReporter is the
    advisory wrapper.
    """

    def __init__(self, path: str):
        self._path = path
        self._fd: Optional[int] = None
        if path:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o644)

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    @property
    def path(self) -> str:
        return self._path

    def write_line(self, line: str) -> None:
        """Appends `line` plus a newline in a single write."""
        if self._fd is None:
            return
        data = (line + "\n").encode("utf-8")
        # os.write may write less than asked on a nearly full disk; finish the
        # line rather than leave half of it. (EINTR is retried by Python.)
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ProgressThrottle:
    """Decides when another periodic progress line may be written.

    At most one line every `min_interval_s` seconds of the injected monotonic
    clock; lines written outside the throttle are recorded with mark_written
    so the next periodic one waits a full interval.
    """

    def __init__(self, min_interval_s: float):
        self._min_interval_s = min_interval_s
        self._last: Optional[float] = None

    def ready(self, now: float) -> bool:
        """True when a line may be written at `now`; records it as written."""
        if self._last is not None and now - self._last < self._min_interval_s:
            return False
        self._last = now
        return True

    def mark_written(self, now: float) -> None:
        self._last = now


class ProgressReporter:
    """The contract's events, reported with the advisory policy (module docstring).

    Opening the file is advisory too: if `path` cannot be opened, one warning
    names it and reporting is disabled. An empty path disables reporting
    silently (a task run by hand).
    """

    def __init__(self, path: str, *, min_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._throttle = ProgressThrottle(min_interval_s)
        self._warned = False
        self._wrote_any = False
        self._last_samples = 0
        self._last_steps = 0
        self._last_quality: Optional[float] = None
        self._total = 0
        self._latency_batch = 0
        self._latency_ms = 0.0
        try:
            self._writer = ProgressWriter(path)
        except OSError as error:
            self._warn_once(f"cannot open progress file {path}: {error.strerror or error}; "
                            "progress will not be reported (the task keeps running)")
            self._writer = ProgressWriter("")

    @property
    def enabled(self) -> bool:
        return self._writer.enabled

    def set_total(self, total_samples: int) -> None:
        """Adds total=<n> to later progress lines (0: not known, left out)."""
        self._total = max(0, int(total_samples))

    def set_latency(self, batch: int, latency_ms: float) -> None:
        """Adds batch=<b> latency_ms=<x> (p95 step latency at batch b) to later
        progress lines; batch 0 leaves them out."""
        self._latency_batch = max(0, int(batch))
        self._latency_ms = float(latency_ms)

    def maybe_progress(self, samples: int, steps: int) -> bool:
        """A periodic report after a step; skipped when the throttle says so or
        when the counters did not change. True when a line was written."""
        if (not self._writer.enabled or self._is_repeat(samples, steps, None)
                or not self._throttle.ready(self._clock())):
            return False
        self._remember(samples, steps, None)
        return self._write(self._progress_event(samples, steps, None))

    def progress(self, samples: int, steps: int, quality: Optional[float] = None) -> bool:
        """A report that bypasses the throttle (epoch end with quality, final
        totals); still skipped when it would repeat the previous line."""
        if not self._writer.enabled or self._is_repeat(samples, steps, quality):
            return False
        self._throttle.mark_written(self._clock())
        self._remember(samples, steps, quality)
        return self._write(self._progress_event(samples, steps, quality))

    def shard_done(self, shard: int) -> bool:
        return self._write(contract.ProgressEvent(contract.SHARD_DONE, shard=int(shard)))

    def target_reached(self, quality: Optional[float] = None) -> bool:
        return self._write(contract.ProgressEvent(contract.TARGET_REACHED, quality=quality))

    def waiting(self) -> bool:
        """"waiting": out of shards, waiting for more through the hints file."""
        return self._write(contract.ProgressEvent(contract.WAITING))

    def close(self) -> None:
        self._writer.close()

    def _progress_event(self, samples, steps, quality) -> contract.ProgressEvent:
        latency = self._latency_batch > 0
        return contract.ProgressEvent(
            contract.PROGRESS, samples=int(samples), steps=int(steps),
            total=self._total if self._total > 0 else None,
            batch=self._latency_batch if latency else None,
            latency_ms=self._latency_ms if latency else None,
            quality=quality)

    def _is_repeat(self, samples, steps, quality) -> bool:
        return (self._wrote_any and samples == self._last_samples
                and steps == self._last_steps
                and (quality is None or quality == self._last_quality))

    def _remember(self, samples, steps, quality) -> None:
        self._wrote_any = True
        self._last_samples = samples
        self._last_steps = steps
        if quality is not None:
            self._last_quality = quality

    def _write(self, event: contract.ProgressEvent) -> bool:
        if not self._writer.enabled:
            return False
        try:
            self._writer.write_line(contract.format_progress(event))
            return True
        except OSError as error:
            self._warn_once(f"writing progress file {self._writer.path}: "
                            f"{error.strerror or error}; further progress reports may be "
                            "lost (the task keeps running)")
            return False

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            warn(message)
