#!/usr/bin/python3
"""A real PyTorch Joule task: a small CNN on sklearn's handwritten digits.

Trains on the CPU with data parallelism over the gang (torch.distributed,
gloo backend, rendezvous from MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK as the
agent or torchrun set them); a single process (WORLD_SIZE unset or 1) trains
alone. The data is sklearn.datasets.load_digits() (1,797 8x8 images, bundled,
no download) with a fixed, seeded validation split.

Through the joule library (python/joule) it follows the task contract: the
training split is cut into JOULE_SHARD_COUNT shards (--shard-count by hand)
and each rank trains on the shards it owns (JOULE_SHARDS; by hand, rank r of
W takes the r-th contiguous block), taking up shards handed over mid-run; it
starts with JOULE_BATCH_SIZE (--batch-size by hand) and applies batch_size
hints at epoch boundaries; it reports progress each step, validation accuracy
as quality each epoch, target_reached at --target-accuracy, shard_done per
shard; it stops early (all ranks together) on stop=1 and paces steps by the
simulated device_speed.

Stdout (rank 0): one line per epoch, then a summary:

  epoch 1 batch=32 accuracy=0.9333 samples=718
  done epochs=2 accuracy=0.9639 target_reached=1 stopped=0

Exit status: 0 when the target is reached, the epochs are done or a stop hint
ended the run; 2 for a bad flag or contract variable; 1 for any other error
(the message says what failed).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import importlib
import os
import sys

PROGRAM = "digits_ddp"


def _import_joule():
    """The joule package: installed, else from this checkout's python/."""
    try:
        import joule
    except ImportError:
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.normpath(os.path.join(here, "..", "..", "python")))
        import joule
    import joule.torch
    return joule


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Train a small CNN on sklearn's digits as a Joule task.")
    parser.add_argument("--target-accuracy", type=float, default=0.95,
                        help="stop once validation accuracy reaches this (default 0.95)")
    parser.add_argument("--max-epochs", type=int, default=30,
                        help="stop after this many epochs (default 30)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed for the weights, the validation split and shuffling")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="batch size when JOULE_BATCH_SIZE is unset (default 32)")
    parser.add_argument("--shard-count", type=int, default=8,
                        help="shards when JOULE_SHARD_COUNT is unset (default 8)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="held-out validation fraction (default 0.2)")
    parser.add_argument("--min-step-seconds", type=float, default=0.0,
                        help="minimum time of a training step at full speed, before pacing "
                             "by device_speed (default 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads per process (default 1)")
    parser.add_argument("--dist-timeout-s", type=float, default=60.0,
                        help="timeout of the process group's rendezvous and collectives")
    args = parser.parse_args(argv)
    if not 0.0 < args.target_accuracy <= 1.0:
        parser.error("--target-accuracy must be in (0, 1]")
    if args.max_epochs < 1:
        parser.error("--max-epochs must be at least 1")
    if not args.lr > 0.0:
        parser.error("--lr must be positive")
    if not 1 <= args.batch_size <= 1 << 20:
        parser.error("--batch-size must be in 1..1048576")
    if not 1 <= args.shard_count <= 1 << 20:
        parser.error("--shard-count must be in 1..1048576")
    if not 0.0 < args.val_fraction < 1.0:
        parser.error("--val-fraction must be in (0, 1)")
    if args.min_step_seconds < 0.0:
        parser.error("--min-step-seconds must not be negative")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if not args.dist_timeout_s > 0.0:
        parser.error("--dist-timeout-s must be positive")
    return args


def load_digits_split(val_fraction: float, seed: int):
    """(train_x, train_y, val_x, val_y): images as float tensors [N, 1, 8, 8]
    scaled to [0, 1], split by a permutation seeded with `seed`."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.from_numpy(np.random.RandomState(seed).permutation(len(labels)))
    val_count = int(round(len(labels) * val_fraction))
    val, train = order[:val_count], order[val_count:]
    return images[train], labels[train], images[val], labels[val]


def build_model():
    import torch.nn as nn
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),                                  # 32 x 4 x 4
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(args, task, joule, rank: int, distributed: bool):
    """Builds the data and the model and runs joule.torch.fit; returns its result.

    Everything that references the DDP model lives in this frame, so it is
    gone when this returns: see main() for why that matters.
    """
    import torch
    from torch.utils.data import TensorDataset

    train_x, train_y, val_x, val_y = load_digits_split(args.val_fraction, args.seed)
    model = build_model()
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    def accuracy(module):
        predicted = module(val_x).argmax(dim=1)
        return (predicted == val_y).float().mean().item()

    def print_epoch(report):
        if rank == 0:
            print(f"epoch {report.epoch} batch={report.batch_size} "
                  f"accuracy={report.quality:.4f} samples={report.epoch_samples}", flush=True)

    return joule.torch.fit(
        task, model, TensorDataset(train_x, train_y),
        optimizer=optimizer, loss_fn=torch.nn.functional.cross_entropy,
        max_epochs=args.max_epochs, evaluate=accuracy,
        target_quality=args.target_accuracy, seed=args.seed,
        min_step_seconds=args.min_step_seconds, on_epoch_end=print_epoch)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        joule = _import_joule()
        importlib.import_module("sklearn")
        import torch
        import torch.distributed as dist
    except ImportError as error:
        print(f"{PROGRAM}: needs torch, sklearn and the joule library (python/ in the "
              f"checkout): {error}", file=sys.stderr)
        return 1

    try:
        env = joule.read_task_env(os.environ)
    except joule.ContractError as error:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
        return 2
    world_size = env.gang.world_size if env.gang and env.gang.world_size else 1
    rank = env.gang.rank if env.gang and env.gang.rank is not None else 0
    if env.shards is None and world_size > 1:
        # By hand, without JOULE_SHARDS: rank r takes the r-th contiguous block.
        count = env.shard_count or args.shard_count
        env = dataclasses.replace(env, shards=frozenset(
            range(rank * count // world_size, (rank + 1) * count // world_size)))
    task = joule.Task(env, default_batch_size=args.batch_size,
                      default_shard_count=args.shard_count)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    distributed = world_size > 1
    if distributed:
        try:
            dist.init_process_group(
                "gloo", init_method="env://", world_size=world_size, rank=rank,
                timeout=datetime.timedelta(seconds=args.dist_timeout_s))
        except (RuntimeError, ValueError, OSError) as error:
            print(f"{PROGRAM}: cannot join the process group (rank {rank} of {world_size}, "
                  f"MASTER_ADDR={os.environ.get('MASTER_ADDR')}, "
                  f"MASTER_PORT={os.environ.get('MASTER_PORT')}): {error}", file=sys.stderr)
            return 1

    try:
        result = train(args, task, joule, rank, distributed)
    except RuntimeError as error:
        print(f"{PROGRAM}: rank {rank}: training failed: {error}", file=sys.stderr)
        return 1
    finally:
        task.close()
        if distributed:
            # The DDP model must be gone before the process group: in torch
            # 1.13, if the group's last reference goes with the DDP reducer,
            # its destructor joins gloo's worker threads while holding the
            # GIL, and a worker freeing a tensor waits for the GIL: deadlock.
            # destroy_process_group releases the GIL around that destructor.
            gc.collect()
            dist.destroy_process_group()
    if rank == 0:
        print(f"done epochs={result.epochs} accuracy={result.quality:.4f} "
              f"target_reached={int(result.target_reached)} stopped={int(result.stopped)}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
