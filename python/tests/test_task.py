"""Tests of joule.Task and its parts (progress reporter, hints reader, live
settings, shard worklist and pass), with temporary progress and hints files
and a fake clock: no test waits on the wall clock."""

from __future__ import annotations

import contextlib
import io
import os
import time
import unittest
from unittest import mock

import joule
from joule import contract
from joule.hints import HintsReader, LiveSettings
from joule.shards import ShardWorklist, contiguous_shard_bounds

from tests.helpers import FakeTime, TempDirTestCase, write_atomically


class TaskTestCase(TempDirTestCase):
    """Builds Tasks on the temp files with a fake clock."""

    def setUp(self):
        super().setUp()
        self.time = FakeTime()

    def make_task(self, extra_env=None, **kwargs) -> joule.Task:
        environ = {"JOULE_JOB_ID": "job-1", "JOULE_TASK_ID": "job-1.r0",
                   "JOULE_PROGRESS_FILE": self.progress_path,
                   "JOULE_HINTS_FILE": self.hints_path,
                   "JOULE_SHARD_COUNT": "8", "JOULE_SHARDS": "0-3", "JOULE_BATCH_SIZE": "64"}
        environ.update(extra_env or {})
        kwargs.setdefault("clock", self.time.clock)
        kwargs.setdefault("sleep", self.time.sleep)
        task = joule.task(environ, **kwargs)
        self.addCleanup(task.close)
        return task

    def write_hints(self, text: str) -> None:
        write_atomically(self.hints_path, text)


class OutsideJouleTest(TempDirTestCase):

    def test_is_a_no_op_that_owns_every_shard(self):
        fake = FakeTime()
        with contextlib.redirect_stderr(io.StringIO()) as stderr:
            task = joule.task({}, default_batch_size=16, default_shard_count=5,
                              clock=fake.clock, sleep=fake.sleep)
            self.assertFalse(task.under_joule)
            self.assertFalse(task.reporting)
            self.assertEqual(task.batch_size, 16)
            self.assertEqual(task.shards, frozenset(range(5)))
            self.assertEqual((task.replica_index, task.replica_count), (0, 1))
            self.assertFalse(task.should_stop)
            self.assertEqual(task.device_speed, 1.0)
            self.assertFalse(task.poll())
            self.assertFalse(task.progress(10, 1, force=True))
            self.assertFalse(task.target_reached(0.9))
            self.assertEqual(list(task.iter_shards(wait_s=5)), [0, 1, 2, 3, 4])
            self.assertEqual(task.pace(0.5), 0.0)
        self.assertEqual(stderr.getvalue(), "")
        self.assertEqual(os.listdir(self.dir), [])

    def test_reads_the_process_environment_by_default(self):
        with mock.patch.dict(os.environ, {"JOULE_BATCH_SIZE": "12"}):
            self.assertEqual(joule.task().batch_size, 12)

    def test_rejects_bad_defaults(self):
        with self.assertRaises(ValueError):
            joule.Task(default_batch_size=0)
        with self.assertRaises(ValueError):
            joule.Task(default_shard_count=0)


class SettingsTest(TaskTestCase):

    def test_reads_the_environment(self):
        task = self.make_task({"JOULE_REPLICA_INDEX": "1", "JOULE_REPLICA_COUNT": "2"})
        self.assertTrue(task.under_joule)
        self.assertEqual((task.job_id, task.task_id), ("job-1", "job-1.r0"))
        self.assertEqual((task.replica_index, task.replica_count), (1, 2))
        self.assertEqual((task.batch_size, task.shard_count), (64, 8))
        self.assertEqual(task.shards, frozenset({0, 1, 2, 3}))

    def test_rank_and_world_size_stand_in(self):
        task = self.make_task({"RANK": "1", "WORLD_SIZE": "3"})
        self.assertEqual((task.replica_index, task.replica_count), (1, 3))

    def test_empty_shards_means_none_yet(self):
        task = self.make_task({"JOULE_SHARDS": ""})
        self.assertEqual(task.shards, frozenset())
        self.assertEqual(list(task.iter_shards()), [])

    def test_malformed_environment_names_the_variable(self):
        with self.assertRaises(joule.ContractError) as raised:
            self.make_task({"JOULE_SHARDS": "0-9"})
        self.assertTrue(str(raised.exception).startswith("JOULE_SHARDS:"))

    def test_hints_present_at_start_apply_at_once(self):
        self.write_hints("batch_size=8\nshards=4-5\n")
        task = self.make_task()
        self.assertEqual((task.batch_size, task.shards), (8, frozenset({4, 5})))


