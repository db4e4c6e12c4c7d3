"""Shared test helpers: a fake clock, hints/progress file helpers, paths.

Not thread-safe; each test builds its own.
"""

from __future__ import annotations

import os
import tempfile
import unittest
from typing import Callable, List, Optional

REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
VECTORS_PATH = os.path.join(REPO_ROOT, "contract", "testdata", "contract_vectors.jsonl")
DIGITS_DDP = os.path.join(REPO_ROOT, "examples", "jobs", "digits_ddp.py")


class FakeTime:
    """A monotonic clock and a sleep that only advances it.

    on_sleep(fake_time), if set, runs after every sleep: tests use it to
    change the hints file "while the task waits".
    """

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: List[float] = []
        self.on_sleep: Optional[Callable[["FakeTime"], None]] = None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(self)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write_atomically(path: str, text: str) -> None:
    """Replaces `path` the way the agent rewrites the hints file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_lines(path: str) -> List[str]:
    """The lines of `path` ([] when it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


class TempDirTestCase(unittest.TestCase):
    """A test case with a fresh temporary directory and progress/hints paths in it."""

    def setUp(self) -> None:
        super().setUp()
        self._tmp = tempfile.TemporaryDirectory(prefix="joule-test-")
        self.addCleanup(self._tmp.cleanup)
        self.dir = self._tmp.name
        self.progress_path = os.path.join(self.dir, "progress")
        self.hints_path = os.path.join(self.dir, "hints")

    def progress_lines(self) -> List[str]:
        return read_lines(self.progress_path)
