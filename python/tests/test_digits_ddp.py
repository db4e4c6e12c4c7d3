"""End-to-end tests of examples/jobs/digits_ddp.py: a gang of two processes
on localhost, as Joule would start it, checked through its progress files.

Each test starts two ranks (gloo over 127.0.0.1 on a port the OS picked),
rank 0 owning shards 0-3 and rank 1 shards 4-7 of 8, each with its own
progress and hints files in a temporary directory. Every wait has a deadline,
and processes still running at the end of a test are killed.

Skipped when torch or sklearn cannot be imported by this interpreter.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import unittest

from joule import contract

from tests.helpers import DIGITS_DDP, TempDirTestCase, read_lines, write_atomically

HAVE_DEPS = all(importlib.util.find_spec(name) is not None for name in ("torch", "sklearn"))
SKIP_REASON = ("torch and sklearn are not importable by this interpreter "
               "(try Debian's /usr/bin/python3)")

RUN_TIMEOUT_S = 90
SHARDS = ("0-3", "4-7")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@unittest.skipUnless(HAVE_DEPS, SKIP_REASON)
class DigitsDdpTest(TempDirTestCase):

    def start_gang(self, *args: str) -> list:
        port = str(free_port())
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("JOULE_") and k not in (
                    "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK",
                    "LOCAL_WORLD_SIZE")}
        procs = []
        for rank, shards in enumerate(SHARDS):
            env = dict(base, MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                       WORLD_SIZE=str(len(SHARDS)), RANK=str(rank), LOCAL_RANK="0",
                       LOCAL_WORLD_SIZE="1", JOULE_REPLICA_INDEX=str(rank),
                       JOULE_REPLICA_COUNT=str(len(SHARDS)), JOULE_SHARDS=shards,
                       JOULE_SHARD_COUNT="8", JOULE_BATCH_SIZE="32",
                       JOULE_PROGRESS_FILE=self.progress(rank),
                       JOULE_HINTS_FILE=self.hints(rank))
            proc = subprocess.Popen([sys.executable, DIGITS_DDP, "--dist-timeout-s", "60", *args],
                                    env=env, cwd=self.dir, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            self.addCleanup(self.kill, proc)
            procs.append(proc)
        return procs

    @staticmethod
    def kill(proc) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()

    def progress(self, rank: int) -> str:
        return os.path.join(self.dir, f"progress.{rank}")

    def hints(self, rank: int) -> str:
        return os.path.join(self.dir, f"hints.{rank}")

    def events(self, rank: int) -> list:
        return [contract.parse_progress_line(line) for line in read_lines(self.progress(rank))]

    def finish(self, procs, timeout_s: float) -> list:
        """(returncode, stdout, stderr) of each process; fails past the deadline."""
        deadline = time.monotonic() + timeout_s
        results = []
        for rank, proc in enumerate(procs):
            try:
                out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.fail(f"rank {rank} still running after {timeout_s} s")
            results.append((proc.returncode, out, err))
        for rank, (code, out, err) in enumerate(results):
            self.assertEqual(code, 0, f"rank {rank} exited {code}\nstdout:\n{out}\nstderr:\n{err}")
        return results

    def test_two_ranks_reach_the_target(self):
        results = self.finish(self.start_gang("--target-accuracy", "0.95", "--max-epochs", "20"),
                              RUN_TIMEOUT_S)
        self.assertIn("target_reached=1", results[0][1])
        self.assertRegex(results[0][1], r"epoch 1 batch=32 accuracy=0\.\d+ samples=\d+")
        for rank, shards in enumerate(SHARDS):
            with self.subTest(rank=rank):
                events = self.events(rank)
                qualities = [e.quality for e in events
                             if e.type == contract.PROGRESS and e.quality is not None]
                self.assertGreaterEqual(len(qualities), 1)
                reached = [e for e in events if e.type == contract.TARGET_REACHED]
                self.assertEqual(len(reached), 1)
                self.assertGreaterEqual(reached[0].quality, 0.95)
                self.assertEqual(reached[0].quality, qualities[-1])
                done = [e.shard for e in events if e.type == contract.SHARD_DONE]
                self.assertEqual(sorted(done), sorted(contract.parse_range_list(shards)))
                counters = [e.samples for e in events if e.type == contract.PROGRESS]
                self.assertEqual(counters, sorted(counters))

    def test_a_stop_hint_to_one_rank_stops_both(self):
        # A learning rate too small to learn and an unreachable target: the
        # run would go on for hours unless stopped.
        procs = self.start_gang("--target-accuracy", "1.0", "--lr", "1e-6",
                                "--max-epochs", "100000", "--min-step-seconds", "0.005")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not all(any(e.quality is not None for e in self.events(rank))
                      for rank in range(len(SHARDS))):
            for rank, proc in enumerate(procs):
                if proc.poll() is not None:
                    self.fail(f"rank {rank} exited {proc.returncode} before the stop hint:\n"
                              f"{proc.communicate()[1]}")
            if time.monotonic() > deadline:
                self.fail("no epoch finished on both ranks in time")
            time.sleep(0.05)

        write_atomically(self.hints(1), "batch_size=32\nshards=4-7\nstop=1\n")
        results = self.finish(procs, RUN_TIMEOUT_S)
        self.assertIn("stopped=1", results[0][1])
        self.assertIn("target_reached=0", results[0][1])
        for rank in range(len(SHARDS)):
            with self.subTest(rank=rank):
                events = self.events(rank)
                self.assertEqual([e for e in events if e.type == contract.TARGET_REACHED], [])
                self.assertEqual([e for e in events if e.type == contract.SHARD_DONE], [])
                self.assertIsNotNone(events[-1].quality)


if __name__ == "__main__":
    unittest.main()