class ProgressTest(TaskTestCase):

    def test_throttles_periodic_reports_and_skips_repeats(self):
        task = self.make_task(progress_interval_s=1.0)
        self.assertTrue(task.progress(64, 1))        # First line: always.
        self.time.advance(0.5)
        self.assertFalse(task.progress(128, 2))      # Within the interval.
        self.time.advance(0.6)
        self.assertTrue(task.progress(192, 3))       # 1.1 s after the first.
        self.time.advance(5)
        self.assertFalse(task.progress(192, 3))      # Same counters: no news.
        self.assertTrue(task.progress(256, 4, quality=0.5))  # Quality: forced.
        self.assertFalse(task.progress(256, 4, force=True))  # An exact repeat.
        self.assertFalse(task.progress(256, 4, quality=0.5))  # Same quality again.
        self.assertTrue(task.progress(256, 4, quality=0.75))  # New quality is news.
        self.time.advance(0.1)
        self.assertTrue(task.progress(300, 5, force=True))
        self.assertFalse(task.progress(320, 6))      # The forced line restarted the interval.
        self.assertEqual(self.progress_lines(), [
            "progress samples=64 steps=1",
            "progress samples=192 steps=3",
            "progress samples=256 steps=4 quality=0.5",
            "progress samples=256 steps=4 quality=0.75",
            "progress samples=300 steps=5",
        ])

    def test_total_latency_and_events(self):
        task = self.make_task()
        task.set_total(5000)
        task.set_latency(64, 12.3456)
        task.progress(64, 1, quality=1 / 3)
        task.shard_done(2)
        task.waiting()
        task.target_reached(0.951)
        task.target_reached()
        task.set_total(0)
        task.set_latency(0, 0)
        task.progress(128, 2, force=True)
        self.assertEqual(self.progress_lines(), [
            "progress samples=64 steps=1 total=5000 batch=64 latency_ms=12.346 quality=0.333333",
            "shard_done shard=2",
            "waiting",
            "target_reached quality=0.951",
            "target_reached",
            "progress samples=128 steps=2",
        ])

    def test_appends_to_an_existing_file(self):
        with open(self.progress_path, "w") as f:
            f.write("progress samples=1 steps=1\n")
        task = self.make_task()
        task.shard_done(0)
        self.assertEqual(self.progress_lines(),
                         ["progress samples=1 steps=1", "shard_done shard=0"])

    def test_each_line_is_one_write(self):
        task = self.make_task()
        with mock.patch("joule.progress.os.write", wraps=os.write) as write:
            task.progress(1, 1, quality=0.5)
            task.shard_done(1)
        self.assertEqual([c.args[1] for c in write.call_args_list],
                         [b"progress samples=1 steps=1 quality=0.5\n", b"shard_done shard=1\n"])

    def test_a_failed_write_warns_once_and_never_raises(self):
        if not os.path.exists("/dev/full"):
            self.skipTest("needs /dev/full to make writes fail")
        with contextlib.redirect_stderr(io.StringIO()) as stderr:
            task = self.make_task({"JOULE_PROGRESS_FILE": "/dev/full"})
            self.assertFalse(task.progress(1, 1, force=True))
            self.assertFalse(task.shard_done(0))
            self.assertFalse(task.target_reached(1.0))
        warnings = stderr.getvalue().splitlines()
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("/dev/full", warnings[0])
        self.assertIn("the task keeps running", warnings[0])

    def test_an_unopenable_file_warns_once_and_disables_reporting(self):
        path = os.path.join(self.dir, "missing-dir", "progress")
        with contextlib.redirect_stderr(io.StringIO()) as stderr:
            task = self.make_task({"JOULE_PROGRESS_FILE": path})
            self.assertFalse(task.reporting)
            self.assertFalse(task.progress(1, 1, force=True))
        warnings = stderr.getvalue().splitlines()
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn(path, warnings[0])

    def test_close_stops_reporting(self):
        with self.make_task() as task:
            task.shard_done(0)
        task.shard_done(1)
        self.assertEqual(self.progress_lines(), ["shard_done shard=0"])


