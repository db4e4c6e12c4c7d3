"""Unit tests of joule.contract beyond the shared vectors: error messages,
strict number parsing, the torchrun fallbacks, round trips."""

from __future__ import annotations

import unittest

from joule import contract
from joule.contract import ContractError, Hints, ProgressEvent


class RangeListTest(unittest.TestCase):

    def test_parses_runs_singles_and_whitespace(self):
        self.assertEqual(contract.parse_range_list(" 0-2 , 5,7 - 8 "),
                         frozenset({0, 1, 2, 5, 7, 8}))

    def test_formats_canonically(self):
        self.assertEqual(contract.format_range_list([3, 1, 2, 2, 9, 11, 10]), "1-3,9-11")
        self.assertEqual(contract.format_range_list([]), "")
        self.assertEqual(contract.format_range_list([4]), "4")

    def test_errors_quote_the_token_and_say_why(self):
        cases = {
            "3-1": "range end is below its start",
            "a": "not a non-negative integer",
            "1-": "a range must be",
            "-2": "cannot be negative",
            "+3": "not a non-negative integer",
            "1,,2": "empty entry",
            "1_0": "not a non-negative integer",
            "\u0661": "not a non-negative integer",  # Arabic-Indic one: not ASCII.
            "1048576": "too large",
            "0-1048576": "too large",
        }
        for text, why in cases.items():
            with self.subTest(text=text):
                with self.assertRaises(ContractError) as raised:
                    contract.parse_range_list(text)
                self.assertIn(why, str(raised.exception))
                self.assertIn("bad token", str(raised.exception))

    def test_shards_within_splits_kept_and_dropped(self):
        kept, dropped = contract.shards_within({0, 3, 8, 9}, 8)
        self.assertEqual((kept, dropped), (frozenset({0, 3}), frozenset({8, 9})))


class NumberParsingTest(unittest.TestCase):
    """The contract's numbers follow Abseil's parsers, not Python's."""

    def test_int(self):
        self.assertEqual(contract.parse_int(" +42 "), 42)
        self.assertEqual(contract.parse_int("-7"), -7)
        for bad in ("", "1_000", "0x10", "4.0", "2147483648", "\u0661", "1 2"):
            with self.subTest(bad=bad):
                self.assertIsNone(contract.parse_int(bad))

    def test_float(self):
        self.assertEqual(contract.parse_float("1e3"), 1000.0)
        self.assertEqual(contract.parse_float(".5"), 0.5)
        self.assertEqual(contract.parse_float("+2."), 2.0)
        self.assertEqual(contract.parse_float("1e999"), float("inf"))
        for bad in ("", "1_0", "0x1p3", ".", "e5", "1e", "abc"):
            with self.subTest(bad=bad):
                self.assertIsNone(contract.parse_float(bad))


class ProgressLineTest(unittest.TestCase):

    def test_round_trips_every_event_type(self):
        events = [
            ProgressEvent(contract.PROGRESS, samples=5, steps=1),
            ProgressEvent(contract.PROGRESS, samples=5, steps=1, total=100, batch=8,
                          latency_ms=1.25, quality=0.5),
            ProgressEvent(contract.SHARD_DONE, shard=3),
            ProgressEvent(contract.TARGET_REACHED, quality=0.25),
            ProgressEvent(contract.TARGET_REACHED),
            ProgressEvent(contract.WAITING),
        ]
        for event in events:
            with self.subTest(event=event):
                self.assertEqual(contract.parse_progress_line(contract.format_progress(event)),
                                 event)

    def test_field_order_and_number_formats(self):
        line = contract.format_progress(ProgressEvent(
            contract.PROGRESS, samples=7, steps=2, total=9, batch=4, latency_ms=2.0,
            quality=1 / 3))
        self.assertEqual(line, "progress samples=7 steps=2 total=9 batch=4 latency_ms=2.000 "
                               "quality=0.333333")

    def test_batch_without_latency_is_left_out(self):
        self.assertEqual(contract.format_progress(ProgressEvent(contract.PROGRESS, batch=4)),
                         "progress samples=0 steps=0")

    def test_second_equals_sign_ends_the_value(self):
        # absl::StrSplit into a pair keeps the text up to a second '='.
        event = contract.parse_progress_line("progress samples=5=6 steps=1")
        self.assertEqual(event.samples, 5)

    def test_a_counter_too_large_for_int64_is_dropped(self):
        self.assertIsNone(contract.parse_progress_line("progress samples=1e19").samples)

    def test_shard_done_needs_a_shard_to_format(self):
        with self.assertRaises(ValueError):
            contract.format_progress(ProgressEvent(contract.SHARD_DONE))


