"""PyTorch helpers for Joule tasks: dynamic-shard samplers and a training loop.

Joule splits a job's data into JOULE_SHARD_COUNT shards and tells each replica
which it owns (JOULE_SHARDS), moving unstarted shards between replicas while
they run (hints file `shards=`). Here a map-style dataset of n items is split
into shard_count contiguous shards (joule.shards.contiguous_shard_bounds);
the samplers yield the indices of the shards the replica owns now, take up
shards handed over mid-pass and (unless told not to) report `shard_done` as
each shard is used up.

fit() is a training loop for such a dataset, alone or under
DistributedDataParallel (one process per replica):

1. Each epoch starts with the live batch size (a batch_size hint takes effect
   at the next epoch: the DataLoader is rebuilt) and re-projects total=.
2. Each step trains one batch, paces it (min_step_seconds, device_speed) and
   reports progress (throttled). A stop hint ends this rank's epoch early.
   Ranks may run different numbers of steps (uneven shards, a rank that
   stopped): the epoch runs inside DDP's join context, which shadows the
   collectives of ranks that ran out.
3. At the epoch end every rank evaluates and one all_reduce combines the
   quality (averaged over ranks) and the ranks' stop flags, so all ranks see
   the same quality and take the same decision: the job stops everywhere when
   the target is met (each rank reports target_reached) or when any rank had
   a stop hint.
4. Shards are reported done after the last epoch only (the one that reached
   the target, or max_epochs), as the C++ mlp_trainer does: to the sharder a
   done shard needs no more work, so reporting after every epoch would let it
   take the shards away before the next one. A stopped run reports none.

Shard reports are exact with num_workers=0 (the default): a shard is reported
done when the loop asks for the batch after its last one. With worker
processes the DataLoader prefetches, so reports come a few batches early.

Threading: everything runs on the caller's thread; not thread-safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from typing import Callable, Iterator, List, Optional

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from joule.shards import contiguous_shard_bounds
from joule.task import ShardPass, Task


def _shard_order(item_count: int, shard_count: int, shard: int, shuffle: bool,
                 seed: int, epoch: int) -> List[int]:
    indices = list(contiguous_shard_bounds(item_count, shard_count, shard))
    if shuffle:
        # A string seed is hashed deterministically (unlike hash() of a tuple),
        # so the order depends only on (seed, epoch, shard), not on the run.
        random.Random(f"joule:{seed}:{epoch}:{shard}").shuffle(indices)
    return indices


class ShardSampler(Sampler):
    """Dataset indices of the shards the task owns now, shard after shard.

    One pass per iteration (Task.iter_shards rules: ascending shards,
    handovers taken up; a shard is finished, and reported done unless
    report_done is False, when the index after its last is asked for).
    last_pass is the latest pass (its .done: the shards it finished).
    shuffle permutes indices within each shard, seeded by (seed, epoch,
    shard); call set_epoch each epoch. len() is the count in the shards owned
    at the time of the call.
    """

    def __init__(self, task: Task, dataset_size: int, *, shuffle: bool = False,
                 seed: int = 0, wait_s: Optional[float] = 0.0, report_done: bool = True):
        if dataset_size < 0:
            raise ValueError(f"dataset_size must not be negative, got {dataset_size}")
        self._task = task
        self._size = dataset_size
        self._shuffle = shuffle
        self._seed = seed
        self._wait_s = wait_s
        self._report_done = report_done
        self._epoch = 0
        self.last_pass: Optional[ShardPass] = None

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def __iter__(self) -> Iterator[int]:
        self.last_pass = self._task.iter_shards(wait_s=self._wait_s,
                                                report_done=self._report_done)
        for shard in self.last_pass:
            yield from _shard_order(self._size, self._task.shard_count, shard,
                                    self._shuffle, self._seed, self._epoch)

    def __len__(self) -> int:
        count = self._task.shard_count
        return sum(len(contiguous_shard_bounds(self._size, count, s)) for s in self._task.shards)


class ShardBatchSampler(ShardSampler):
    """Batches of dataset indices, each within one owned shard (for
    DataLoader(batch_sampler=...)).

    Like ShardSampler, but a batch never spans two shards, so a shard is
    finished (and reported done, unless report_done is False) right after
    its last batch was used, when the next batch is asked for; a shard's last
    batch may be smaller unless drop_last. last_pass as in ShardSampler.
    """

    def __init__(self, task: Task, dataset_size: int, batch_size: int, *,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                 wait_s: Optional[float] = 0.0, report_done: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        super().__init__(task, dataset_size, shuffle=shuffle, seed=seed, wait_s=wait_s,
                         report_done=report_done)
        self.batch_size = batch_size
        self._drop_last = drop_last

    def __iter__(self) -> Iterator[List[int]]:
        self.last_pass = self._task.iter_shards(wait_s=self._wait_s,
                                                report_done=self._report_done)
        for shard in self.last_pass:
            order = _shard_order(self._size, self._task.shard_count, shard,
                                 self._shuffle, self._seed, self._epoch)
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                if self._drop_last and len(batch) < self.batch_size:
                    break
                yield batch

    def samples_owned(self) -> int:
        """Items in the shards owned now (those drop_last would skip included)."""
        return super().__len__()

    def __len__(self) -> int:
        count = self._task.shard_count
        batches = 0
        for shard in self._task.shards:
            n = len(contiguous_shard_bounds(self._size, count, shard))
            batches += n // self.batch_size if self._drop_last else -(-n // self.batch_size)
        return batches


@dataclasses.dataclass(frozen=True)
class EpochReport:
    """What fit() did in one epoch, as passed to on_epoch_end (counters are
    this rank's; quality is averaged over the ranks)."""

    epoch: int               # 1-based
    batch_size: int
    epoch_samples: int
    samples: int             # cumulative
    steps: int               # cumulative
    quality: Optional[float]
    target_reached: bool
    stopped: bool            # a stop hint on this or another rank


@dataclasses.dataclass(frozen=True)
class FitResult:
    """How fit() ended: counters are this rank's; quality is the last epoch's
    rank-averaged quality (None without evaluate)."""

    epochs: int
    samples: int
    steps: int
    quality: Optional[float]
    target_reached: bool
    stopped: bool


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _batch_length(batch) -> int:
    first = batch[0] if isinstance(batch, (list, tuple)) else batch
    return len(first)


def _move(batch, device):
    if device is None:
        return batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(_move(item, device) for item in batch)
    return batch.to(device) if hasattr(batch, "to") else batch


def fit(task: Task, model: torch.nn.Module, dataset, *,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable,
        max_epochs: int,
        evaluate: Optional[Callable[[torch.nn.Module], float]] = None,
        target_quality: Optional[float] = None,
        higher_is_better: bool = True,
        shuffle: bool = True,
        seed: int = 0,
        min_step_seconds: float = 0.0,
        collate_fn: Optional[Callable] = None,
        num_workers: int = 0,
        device: Optional[torch.device] = None,
        on_epoch_end: Optional[Callable[[EpochReport], None]] = None) -> FitResult:
    """Trains `model` on the task's shards of `dataset` (algorithm: module docstring).

    model: a module, or a DistributedDataParallel around one (then the
    process group must be initialized and every rank must call fit with the
    same max_epochs). dataset: map-style, items (inputs, targets) or
    anything collate_fn turns into a batch whose first element has the
    batch's length; loss_fn(model(inputs), targets) is the loss to minimize.
    evaluate(module) returns this rank's quality metric (e.g. validation
    accuracy); it runs on the unwrapped module in eval mode under no_grad, so
    it causes no collective. target_quality: stop once the (rank-averaged)
    quality is >= it (<= it when not higher_is_better). min_step_seconds: a
    floor on a step's time at full speed; steps are stretched on simulated
    devices (Task.pace).

    Teardown under DDP: drop the DDP model (and anything holding it) before
    dist.destroy_process_group(). With torch 1.13, if the gloo process
    group's last reference goes with the DDP reducer, its destructor waits
    for gloo's worker threads while holding the GIL and can deadlock at exit
    (examples/jobs/digits_ddp.py shows the order).
    """
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}")
    if target_quality is not None and evaluate is None:
        raise ValueError("target_quality needs an evaluate function to measure quality")
    distributed = _distributed()
    world_size = dist.get_world_size() if distributed else 1
    is_ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    if is_ddp and not distributed:
        raise ValueError("model is DistributedDataParallel but no process group is initialized")
    module = _unwrap(model)

    samples = steps = 0
    quality: Optional[float] = None
    reached = stopped = False
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        batch_size = task.batch_size
        sampler = ShardBatchSampler(task, len(dataset), batch_size, shuffle=shuffle,
                                    seed=seed, report_done=False)
        sampler.set_epoch(epoch)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn,
                            num_workers=num_workers)
        task.set_total(samples + sampler.samples_owned() * (max_epochs - epoch + 1))

        model.train()
        epoch_samples = 0
        join = model.join() if is_ddp else contextlib.nullcontext()
        with join:
            for batch in loader:
                started = time.perf_counter()
                inputs, targets = _move(batch, device)[:2]
                optimizer.zero_grad()
                loss = loss_fn(model(inputs), targets)
                loss.backward()
                optimizer.step()
                compute_s = time.perf_counter() - started
                task.pace(max(min_step_seconds, compute_s), compute_s)
                n = _batch_length(batch)
                epoch_samples += n
                samples += n
                steps += 1
                task.progress(samples, steps)
                if task.should_stop:
                    break

        local_quality = None
        if evaluate is not None:
            module.eval()
            with torch.no_grad():
                local_quality = float(evaluate(module))
            module.train()
        stop_here = task.should_stop
        if distributed:
            combined = torch.tensor([local_quality or 0.0, 1.0 if stop_here else 0.0],
                                    dtype=torch.float64)
            dist.all_reduce(combined)
            quality = combined[0].item() / world_size if evaluate is not None else None
            stopped = combined[1].item() > 0
        else:
            quality, stopped = local_quality, stop_here

        task.progress(samples, steps, quality=quality, force=True)
        if target_quality is not None and quality is not None and (
                quality >= target_quality if higher_is_better else quality <= target_quality):
            reached = True
            task.target_reached(quality)
        if (reached or (epoch == max_epochs and not stopped)) and sampler.last_pass is not None:
            for shard in sorted(sampler.last_pass.done):
                task.shard_done(shard)
        if on_epoch_end is not None:
            on_epoch_end(EpochReport(epoch=epoch, batch_size=batch_size,
                                     epoch_samples=epoch_samples, samples=samples,
                                     steps=steps, quality=quality, target_reached=reached,
                                     stopped=stopped))
        if reached or stopped:
            break

    task.progress(samples, steps, force=True)
    return FitResult(epochs=epoch, samples=samples, steps=steps, quality=quality,
                     target_reached=reached, stopped=stopped)
