"""Task: a workload's one handle on Joule's task contract.

A Task reads the settings the agent passed in the environment, reports
progress events to the progress file, watches the hints file for live
changes (batch size, shard handovers, stop, simulated device speed), walks the
shards this replica owns, and paces steps on simulated accelerators. Outside
Joule (no JOULE_* variables) it is a no-op stand-in: reporting does nothing,
there are no hints, and the task owns every shard of its default shard count,
so the same script runs by hand.

Typical use::

    task = joule.task(default_batch_size=64, default_shard_count=8)
    for shard in task.iter_shards():          # reports shard_done as each ends
        for batch in batches(shard, task.batch_size):
            work(batch)
            samples += len(batch); steps += 1
            task.progress(samples, steps)     # throttled
            if task.should_stop:
                break
    task.progress(samples, steps, force=True)

Two styles for live settings: read the properties (batch_size, shards,
should_stop, device_speed), each of which first polls the hints file (one
os.stat when nothing changed), or call poll() yourself and register callbacks
(on_batch_size, on_shards, on_stop), which run inside poll() (and so inside a
property read) when the value changes.

Time is injected (clock, sleep, wall_clock_ns) so tests need not sleep.

Threading: meant for the workload's main thread; not thread-safe. Callbacks
run on the thread that polls.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Mapping, Optional

from joule import contract
from joule.hints import HintsReader, LiveSettings
from joule.progress import ProgressReporter
from joule.shards import ShardWorklist

# Device speeds below this are treated as this, so a bad value cannot make a
# step (nearly) infinitely long; the same floor as C++ EmulatedStepSleep.
MIN_DEVICE_SPEED = 0.01


class Task:
    """One task's settings, reports and hints (see the module docstring)."""

    def __init__(self, env: Optional[contract.TaskEnv] = None, *,
                 default_batch_size: int = 32,
                 default_shard_count: int = 8,
                 progress_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 wall_clock_ns: Callable[[], int] = time.time_ns):
        """Builds a task from an already-read environment (None: outside Joule).

        batch size: JOULE_BATCH_SIZE, else default_batch_size; shard count:
        JOULE_SHARD_COUNT, else default_shard_count; shards: JOULE_SHARDS,
        else all of range(shard_count). Raises ValueError for defaults out of
        range.
        """
        if not 1 <= default_batch_size <= contract.MAX_BATCH_SIZE:
            raise ValueError(f"default_batch_size must be in 1..{contract.MAX_BATCH_SIZE}, "
                             f"got {default_batch_size}")
        if not 1 <= default_shard_count <= contract.MAX_SHARD_COUNT:
            raise ValueError(f"default_shard_count must be in 1..{contract.MAX_SHARD_COUNT}, "
                             f"got {default_shard_count}")
        self._env = env if env is not None else contract.TaskEnv()
        self._clock = clock
        self._sleep = sleep
        shard_count = (self._env.shard_count if self._env.shard_count is not None
                       else default_shard_count)
        shards = (self._env.shards if self._env.shards is not None
                  else frozenset(range(shard_count)))
        batch_size = (self._env.batch_size if self._env.batch_size is not None
                      else default_batch_size)
        self._settings = LiveSettings(batch_size, shard_count, shards)
        self._hints = HintsReader(self._env.hints_file, wall_clock_ns=wall_clock_ns)
        self._reporter = ProgressReporter(self._env.progress_file,
                                          min_interval_s=progress_interval_s, clock=clock)
        self._batch_size_callbacks: list[Callable[[int], None]] = []
        self._shards_callbacks: list[Callable[[frozenset[int]], None]] = []
        self._stop_callbacks: list[Callable[[], None]] = []
        # The hints file may already hold settings newer than the environment.
        self.poll()

    @classmethod
    def from_environ(cls, environ: Optional[Mapping[str, str]] = None, **kwargs) -> "Task":
        """A task from the process environment (or `environ`).

        Raises contract.ContractError, whose message starts with the name of
        the bad variable, when a variable is malformed.
        """
        env = contract.read_task_env(os.environ if environ is None else environ)
        return cls(env, **kwargs)

    # -- What the agent said at start. -----------------------------------

    @property
    def env(self) -> contract.TaskEnv:
        return self._env

    @property
    def under_joule(self) -> bool:
        """True when started by a Joule agent (any JOULE_* setting present)."""
        return self._env.under_joule

    @property
    def job_id(self) -> str:
        return self._env.job_id

    @property
    def task_id(self) -> str:
        return self._env.task_id

    @property
    def task_dir(self) -> str:
        """The task's own directory (JOULE_TASK_DIR); "" outside Joule."""
        return self._env.task_dir

    @property
    def gang(self) -> Optional[contract.GangEnv]:
        """The rendezvous variables (MASTER_ADDR, ..., as torchrun sets them), if any."""
        return self._env.gang

    @property
    def replica_index(self) -> int:
        """This replica's rank in its gang (JOULE_REPLICA_INDEX, else RANK, else 0)."""
        return self._env.replica_index

    @property
    def replica_count(self) -> int:
        """The gang's size (JOULE_REPLICA_COUNT, else WORLD_SIZE, else 1)."""
        return self._env.replica_count

    @property
    def shard_count(self) -> int:
        return self._settings.shard_count

    @property
    def reporting(self) -> bool:
        """True when progress reports go to a file."""
        return self._reporter.enabled

    # -- Live settings (each read polls the hints file first). ------------

    @property
    def batch_size(self) -> int:
        self.poll()
        return self._settings.batch_size

    @property
    def shards(self) -> frozenset[int]:
        """The shards this replica owns now."""
        self.poll()
        return self._settings.shards

    @property
    def should_stop(self) -> bool:
        """True while the hints say stop=1."""
        self.poll()
        return self._settings.stop

    @property
    def device_speed(self) -> float:
        """The simulated accelerator's speed in (0, 1]; 1.0 on real hardware."""
        self.poll()
        return self._settings.device_speed

    def poll(self) -> bool:
        """Re-reads the hints file if it changed and applies it; runs the
        callbacks of the settings that changed. True when the hints changed."""
        if not self._hints.poll():
            return False
        settings = self._settings
        before = (settings.batch_size, settings.shards, settings.stop)
        settings.apply(self._hints.current)
        if settings.batch_size != before[0]:
            for callback in list(self._batch_size_callbacks):
                callback(settings.batch_size)
        if settings.shards != before[1]:
            for callback in list(self._shards_callbacks):
                callback(settings.shards)
        if settings.stop and not before[2]:
            for callback in list(self._stop_callbacks):
                callback()
        return True

    def on_batch_size(self, callback: Callable[[int], None]) -> Callable[[int], None]:
        """Registers callback(new_batch_size); returns it (usable as a decorator)."""
        self._batch_size_callbacks.append(callback)
        return callback

    def on_shards(self, callback: Callable[[frozenset[int]], None]):
        """Registers callback(owned_shards), run when the owned set changes."""
        self._shards_callbacks.append(callback)
        return callback

    def on_stop(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Registers callback(), run when a stop hint arrives."""
        self._stop_callbacks.append(callback)
        return callback

    # -- Reports (advisory: they never raise). ------------------------------

    def progress(self, samples: int, steps: int, *, quality: Optional[float] = None,
                 force: bool = False) -> bool:
        """Reports the cumulative counters, and a quality metric if given.

        Without quality and force, this is the periodic report after a step:
        at most one line per progress_interval_s. With either, the line
        bypasses the throttle (epoch end, final totals). A line that would
        repeat the previous one is skipped. True when a line was written.
        """
        if quality is None and not force:
            return self._reporter.maybe_progress(samples, steps)
        return self._reporter.progress(samples, steps, quality)

    def set_total(self, total_samples: int) -> None:
        """The samples the task expects to do in all (total= on later progress
        lines; lets the scheduler project energy). 0: unknown."""
        self._reporter.set_total(total_samples)

    def set_latency(self, batch: int, latency_ms: float) -> None:
        """The p95 latency of recent steps at batch size `batch` (batch= and
        latency_ms= on later progress lines)."""
        self._reporter.set_latency(batch, latency_ms)

    def shard_done(self, shard: int) -> bool:
        return self._reporter.shard_done(shard)

    def target_reached(self, quality: Optional[float] = None) -> bool:
        return self._reporter.target_reached(quality)

    def waiting(self) -> bool:
        """Reports that this replica is out of shards and can take more."""
        return self._reporter.waiting()

    # -- Shards. ---------------------------------------------------------------

    def iter_shards(self, *, wait_s: Optional[float] = 0.0, poll_interval_s: float = 0.1,
                    report_done: bool = True) -> "ShardPass":
        """One pass over the shards this replica owns, taking up handovers.

        Follows ShardWorklist's rules (joule/shards.py): ascending order,
        shards handed over while the pass runs are taken up, shards taken
        away before they start are skipped, the shard in progress is always
        finished, none is yielded twice. A shard counts as finished when the
        caller asks for the next one; it is then reported as shard_done
        unless report_done is False (a trainer reports shards done only after
        its last epoch). A caller that breaks out of the loop leaves its
        shard unfinished.

        Out of shards: with wait_s 0 (the default) the pass ends. Otherwise
        "waiting" is reported once and the hints are polled every
        poll_interval_s for up to wait_s seconds (None: until shards come or
        stop). The pass also ends at a stop hint, before starting a shard.
        """
        return ShardPass(self, wait_s=wait_s, poll_interval_s=poll_interval_s,
                         report_done=report_done)

    # -- Simulated accelerators. -----------------------------------------------

    def pace(self, step_seconds: float, compute_seconds: Optional[float] = None) -> float:
        """Sleeps so that a step lasts step_seconds / device_speed.

        step_seconds: how long the step takes at full speed (e.g. the measured
        compute time, or a floor such as a --min-step-seconds flag);
        compute_seconds: the time the step has already taken (default:
        step_seconds). On real hardware (speed 1) this only sleeps out a
        step_seconds above compute_seconds; on a simulated GPU at speed s it
        stretches the step to step_seconds / s. Speeds are clamped to
        [MIN_DEVICE_SPEED, 1]. Returns the seconds slept.
        """
        if compute_seconds is None:
            compute_seconds = step_seconds
        speed = min(max(self.device_speed, MIN_DEVICE_SPEED), 1.0)
        delay = step_seconds / speed - compute_seconds
        if not delay > 0:
            return 0.0
        self._sleep(delay)
        return delay

    # -- Lifetime. -------------------------------------------------------------

    def close(self) -> None:
        """Closes the progress file; later reports do nothing."""
        self._reporter.close()

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class ShardPass:
    """The iterator Task.iter_shards returns: one pass over the owned shards.

    Besides iterating it tells which shards the pass finished (done) and
    which one is in progress (current). Not thread-safe; owned by the loop
    that iterates it.
    """

    def __init__(self, task: Task, *, wait_s: Optional[float], poll_interval_s: float,
                 report_done: bool):
        if wait_s is not None and wait_s < 0:
            raise ValueError(f"wait_s must not be negative, got {wait_s}")
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be positive, got {poll_interval_s}")
        self._task = task
        self._wait_s = wait_s
        self._poll_interval_s = poll_interval_s
        self._report_done = report_done
        self._worklist = ShardWorklist(task._settings.shards)
        self._ended = False

    @property
    def done(self) -> frozenset[int]:
        """Shards finished in this pass so far."""
        return self._worklist.done

    @property
    def current(self) -> Optional[int]:
        """The shard last yielded, until the caller asks for the next one."""
        return self._worklist.current

    def __iter__(self) -> "ShardPass":
        return self

    def __next__(self) -> int:
        if self._ended:
            raise StopIteration
        task, worklist = self._task, self._worklist
        finished = worklist.current
        if finished is not None:
            worklist.finish_current()
            if self._report_done:
                task.shard_done(finished)
        idle_since: Optional[float] = None
        while True:
            task.poll()
            if worklist.owned != task._settings.shards:
                worklist.set_owned(task._settings.shards)
            if task._settings.stop:
                break
            shard = worklist.next()
            if shard is not None:
                return shard
            now = task._clock()
            if idle_since is None:
                idle_since = now
                if self._wait_s is None or self._wait_s > 0:
                    task.waiting()
            if self._wait_s is None:
                task._sleep(self._poll_interval_s)
                continue
            remaining = self._wait_s - (now - idle_since)
            if remaining <= 0:
                break
            task._sleep(min(self._poll_interval_s, remaining))
        self._ended = True
        raise StopIteration
