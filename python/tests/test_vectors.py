"""Checks joule.contract against the shared vectors, contract/testdata/contract_vectors.jsonl.

The same file drives the C++ side's tests, so passing here means the Python
library reads and writes every format exactly as the agent and the C++
workloads do. Each JSON line is one case, checked in a subTest named after
its "case":

* "progress" + "line": parse(line) == progress (null: not a contract line);
  unless "parse_only", also format(progress) == line.
* "hints" + "text": parse(text) == hints, with "warnings" warnings when
  given; unless "parse_only", also format(hints) == text.
* "ranges": parse(ranges) == "shards", or an error when "error".
* "env": read_task_env(env) matches "task_env" (a field it leaves out is
  unset), or fails with a message starting with the variable named by "error".

A line of any other kind fails the test, so a new kind of vector cannot be
skipped silently.
"""

from __future__ import annotations

import json
import os
import unittest

from joule import contract

from tests.helpers import VECTORS_PATH

# TaskEnv fields the vectors describe; the optional ones are None when left out.
_ENV_FIELDS = ("job_id", "task_id", "replica_index", "replica_count", "batch_size", "shards",
               "shard_count", "progress_file", "hints_file")
_ENV_OPTIONAL = ("batch_size", "shards", "shard_count")


def load_vectors():
    cases = []
    with open(VECTORS_PATH) as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                cases.append((line_no, json.loads(line)))
    return cases


def expected_event(fields: dict) -> contract.ProgressEvent:
    fields = dict(fields)
    return contract.ProgressEvent(type=fields.pop("type"), **fields)


def expected_hints(fields: dict) -> contract.Hints:
    fields = dict(fields)
    if "shards" in fields:
        fields["shards"] = frozenset(fields["shards"])
    return contract.Hints(**fields)


class ContractVectorsTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(VECTORS_PATH):
            raise AssertionError(f"test vectors not found at {VECTORS_PATH}")
        cls.cases = load_vectors()

    def test_file_has_every_kind(self):
        kinds = {kind for _, case in self.cases
                 for kind in ("progress", "hints", "ranges", "env") if kind in case}
        self.assertEqual(kinds, {"progress", "hints", "ranges", "env"})

    def test_every_vector(self):
        for line_no, case in self.cases:
            name = f"line {line_no}: {case.get('case', '?')}"
            with self.subTest(name):
                if "progress" in case:
                    self.check_progress(case)
                elif "hints" in case:
                    self.check_hints(case)
                elif "ranges" in case:
                    self.check_ranges(case)
                elif "env" in case:
                    self.check_env(case)
                else:
                    self.fail(f"unknown kind of vector: {sorted(case)}")

    def check_progress(self, case):
        parsed = contract.parse_progress_line(case["line"])
        if case["progress"] is None:
            self.assertIsNone(parsed)
            return
        expected = expected_event(case["progress"])
        self.assertEqual(parsed, expected)
        if not case.get("parse_only"):
            self.assertEqual(contract.format_progress(expected), case["line"])

    def check_hints(self, case):
        hints, warnings = contract.parse_hints(case["text"])
        expected = expected_hints(case["hints"])
        self.assertEqual(hints, expected)
        if "warnings" in case:
            self.assertEqual(len(warnings), case["warnings"], warnings)
        if not case.get("parse_only"):
            self.assertEqual(contract.format_hints(expected), case["text"])

    def check_ranges(self, case):
        if case.get("error"):
            with self.assertRaises(contract.ContractError):
                contract.parse_range_list(case["ranges"])
            return
        shards = contract.parse_range_list(case["ranges"])
        self.assertEqual(shards, frozenset(case["shards"]))
        self.assertEqual(contract.parse_range_list(contract.format_range_list(shards)), shards)

    def check_env(self, case):
        environ = case["env"]
        if "error" in case:
            with self.assertRaises(contract.ContractError) as raised:
                contract.read_task_env(environ)
            self.assertTrue(str(raised.exception).startswith(case["error"] + ":"),
                            str(raised.exception))
            return
        env = contract.read_task_env(environ)
        expected = case["task_env"]
        for field in _ENV_FIELDS:
            if field not in expected:
                if field in _ENV_OPTIONAL:
                    self.assertIsNone(getattr(env, field), field)
                continue
            want = expected[field]
            if field == "shards":
                want = frozenset(want)
            self.assertEqual(getattr(env, field), want, field)


if __name__ == "__main__":
    unittest.main()
