"""Joule's task contract for Python workloads.

A Joule task is any executable; the agent passes settings in environment
variables, reads progress events the task appends to a file, and rewrites a
hints file with live changes (README, "The task contract"). This package is
the Python counterpart of examples/task_contract.h:

* joule.task() / joule.Task: settings, progress reports, hints, shards,
  pacing; a no-op stand-in outside Joule (joule/task.py).
* joule.contract: the formats as pure functions (env, progress lines, hints,
  range lists), checked against contract/testdata/contract_vectors.jsonl.
* joule.torch: PyTorch helpers (shard samplers, a training loop for DDP);
  imported on demand, as it needs torch.

Standard library only, apart from joule.torch.
"""

from __future__ import annotations

from typing import Mapping, Optional

from joule.contract import (ContractError, Hints, ProgressEvent, TaskEnv,
                            format_hints, format_progress, format_range_list,
                            parse_hints, parse_progress_line, parse_range_list,
                            read_task_env)
from joule.shards import ShardWorklist, contiguous_shard_bounds
from joule.task import Task

__all__ = [
    "ContractError", "Hints", "ProgressEvent", "ShardWorklist", "Task", "TaskEnv",
    "contiguous_shard_bounds", "format_hints", "format_progress", "format_range_list",
    "parse_hints", "parse_progress_line", "parse_range_list", "read_task_env", "task",
]

__version__ = "0.1.0"


def task(environ: Optional[Mapping[str, str]] = None, **kwargs) -> Task:
    """The Task described by the process environment (or `environ`).

    Keyword arguments go to Task (default_batch_size, default_shard_count,
    progress_interval_s, ...). Raises ContractError, naming the variable,
    when a contract variable is malformed.
    """
    return Task.from_environ(environ, **kwargs)