class HintsReaderTest(TempDirTestCase):

    def test_missing_file_means_no_hints(self):
        reader = HintsReader(self.hints_path)
        self.assertFalse(reader.poll())
        self.assertEqual(reader.current, contract.Hints())

    def test_detects_atomic_rewrites_and_removal(self):
        reader = HintsReader(self.hints_path)
        write_atomically(self.hints_path, "batch_size=8\n")
        self.assertTrue(reader.poll())
        self.assertEqual(reader.current.batch_size, 8)
        self.assertFalse(reader.poll())
        write_atomically(self.hints_path, "batch_size=16\n")
        self.assertTrue(reader.poll())
        self.assertEqual(reader.current.batch_size, 16)
        os.remove(self.hints_path)
        self.assertTrue(reader.poll())
        self.assertEqual(reader.current, contract.Hints())

    def test_unchanged_old_file_costs_one_stat(self):
        write_atomically(self.hints_path, "stop=0\n")
        later = time.time_ns() + 10 * 10**9  # Well past the recent window.
        reader = HintsReader(self.hints_path, wall_clock_ns=lambda: later)
        self.assertTrue(reader.poll())
        with mock.patch("builtins.open", side_effect=AssertionError("re-read")), \
                mock.patch("joule.hints.os.stat", wraps=os.stat) as stat:
            self.assertFalse(reader.poll())
        self.assertEqual(stat.call_count, 1)

    def test_recent_same_size_rewrite_is_caught_by_rereading(self):
        write_atomically(self.hints_path, "batch_size=16\n")
        st = os.stat(self.hints_path)
        now_ns = [st.st_mtime_ns + 5 * 10**9]
        reader = HintsReader(self.hints_path, wall_clock_ns=lambda: now_ns[0])
        self.assertTrue(reader.poll())
        # Rewrite in place with the same size and restore the mtime, so the
        # stat looks identical, as a rewrite within the timestamp granularity
        # that reused the inode would.
        with open(self.hints_path, "r+") as f:
            f.write("batch_size=32\n")
        os.utime(self.hints_path, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.assertEqual(os.stat(self.hints_path).st_ino, st.st_ino)
        self.assertFalse(reader.poll())                 # Old file: stat only, missed.
        now_ns[0] = st.st_mtime_ns + 5 * 10**8          # Within 1 s of the mtime.
        self.assertTrue(reader.poll())
        self.assertEqual(reader.current.batch_size, 32)

    def test_warns_once_per_content_naming_the_line(self):
        reader = HintsReader(self.hints_path)
        write_atomically(self.hints_path, "batch_size=0\nstop=1\n")
        with contextlib.redirect_stderr(io.StringIO()) as stderr:
            self.assertTrue(reader.poll())
            self.assertFalse(reader.poll())  # Re-read (recent) but same content.
        self.assertEqual(reader.current, contract.Hints(stop=True))
        warnings = stderr.getvalue().splitlines()
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn('line 1 "batch_size=0"', warnings[0])
        self.assertIn(self.hints_path, warnings[0])


class LiveSettingsTest(unittest.TestCase):

    def test_hints_override_while_present(self):
        settings = LiveSettings(batch_size=32, shard_count=8, shards={0, 1})
        settings.apply(contract.Hints(batch_size=8, device_speed=0.5, stop=True,
                                      shards=frozenset({2})))
        self.assertEqual((settings.batch_size, settings.device_speed, settings.stop,
                          settings.shards), (8, 0.5, True, frozenset({2})))
        settings.apply(contract.Hints())
        # batch size and speed come back; the shard set stays (a handover).
        self.assertEqual((settings.batch_size, settings.device_speed, settings.stop,
                          settings.shards), (32, 1.0, False, frozenset({2})))

    def test_shards_beyond_the_count_are_dropped_with_a_warning(self):
        settings = LiveSettings(batch_size=32, shard_count=4, shards={0})
        with contextlib.redirect_stderr(io.StringIO()) as stderr:
            settings.apply(contract.Hints(shards=frozenset({1, 4, 5})))
        self.assertEqual(settings.shards, frozenset({1}))
        self.assertIn("4-5", stderr.getvalue())
        self.assertIn("shard count 4", stderr.getvalue())


class TaskHintsTest(TaskTestCase):

    def test_properties_follow_the_hints_file(self):
        task = self.make_task()
        self.write_hints("batch_size=16\nshards=1,6\nstop=0\ndevice_speed=0.5\n")
        self.assertEqual(task.batch_size, 16)
        self.assertEqual(task.shards, frozenset({1, 6}))
        self.assertEqual(task.device_speed, 0.5)
        self.assertFalse(task.should_stop)
        self.write_hints("stop=1\n")
        self.assertTrue(task.should_stop)
        self.assertEqual(task.batch_size, 64)           # Back to JOULE_BATCH_SIZE.
        self.assertEqual(task.device_speed, 1.0)
        self.assertEqual(task.shards, frozenset({1, 6}))  # The last set stays.

    def test_callbacks_run_once_per_change(self):
        task = self.make_task()
        calls = []
        task.on_batch_size(lambda b: calls.append(("batch", b)))
        task.on_shards(lambda s: calls.append(("shards", sorted(s))))

        @task.on_stop
        def stopped():
            calls.append(("stop",))

        self.write_hints("batch_size=16\nshards=0-3\n")
        self.assertTrue(task.poll())
        self.assertFalse(task.poll())
        self.write_hints("batch_size=16\nshards=2-3,9\nstop=1\n")
        with contextlib.redirect_stderr(io.StringIO()) as stderr:
            self.assertTrue(task.poll())
        self.assertIn("9", stderr.getvalue())
        self.write_hints("batch_size=16\nshards=2-3\nstop=1\ndevice_speed=0.5\n")
        self.assertTrue(task.poll())
        self.assertEqual(calls, [("batch", 16), ("shards", [2, 3]), ("stop",)])


class PaceTest(TaskTestCase):

    def test_stretches_steps_by_device_speed(self):
        task = self.make_task()
        self.assertEqual(task.pace(0.1), 0.0)                # Full speed: nothing to add.
        self.assertAlmostEqual(task.pace(0.2, 0.05), 0.15)   # A floor above compute time.
        self.write_hints("device_speed=0.5\n")
        self.assertAlmostEqual(task.pace(0.1), 0.1)          # 0.1 s of work lasts 0.2 s.
        self.assertAlmostEqual(task.pace(0.2, 0.05), 0.35)
        self.assertEqual(task.pace(0.1, 0.5), 0.0)           # Already slower: no sleep.
        self.write_hints("device_speed=0.001\n")
        with contextlib.redirect_stderr(io.StringIO()):
            self.assertAlmostEqual(task.pace(0.01), 0.99)    # Clamped to 0.01.
        self.assertEqual(len(self.time.sleeps), 4)


class ShardWorklistTest(unittest.TestCase):

    def test_ascending_with_handover_rules(self):
        work = ShardWorklist({3, 1, 2})
        self.assertEqual(work.next(), 1)
        self.assertEqual(work.next(), 1)          # Current until finished.
        work.set_owned({2, 3, 5})                 # 1 taken away while in progress.
        self.assertEqual(work.current, 1)
        work.finish_current()
        work.set_owned({1, 2, 5})                 # 1 is done: not again; 3 dropped.
        self.assertEqual(work.pending, frozenset({2, 5}))
        self.assertEqual([work.next(), work.finish_current(), work.next()], [2, None, 5])
        work.finish_current()
        self.assertIsNone(work.next())
        self.assertEqual(work.done, frozenset({1, 2, 5}))

    def test_contiguous_bounds_cover_everything_once(self):
        ranges = [contiguous_shard_bounds(10, 4, k) for k in range(4)]
        self.assertEqual([list(r) for r in ranges], [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]])
        with self.assertRaises(ValueError):
            contiguous_shard_bounds(10, 4, 4)