class HintsTest(unittest.TestCase):

    def test_warnings_name_the_line_and_the_problem(self):
        _, warnings = contract.parse_hints("batch_size=8\n\ndevice_speed=0\n=3\n")
        self.assertEqual(warnings, [
            'line 3 "device_speed=0": device_speed must be a number in (0, 1]',
            'line 4 "=3": empty key',
        ])

    def test_later_lines_override_and_crlf_is_tolerated(self):
        hints, warnings = contract.parse_hints("batch_size=8\r\nbatch_size=16\r\nstop=1\r\n")
        self.assertEqual(hints, Hints(batch_size=16, stop=True))
        self.assertEqual(warnings, [])

    def test_strict_integers(self):
        hints, warnings = contract.parse_hints("batch_size=1_000\n")
        self.assertIsNone(hints.batch_size)
        self.assertEqual(len(warnings), 1)

    def test_round_trip(self):
        hints = Hints(batch_size=3, shards=frozenset({1, 2, 3, 7}), stop=False,
                      device_speed=0.25)
        text = contract.format_hints(hints)
        self.assertEqual(text, "batch_size=3\nshards=1-3,7\nstop=0\ndevice_speed=0.2500\n")
        self.assertEqual(contract.parse_hints(text), (hints, []))


class TaskEnvTest(unittest.TestCase):

    def assertErrorNames(self, environ, variable, *fragments):
        with self.assertRaises(ContractError) as raised:
            contract.read_task_env(environ)
        message = str(raised.exception)
        self.assertTrue(message.startswith(variable + ":"), message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_reads_everything(self):
        env = contract.read_task_env({
            "JOULE_JOB_ID": "j", "JOULE_TASK_ID": "t", "JOULE_TASK_DIR": "/d",
            "JOULE_BATCH_SIZE": "16", "JOULE_SHARDS": "1,3", "JOULE_SHARD_COUNT": "4",
            "CUDA_VISIBLE_DEVICES": "0,1", "JOULE_PROGRESS_FILE": "/p",
            "JOULE_HINTS_FILE": "/h"})
        self.assertEqual((env.job_id, env.task_id, env.task_dir, env.batch_size, env.shards,
                          env.shard_count, env.cuda_visible_devices, env.progress_file,
                          env.hints_file),
                         ("j", "t", "/d", 16, frozenset({1, 3}), 4, "0,1", "/p", "/h"))
        self.assertTrue(env.under_joule)
        self.assertIsNone(env.gang)

    def test_accepts_a_lookup_function(self):
        env = contract.read_task_env({"JOULE_BATCH_SIZE": "8"}.get)
        self.assertEqual(env.batch_size, 8)

    def test_outside_joule(self):
        env = contract.read_task_env({})
        self.assertFalse(env.under_joule)
        self.assertEqual((env.replica_index, env.replica_count), (0, 1))

    def test_errors_name_the_variable(self):
        self.assertErrorNames({"JOULE_BATCH_SIZE": "0"}, "JOULE_BATCH_SIZE", "out of range")
        self.assertErrorNames({"JOULE_BATCH_SIZE": "2000000"}, "JOULE_BATCH_SIZE")
        self.assertErrorNames({"JOULE_SHARD_COUNT": "x"}, "JOULE_SHARD_COUNT", '"x"')
        self.assertErrorNames({"JOULE_SHARDS": "3-1"}, "JOULE_SHARDS", "bad token")
        self.assertErrorNames({"JOULE_SHARDS": "0-9", "JOULE_SHARD_COUNT": "8"},
                              "JOULE_SHARDS", "shards 8-9 are not below JOULE_SHARD_COUNT=8")
        self.assertErrorNames({"JOULE_REPLICA_INDEX": "-1"}, "JOULE_REPLICA_INDEX")
        self.assertErrorNames({"JOULE_REPLICA_COUNT": "0"}, "JOULE_REPLICA_COUNT")

    def test_torchrun_variables_stand_in_for_missing_replica_ones(self):
        env = contract.read_task_env({
            "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "4",
            "RANK": "3", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"})
        self.assertEqual((env.replica_index, env.replica_count), (3, 4))
        self.assertEqual(env.gang, contract.GangEnv("10.0.0.1", 29500, 4, 3, 0, 1))

    def test_joule_replica_variables_win_over_torchrun_ones(self):
        env = contract.read_task_env({"JOULE_REPLICA_INDEX": "1", "JOULE_REPLICA_COUNT": "2",
                                      "RANK": "5", "WORLD_SIZE": "8"})
        self.assertEqual((env.replica_index, env.replica_count), (1, 2))
        self.assertEqual((env.gang.rank, env.gang.world_size), (5, 8))

    def test_gang_errors_name_the_variable(self):
        self.assertErrorNames({"RANK": "2", "WORLD_SIZE": "2"}, "RANK", "not below WORLD_SIZE=2")
        self.assertErrorNames({"MASTER_PORT": "70000"}, "MASTER_PORT", "out of range")
        self.assertErrorNames({"WORLD_SIZE": "two"}, "WORLD_SIZE", "not an integer")
        self.assertErrorNames({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "1"}, "LOCAL_RANK")
        self.assertErrorNames({"JOULE_REPLICA_INDEX": "3", "WORLD_SIZE": "2"},
                              "JOULE_REPLICA_INDEX", "not below WORLD_SIZE=2")


if __name__ == "__main__":
    unittest.main()
