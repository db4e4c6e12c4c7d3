"""Tests of joule.torch: the shard samplers and fit() in one process.

Skipped when torch cannot be imported (the library's core needs only the
standard library). The multi-process DDP path is covered by
test_digits_ddp.py.
"""

from __future__ import annotations

import unittest

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    torch = None

import joule

from tests.helpers import FakeTime, TempDirTestCase, write_atomically

if torch is not None:
    import joule.torch as joule_torch

SKIP_REASON = "torch is not importable by this interpreter (try Debian's /usr/bin/python3)"


@unittest.skipIf(torch is None, SKIP_REASON)
class TorchTestCase(TempDirTestCase):

    def setUp(self):
        super().setUp()
        self.time = FakeTime()
        torch.manual_seed(0)

    def make_task(self, shards="0-3", batch_size="4", shard_count="8") -> joule.Task:
        task = joule.task({"JOULE_PROGRESS_FILE": self.progress_path,
                           "JOULE_HINTS_FILE": self.hints_path,
                           "JOULE_SHARD_COUNT": shard_count, "JOULE_SHARDS": shards,
                           "JOULE_BATCH_SIZE": batch_size},
                          clock=self.time.clock, sleep=self.time.sleep)
        self.addCleanup(task.close)
        return task


class ShardSamplerTest(TorchTestCase):

    def test_batches_stay_within_owned_shards(self):
        task = self.make_task()
        # 20 items in 8 shards: [0,2) [2,5) [5,7) [7,10) [10,12) ...
        sampler = joule_torch.ShardBatchSampler(task, 20, 2)
        self.assertEqual(len(sampler), 1 + 2 + 1 + 2)
        batches = iter(sampler)
        self.assertEqual(next(batches), [0, 1])
        self.assertEqual(self.progress_lines(), [])
        self.assertEqual(next(batches), [2, 3])           # Shard 0 used up.
        self.assertEqual(self.progress_lines(), ["shard_done shard=0"])
        self.assertEqual(list(batches), [[4], [5, 6], [7, 8], [9]])
        self.assertEqual(self.progress_lines(),
                         [f"shard_done shard={k}" for k in range(4)])

    def test_takes_up_a_handover_mid_pass(self):
        task = self.make_task(shards="0-1")
        sampler = joule_torch.ShardBatchSampler(task, 16, 2, report_done=False)
        seen = []
        for batch in sampler:
            seen.append(batch)
            if batch == [0, 1]:
                write_atomically(self.hints_path, "shards=1,7\n")
        self.assertEqual(seen, [[0, 1], [2, 3], [14, 15]])
        self.assertEqual(sampler.last_pass.done, frozenset({0, 1, 7}))
        self.assertEqual(self.progress_lines(), [])

    def test_drop_last(self):
        task = self.make_task(shards="1")
        sampler = joule_torch.ShardBatchSampler(task, 20, 2, drop_last=True)
        self.assertEqual(len(sampler), 1)
        self.assertEqual(list(sampler), [[2, 3]])

    def test_index_sampler_shuffles_within_shards_reproducibly(self):
        task = self.make_task(shards="2,5")
        sampler = joule_torch.ShardSampler(task, 80, shuffle=True, seed=3, report_done=False)
        sampler.set_epoch(1)
        first = list(sampler)
        self.assertEqual(len(sampler), 20)
        self.assertEqual(sorted(first[:10]), list(range(20, 30)))
        self.assertEqual(sorted(first[10:]), list(range(50, 60)))
        self.assertEqual(list(sampler), first)
        sampler.set_epoch(2)
        self.assertNotEqual(list(sampler), first)

    def test_rejects_bad_sizes(self):
        task = self.make_task()
        with self.assertRaises(ValueError):
            joule_torch.ShardBatchSampler(task, 10, 0)
        with self.assertRaises(ValueError):
            joule_torch.ShardSampler(task, -1)