class ShardPassTest(TaskTestCase):

    def test_takes_up_handovers_mid_pass_and_reports_each_shard(self):
        task = self.make_task()
        seen = []
        for shard in task.iter_shards():
            seen.append(shard)
            if shard == 0:
                # 3 taken away before it started, 5 and 6 handed over.
                self.write_hints("shards=1-2,5-6\n")
            if shard == 1:
                # 1 taken away while in progress: still finished; 6 moved on.
                self.write_hints("shards=2,5\n")
        self.assertEqual(seen, [0, 1, 2, 5])
        self.assertEqual(self.progress_lines(),
                         [f"shard_done shard={k}" for k in (0, 1, 2, 5)])

    def test_a_finished_shard_is_not_repeated_when_handed_back(self):
        task = self.make_task({"JOULE_SHARDS": "0-1"})
        seen = []
        for shard in task.iter_shards():
            seen.append(shard)
            if shard == 1:
                self.write_hints("shards=0-2\n")
        self.assertEqual(seen, [0, 1, 2])

    def test_breaking_out_leaves_the_shard_unreported(self):
        task = self.make_task()
        shards = task.iter_shards(report_done=False)
        self.assertEqual(next(shards), 0)
        self.assertEqual(next(shards), 1)
        self.assertEqual((shards.done, shards.current), (frozenset({0}), 1))
        self.assertEqual(self.progress_lines(), [])

    def test_stop_ends_the_pass_before_the_next_shard(self):
        task = self.make_task()
        seen = []
        for shard in task.iter_shards():
            seen.append(shard)
            self.write_hints("stop=1\n")
        self.assertEqual(seen, [0])
        self.assertEqual(self.progress_lines(), ["shard_done shard=0"])

    def test_waits_for_handed_over_shards(self):
        task = self.make_task({"JOULE_SHARDS": "0"})

        def hand_over_later(fake):
            if len(fake.sleeps) == 3:
                self.write_hints("shards=0,4\n")
        self.time.on_sleep = hand_over_later
        seen = []
        for shard in task.iter_shards(wait_s=2.0, poll_interval_s=0.25):
            seen.append(shard)
        self.assertEqual(seen, [0, 4])
        self.assertEqual(self.progress_lines(),
                         ["shard_done shard=0", "waiting", "shard_done shard=4", "waiting"])
        # 3 polls before the handover, then the full 2 s wait before giving up.
        self.assertAlmostEqual(sum(self.time.sleeps), 0.75 + 2.0)
        self.assertLessEqual(max(self.time.sleeps), 0.25)

    def test_no_wait_by_default_and_no_waiting_line(self):
        task = self.make_task({"JOULE_SHARDS": ""})
        self.assertEqual(list(task.iter_shards()), [])
        self.assertEqual(self.progress_lines(), [])
        self.assertEqual(self.time.sleeps, [])

    def test_stop_ends_an_endless_wait(self):
        task = self.make_task({"JOULE_SHARDS": ""})

        def stop_later(fake):
            if len(fake.sleeps) == 5:
                self.write_hints("stop=1\n")
        self.time.on_sleep = stop_later
        self.assertEqual(list(task.iter_shards(wait_s=None, poll_interval_s=1.0)), [])
        self.assertEqual(self.progress_lines(), ["waiting"])
        self.assertEqual(len(self.time.sleeps), 5)

    def test_rejects_bad_arguments(self):
        task = self.make_task()
        with self.assertRaises(ValueError):
            task.iter_shards(wait_s=-1)
        with self.assertRaises(ValueError):
            task.iter_shards(poll_interval_s=0)


if __name__ == "__main__":
    unittest.main()
