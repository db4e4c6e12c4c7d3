"""The task contract's formats, as pure functions: no files, no clock, no state.

Joule's agent talks to a task through three channels (README, "The task
contract"): environment variables it sets at start, a progress file the task
appends event lines to, and a hints file the agent rewrites atomically. This
module reads and writes all three formats exactly as the C++ side does
(``contract/contract.h`` and ``.cc``, used by the agent and by
``examples/task_contract.cc``) and is checked against the same test vectors
(``contract/testdata/contract_vectors.jsonl``).

Parsing rules mirror Abseil's number parsers, which the C++ code uses, rather
than Python's more permissive ``int()``/``float()``: ``int("1_000")`` or a
Unicode digit must not be accepted here when the agent would refuse it.

Errors: malformed environment values and range lists raise
:class:`ContractError` whose message starts with what is wrong (the variable's
name for the environment). Hints and progress lines never raise: a bad hint
must not crash a running job, and a task's output must never break its agent.

Threading: everything here is a pure function or an immutable value; safe from
any thread.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Mapping, Optional

# ---------------------------------------------------------------------------
# Names and limits.

ENV_JOB_ID = "JOULE_JOB_ID"
ENV_TASK_ID = "JOULE_TASK_ID"
ENV_TASK_DIR = "JOULE_TASK_DIR"
ENV_REPLICA_INDEX = "JOULE_REPLICA_INDEX"
ENV_REPLICA_COUNT = "JOULE_REPLICA_COUNT"
ENV_BATCH_SIZE = "JOULE_BATCH_SIZE"
ENV_SHARDS = "JOULE_SHARDS"
ENV_SHARD_COUNT = "JOULE_SHARD_COUNT"
ENV_PROGRESS_FILE = "JOULE_PROGRESS_FILE"
ENV_HINTS_FILE = "JOULE_HINTS_FILE"
ENV_CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
# Rendezvous for gangs, as torch.distributed's env:// init and torchrun use them.
ENV_MASTER_ADDR = "MASTER_ADDR"
ENV_MASTER_PORT = "MASTER_PORT"
ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_RANK = "RANK"
ENV_LOCAL_RANK = "LOCAL_RANK"
ENV_LOCAL_WORLD_SIZE = "LOCAL_WORLD_SIZE"

# Any batch size above this is surely a typo and would make a workload
# allocate unbounded memory (kMaxBatchSize in C++).
MAX_BATCH_SIZE = 1 << 20
# Range-list values stay below this, so "0-999999999" cannot build a
# billion-entry set (kMaxRangeListValue in C++).
MAX_RANGE_LIST_VALUE = 1 << 20
MAX_SHARD_COUNT = MAX_RANGE_LIST_VALUE

# Counters in progress lines above this are dropped (they would overflow
# int64 on the agent's side); kMaxCounter in contract/contract.cc.
MAX_COUNTER = 9e18

_INT32_MAX = (1 << 31) - 1
# Abseil's StripAsciiWhitespace set; str.strip() would also strip Unicode spaces.
_ASCII_WHITESPACE = " \t\n\v\f\r"

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|inf|infinity|nan)",
    re.IGNORECASE,
)
_INDEX_RE = re.compile(r"[0-9]{1,9}")


class ContractError(ValueError):
    """A value the contract does not allow; the message says which and why."""


def _strip(text: str) -> str:
    return text.strip(_ASCII_WHITESPACE)


def parse_int(text: str) -> Optional[int]:
    """Parses a 32-bit decimal integer the way absl::SimpleAtoi does.

    Surrounding ASCII whitespace and one sign are allowed; anything else
    (underscores, non-ASCII digits, values outside int32) is None.
    """
    text = _strip(text)
    if not _INT_RE.fullmatch(text):
        return None
    value = int(text)
    if value > _INT32_MAX or value < -_INT32_MAX - 1:
        return None
    return value


def parse_float(text: str) -> Optional[float]:
    """Parses a decimal float the way absl::SimpleAtod does; None if malformed.

    Non-finite results ("nan", "inf", "1e999") are returned as such: callers
    decide whether they are usable.
    """
    text = _strip(text)
    if not _FLOAT_RE.fullmatch(text):
        return None
    return float(text)


# ---------------------------------------------------------------------------
# Range lists ("0-3,8,10-11").


def _bad_token(token: str, text: str, why: str) -> ContractError:
    return ContractError(f'bad token "{token}" in range list "{text}": {why}')


def parse_range_list(text: str) -> frozenset[int]:
    """Parses a comma-separated list of indices and inclusive ranges.

    Whitespace around tokens is ignored and the empty string is the empty
    set. Raises ContractError quoting the offending token for "3-1", "a",
    "1-", "-2", "+3", an empty entry between commas, or a value at or above
    MAX_RANGE_LIST_VALUE.
    """
    stripped = _strip(text)
    values: set[int] = set()
    if not stripped:
        return frozenset()
    for raw in stripped.split(","):
        token = _strip(raw)
        if not token:
            raise _bad_token(token, stripped, "empty entry")
        if token.startswith("-"):
            raise _bad_token(token, stripped, "shard indices cannot be negative")
        lo_text, dash, hi_text = token.partition("-")
        if not dash:
            if not _INDEX_RE.fullmatch(token):
                raise _bad_token(token, stripped, "not a non-negative integer")
            value = int(token)
            if value >= MAX_RANGE_LIST_VALUE:
                raise _bad_token(token, stripped, "too large")
            values.add(value)
            continue
        lo_text, hi_text = _strip(lo_text), _strip(hi_text)
        if not (_INDEX_RE.fullmatch(lo_text) and _INDEX_RE.fullmatch(hi_text)):
            raise _bad_token(
                token, stripped,
                "a range must be <first>-<last> with non-negative integers")
        lo, hi = int(lo_text), int(hi_text)
        if hi < lo:
            raise _bad_token(token, stripped, "range end is below its start")
        if hi >= MAX_RANGE_LIST_VALUE:
            raise _bad_token(token, stripped, "too large")
        values.update(range(lo, hi + 1))
    return frozenset(values)


def format_range_list(values) -> str:
    """Formats indices as a canonical range list: ascending, runs as "a-b".

    "3,1,2,2" round-trips to "1-3"; the empty set is "".
    """
    parts = []
    ordered = sorted(set(values))
    i = 0
    while i < len(ordered):
        first = last = ordered[i]
        i += 1
        while i < len(ordered) and ordered[i] == last + 1:
            last = ordered[i]
            i += 1
        parts.append(str(first) if first == last else f"{first}-{last}")
    return ",".join(parts)


def shards_within(shards, shard_count: int) -> tuple[frozenset[int], frozenset[int]]:
    """Splits `shards` into (kept, dropped): kept are those below shard_count."""
    kept = frozenset(s for s in shards if s < shard_count)
    return kept, frozenset(shards) - kept


# ---------------------------------------------------------------------------
# Environment.


@dataclasses.dataclass(frozen=True)
class GangEnv:
    """The rendezvous variables of a gang (torchrun's names); unset ones are None.

    Joule runs one replica per node, so under Joule local_rank is 0 of 1; the
    values are passed through as found, for torch.distributed's env:// init.
    """

    master_addr: Optional[str] = None
    master_port: Optional[int] = None
    world_size: Optional[int] = None
    rank: Optional[int] = None
    local_rank: Optional[int] = None
    local_world_size: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class TaskEnv:
    """What the agent told the task through the environment.

    Optional fields are None when the variable is missing (a task started by
    hand); the workload then falls back to its own flags. An empty
    JOULE_SHARDS is not a missing one: it means "you own no shards yet" (more
    may come through the hints file), so `shards` is then an empty set.
    Empty progress_file / hints_file: do not report / no hints.
    """

    job_id: str = ""
    task_id: str = ""
    task_dir: str = ""
    replica_index: int = 0
    replica_count: int = 1
    batch_size: Optional[int] = None
    shards: Optional[frozenset[int]] = None
    shard_count: Optional[int] = None
    cuda_visible_devices: str = ""
    progress_file: str = ""
    hints_file: str = ""
    gang: Optional[GangEnv] = None

    @property
    def under_joule(self) -> bool:
        """True when any Joule variable was set (the task was started by an agent)."""
        return bool(self.job_id or self.task_id or self.task_dir or self.progress_file
                    or self.hints_file or self.batch_size is not None
                    or self.shards is not None or self.shard_count is not None)


EnvLookup = Callable[[str], Optional[str]]


def _positive(name: str, value: str, limit: int) -> int:
    parsed = parse_int(value)
    if parsed is None:
        raise ContractError(f'{name}: "{value}" is not an integer')
    if parsed <= 0 or parsed > limit:
        raise ContractError(f"{name}: {parsed} is out of range (must be 1..{limit})")
    return parsed


def _non_negative(name: str, value: str) -> int:
    parsed = parse_int(value)
    if parsed is None or parsed < 0:
        raise ContractError(f'{name}: "{value}" is not a non-negative integer')
    return parsed


def _read_gang(lookup: EnvLookup) -> Optional[GangEnv]:
    names = (ENV_MASTER_ADDR, ENV_MASTER_PORT, ENV_WORLD_SIZE, ENV_RANK,
             ENV_LOCAL_RANK, ENV_LOCAL_WORLD_SIZE)
    raw = {name: lookup(name) for name in names}
    if all(value is None for value in raw.values()):
        return None
    port = raw[ENV_MASTER_PORT]
    world = raw[ENV_WORLD_SIZE]
    rank = raw[ENV_RANK]
    local_world = raw[ENV_LOCAL_WORLD_SIZE]
    local_rank = raw[ENV_LOCAL_RANK]
    gang = GangEnv(
        master_addr=raw[ENV_MASTER_ADDR],
        master_port=None if port is None else _positive(ENV_MASTER_PORT, port, 65535),
        world_size=None if world is None else _positive(ENV_WORLD_SIZE, world, MAX_SHARD_COUNT),
        rank=None if rank is None else _non_negative(ENV_RANK, rank),
        local_rank=None if local_rank is None else _non_negative(ENV_LOCAL_RANK, local_rank),
        local_world_size=(None if local_world is None else
                          _positive(ENV_LOCAL_WORLD_SIZE, local_world, MAX_SHARD_COUNT)),
    )
    if gang.rank is not None and gang.world_size is not None and gang.rank >= gang.world_size:
        raise ContractError(
            f"{ENV_RANK}: {gang.rank} is not below {ENV_WORLD_SIZE}={gang.world_size}")
    if (gang.local_rank is not None and gang.local_world_size is not None
            and gang.local_rank >= gang.local_world_size):
        raise ContractError(
            f"{ENV_LOCAL_RANK}: {gang.local_rank} is not below "
            f"{ENV_LOCAL_WORLD_SIZE}={gang.local_world_size}")
    return gang


def read_task_env(lookup: EnvLookup | Mapping[str, str]) -> TaskEnv:
    """Reads and checks the contract's variables, as C++ ReadTaskEnv does.

    `lookup` is a mapping (e.g. os.environ) or a function returning None for
    a missing variable. Checks: integers are integers, batch size and counts
    positive, the replica index below the replica count, every shard in
    JOULE_SHARDS below JOULE_SHARD_COUNT. Beyond C++: when
    JOULE_REPLICA_INDEX / JOULE_REPLICA_COUNT are missing, RANK / WORLD_SIZE
    stand in (a gang started by torchrun), and the rendezvous variables are
    checked too. Raises ContractError whose message starts with the name of
    the variable at fault ("JOULE_SHARDS: ...").
    """
    if not callable(lookup):
        mapping = lookup
        lookup = mapping.get  # type: ignore[assignment]

    def text(name: str) -> str:
        value = lookup(name)
        return "" if value is None else value

    gang = _read_gang(lookup)
    count_name, count_text = ENV_REPLICA_COUNT, lookup(ENV_REPLICA_COUNT)
    if count_text is None and gang is not None and gang.world_size is not None:
        count_name, count_text = ENV_WORLD_SIZE, lookup(ENV_WORLD_SIZE)
    index_name, index_text = ENV_REPLICA_INDEX, lookup(ENV_REPLICA_INDEX)
    if index_text is None and gang is not None and gang.rank is not None:
        index_name, index_text = ENV_RANK, lookup(ENV_RANK)

    replica_count = 1
    if count_text is not None:
        replica_count = _positive(count_name, count_text, MAX_SHARD_COUNT)
    replica_index = 0
    if index_text is not None:
        replica_index = _non_negative(index_name, index_text)
        if replica_index >= replica_count:
            raise ContractError(
                f"{index_name}: {replica_index} is not below {count_name}={replica_count}")

    batch_size = None
    if (value := lookup(ENV_BATCH_SIZE)) is not None:
        batch_size = _positive(ENV_BATCH_SIZE, value, MAX_BATCH_SIZE)
    shard_count = None
    if (value := lookup(ENV_SHARD_COUNT)) is not None:
        shard_count = _positive(ENV_SHARD_COUNT, value, MAX_SHARD_COUNT)
    shards = None
    if (value := lookup(ENV_SHARDS)) is not None:
        try:
            shards = parse_range_list(value)
        except ContractError as error:
            raise ContractError(f"{ENV_SHARDS}: {error}") from None
        if shard_count is not None:
            _, dropped = shards_within(shards, shard_count)
            if dropped:
                raise ContractError(
                    f"{ENV_SHARDS}: shards {format_range_list(dropped)} are not below "
                    f"{ENV_SHARD_COUNT}={shard_count}")

    return TaskEnv(
        job_id=text(ENV_JOB_ID),
        task_id=text(ENV_TASK_ID),
        task_dir=text(ENV_TASK_DIR),
        replica_index=replica_index,
        replica_count=replica_count,
        batch_size=batch_size,
        shards=shards,
        shard_count=shard_count,
        cuda_visible_devices=text(ENV_CUDA_VISIBLE_DEVICES),
        progress_file=text(ENV_PROGRESS_FILE),
        hints_file=text(ENV_HINTS_FILE),
        gang=gang,
    )


# ---------------------------------------------------------------------------
# Progress file.

PROGRESS = "progress"
SHARD_DONE = "shard_done"
TARGET_REACHED = "target_reached"
WAITING = "waiting"
EVENT_TYPES = (PROGRESS, SHARD_DONE, TARGET_REACHED, WAITING)


@dataclasses.dataclass(frozen=True)
class ProgressEvent:
    """One line of the progress file.

    type is one of PROGRESS, SHARD_DONE, TARGET_REACHED, WAITING. Fields a
    type does not carry stay None: progress has the counters so far (samples,
    steps), the samples expected in all (total), the p95 latency of recent
    steps at batch size `batch` (latency_ms) and a quality metric; shard_done
    has shard; target_reached may have quality.
    """

    type: str
    samples: Optional[int] = None
    steps: Optional[int] = None
    total: Optional[int] = None
    batch: Optional[int] = None
    latency_ms: Optional[float] = None
    quality: Optional[float] = None
    shard: Optional[int] = None


def format_quality(quality: float) -> str:
    """A quality metric as progress lines carry it: 6 significant digits."""
    return "%.6g" % quality


def format_progress(event: ProgressEvent) -> str:
    """The line for `event`, without its newline.

      progress samples=N steps=N [total=T] [batch=B latency_ms=L] [quality=Q]
      shard_done shard=K
      target_reached [quality=Q]
      waiting

    A progress line always carries samples and steps (0 when unset); batch
    and latency_ms go out together, only when both are set.
    """
    if event.type == PROGRESS:
        parts = [f"progress samples={int(event.samples or 0)} steps={int(event.steps or 0)}"]
        if event.total is not None:
            parts.append(f"total={int(event.total)}")
        if event.batch is not None and event.latency_ms is not None:
            parts.append(f"batch={int(event.batch)} latency_ms={event.latency_ms:.3f}")
        if event.quality is not None:
            parts.append(f"quality={format_quality(event.quality)}")
        return " ".join(parts)
    if event.type == SHARD_DONE:
        if event.shard is None:
            raise ValueError("a shard_done event needs a shard")
        return f"shard_done shard={int(event.shard)}"
    if event.type == TARGET_REACHED:
        if event.quality is None:
            return "target_reached"
        return f"target_reached quality={format_quality(event.quality)}"
    if event.type == WAITING:
        return "waiting"
    raise ValueError(f"unknown progress event type {event.type!r}")


def _counter(value: float) -> Optional[int]:
    """A counter value (samples, steps, total): non-negative and at most
    MAX_COUNTER, a fraction cut (as contract.cc casts it); else None."""
    if not 0 <= value <= MAX_COUNTER:
        return None
    return int(value)


def parse_progress_line(line: str) -> Optional[ProgressEvent]:
    """The event a progress-file line carries; None if it is not a contract event.

    Lenient, like the agent's reader: words are separated by spaces, fields
    are "key=value" words in any order, unknown keys are ignored, and a value
    that is not a finite number or is out of range (batch outside
    1..MAX_BATCH_SIZE, a counter (samples, steps, total) that is negative or
    above MAX_COUNTER, a negative latency, a shard that is not a whole number
    in [0, MAX_RANGE_LIST_VALUE)) drops only that field. A fractional counter
    is cut to its integer part. As in contract/contract.cc.
    """
    words = [word for word in line.split(" ") if word]
    if not words or words[0] not in EVENT_TYPES:
        return None
    verb = words[0]
    fields: dict = {}
    for word in words[1:]:
        # Like absl::StrSplit into a pair: the text between the first and a
        # second '=' is the value.
        pieces = word.split("=")
        key = pieces[0]
        value = parse_float(pieces[1]) if len(pieces) > 1 else None
        if value is None or not math.isfinite(value):
            continue
        if verb == PROGRESS:
            if key in ("samples", "steps", "total"):
                if (counter := _counter(value)) is not None:
                    fields[key] = counter
            elif key == "batch" and 1 <= value <= MAX_BATCH_SIZE:
                fields[key] = int(value)
            elif key == "latency_ms" and value >= 0:
                fields[key] = value
            elif key == "quality":
                fields[key] = value
        elif verb == TARGET_REACHED and key == "quality":
            fields[key] = value
        elif (verb == SHARD_DONE and key == "shard" and 0 <= value < MAX_RANGE_LIST_VALUE
              and value == math.floor(value)):
            fields[key] = int(value)
    return ProgressEvent(type=verb, **fields)


# ---------------------------------------------------------------------------
# Hints file.


@dataclasses.dataclass(frozen=True)
class Hints:
    """The hints the agent may give; None for a key not in the file (or unusable).

    device_speed, in (0, 1], is only given on simulated accelerators.
    """

    batch_size: Optional[int] = None
    shards: Optional[frozenset[int]] = None
    stop: Optional[bool] = None
    device_speed: Optional[float] = None


def format_hints(hints: Hints) -> str:
    """The hints file's text: the set keys in the order batch_size, shards,
    stop, device_speed ("%.4f"), one "key=value" line each."""
    lines = []
    if hints.batch_size is not None:
        lines.append(f"batch_size={hints.batch_size}\n")
    if hints.shards is not None:
        lines.append(f"shards={format_range_list(hints.shards)}\n")
    if hints.stop is not None:
        lines.append(f"stop={1 if hints.stop else 0}\n")
    if hints.device_speed is not None:
        lines.append(f"device_speed={hints.device_speed:.4f}\n")
    return "".join(lines)


def parse_hints(text: str) -> tuple[Hints, list[str]]:
    """Parses a hints file's text into (hints, warnings); never raises.

    Blank lines and lines starting with '#' are skipped; unknown keys are
    ignored silently (a newer agent may send keys this task does not know).
    A malformed line or an unusable value (batch_size=0, device_speed=2,
    stop=maybe, shards=3-1) is skipped with one warning naming its line
    number: 'line 3 "device_speed=2": device_speed must be a number in (0, 1]'.
    A later line for the same key overrides an earlier one.
    """
    values: dict = {}
    warnings: list[str] = []
    for line_no, raw in enumerate(text.split("\n"), start=1):
        line = _strip(raw)
        if not line or line.startswith("#"):
            continue

        def warn(why: str) -> None:
            warnings.append(f'line {line_no} "{line}": {why}')

        key, eq, value = line.partition("=")
        if not eq:
            warn("expected key=value")
            continue
        key, value = _strip(key), _strip(value)
        if not key:
            warn("empty key")
        elif key == "batch_size":
            batch = parse_int(value)
            if batch is not None and 0 < batch <= MAX_BATCH_SIZE:
                values["batch_size"] = batch
            else:
                warn(f"batch_size must be an integer in 1..{MAX_BATCH_SIZE}")
        elif key == "shards":
            try:
                values["shards"] = parse_range_list(value)
            except ContractError as error:
                warn(str(error))
        elif key == "stop":
            if value in ("0", "1"):
                values["stop"] = value == "1"
            else:
                warn("stop must be 0 or 1")
        elif key == "device_speed":
            speed = parse_float(value)
            if speed is not None and math.isfinite(speed) and 0.0 < speed <= 1.0:
                values["device_speed"] = speed
            else:
                warn("device_speed must be a number in (0, 1]")
        # Any other key: ignored on purpose (see the docstring).
    return Hints(**values), warnings