def blobs(n: int, seed: int):
    """Two well separated Gaussian blobs in 2-D, labels 0 and 1."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=generator)
    points = torch.randn(n, 2, generator=generator) * 0.5 + (labels.float() * 4 - 2).unsqueeze(1)
    return points, labels


class FitTest(TorchTestCase):

    def setUp(self):
        super().setUp()
        self.train_x, self.train_y = blobs(64, seed=1)
        self.val_x, self.val_y = blobs(64, seed=2)
        self.model = torch.nn.Linear(2, 2)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.batch_sizes = []

    def accuracy(self, module):
        return (module(self.val_x).argmax(1) == self.val_y).float().mean().item()

    def fit(self, task, loss_fn=None, **kwargs):
        def recording_loss(outputs, targets):
            self.batch_sizes.append(len(targets))
            return torch.nn.functional.cross_entropy(outputs, targets)
        kwargs.setdefault("evaluate", self.accuracy)
        return joule_torch.fit(
            task, self.model, torch.utils.data.TensorDataset(self.train_x, self.train_y),
            optimizer=self.optimizer, loss_fn=loss_fn or recording_loss, **kwargs)

    def lines_starting(self, prefix):
        return [line for line in self.progress_lines() if line.startswith(prefix)]

    def test_reaches_the_target_and_reports(self):
        task = self.make_task()
        result = self.fit(task, max_epochs=20, target_quality=0.95)
        self.assertTrue(result.target_reached)
        self.assertFalse(result.stopped)
        self.assertGreaterEqual(result.quality, 0.95)
        self.assertLess(result.epochs, 20)
        self.assertEqual(result.samples, 32 * result.epochs)   # Shards 0-3: half of 64.
        quality_lines = self.lines_starting("progress")
        self.assertTrue(all("quality=" in line for line in quality_lines[-result.epochs:]))
        self.assertIn(f"total={32 * 20}", quality_lines[0])
        self.assertEqual(self.lines_starting("target_reached"),
                         [f"target_reached quality={result.quality:.6g}"])
        # Shards are reported once, after the last epoch.
        self.assertEqual(self.lines_starting("shard_done"),
                         [f"shard_done shard={k}" for k in range(4)])
        self.assertEqual(self.progress_lines()[-4:], self.lines_starting("shard_done"))

    def test_runs_every_epoch_without_a_target(self):
        task = self.make_task()
        epochs = []
        result = self.fit(task, max_epochs=3, on_epoch_end=epochs.append)
        self.assertEqual((result.epochs, result.target_reached), (3, False))
        self.assertEqual([e.epoch for e in epochs], [1, 2, 3])
        self.assertEqual(len(self.lines_starting("shard_done")), 4)
        self.assertEqual(self.lines_starting("target_reached"), [])

    def test_batch_size_hints_apply_at_the_next_epoch(self):
        task = self.make_task(batch_size="4")
        epochs = []

        def loss_and_hint(outputs, targets):
            self.batch_sizes.append(len(targets))
            if len(self.batch_sizes) == 1:
                write_atomically(self.hints_path, "batch_size=8\n")
            return torch.nn.functional.cross_entropy(outputs, targets)

        self.fit(task, loss_fn=loss_and_hint, max_epochs=2, on_epoch_end=epochs.append)
        self.assertEqual([e.batch_size for e in epochs], [4, 8])
        # 32 samples in shards of 8: epoch 1 all 4s, epoch 2 all 8s.
        self.assertEqual(self.batch_sizes, [4] * 8 + [8] * 4)

    def test_a_stop_hint_ends_the_epoch_early(self):
        task = self.make_task()

        def loss_and_stop(outputs, targets):
            self.batch_sizes.append(len(targets))
            if len(self.batch_sizes) == 3:
                write_atomically(self.hints_path, "stop=1\n")
            return torch.nn.functional.cross_entropy(outputs, targets)

        result = self.fit(task, loss_fn=loss_and_stop, max_epochs=5, target_quality=1.1)
        self.assertTrue(result.stopped)
        self.assertEqual((result.epochs, result.steps, result.samples), (1, 3, 12))
        self.assertEqual(self.lines_starting("shard_done"), [])
        self.assertEqual(self.lines_starting("target_reached"), [])
        self.assertIn("quality=", self.progress_lines()[-1])

    def test_paces_every_step(self):
        task = self.make_task()
        write_atomically(self.hints_path, "device_speed=0.5\n")
        result = self.fit(task, max_epochs=1, min_step_seconds=0.5)
        self.assertEqual(len(self.time.sleeps), result.steps)
        self.assertTrue(all(0.9 < s <= 1.0 for s in self.time.sleeps), self.time.sleeps)

    def test_argument_errors(self):
        task = self.make_task()
        with self.assertRaises(ValueError):
            self.fit(task, max_epochs=0)
        with self.assertRaises(ValueError):
            self.fit(task, max_epochs=1, evaluate=None, target_quality=0.5)


if __name__ == "__main__":
    unittest.main()
