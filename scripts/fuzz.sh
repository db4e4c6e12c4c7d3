#!/usr/bin/env bash
# Builds the libFuzzer targets of //fuzz with clang (AddressSanitizer and
# UndefinedBehaviorSanitizer on) and runs each one, starting from its seed
# corpus in fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   each target for SECONDS (default 60)
#   scripts/fuzz.sh --runs N [TARGET...]    each target for N executions
#
# TARGET is a name such as job_yaml_fuzzer; default: every target (one folder
# per target under fuzz/corpus). The corpus is copied to a scratch directory
# first: new inputs never land in the tree.
#
# Prints per target the executions, executions per second and crashes
# (libFuzzer stops at the first crash, leak, timeout or out-of-memory, and
# writes the input that caused it: its path is printed and kept). Ends with
# "fuzz: N passed, M failed" (one per target; scripts/test.sh adds these to
# its totals) and exits non-zero on any failure.
#
# Each target also has a hard wall-clock bound (twice SECONDS plus two
# minutes; six hours with --runs; JOULE_FUZZ_HARD_LIMIT_S
# overrides it): a target that outlives it is killed and counts as failed.
#
# The clang build has its own Bazel output base (under the user's cache
# directory; JOULE_FUZZ_OUTPUT_BASE overrides it), so it never evicts the
# normal gcc build. The first build compiles the scheduler and agent cores
# and the protos with clang: minutes on a small machine.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 [SECONDS | --runs N] [TARGET...]" >&2
  exit 2
}

seconds=60
runs=""
if [ $# -gt 0 ]; then
  case "$1" in
    --runs)
      [ $# -ge 2 ] && [[ "$2" =~ ^[0-9]+$ ]] || usage
      runs="$2"
      shift 2
      ;;
    -h|--help) usage ;;
    *)
      if [[ "$1" =~ ^[0-9]+$ ]]; then
        seconds="$1"
        shift
      fi
      ;;
  esac
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for dir in fuzz/corpus/*/; do
    targets+=("$(basename "$dir")")
  done
fi
for target in "${targets[@]}"; do
  if [ ! -d "fuzz/corpus/$target" ]; then
    echo "fuzz: unknown target $target (no fuzz/corpus/$target)" >&2
    usage
  fi
done

# The longest input each target is given: a little more than its largest
# valid input needs.
max_len() {
  case "$1" in
    scheduler_agent_fuzzer) echo 16384 ;;
    local_store_fuzzer) echo 8192 ;;
    job_yaml_fuzzer|job_spec_fuzzer|carbon_fuzzer) echo 4096 ;;
    sysfs_tree_fuzzer|cap_journal_fuzzer|task_contract_fuzzer) echo 2048 ;;
    *) echo 1024 ;;
  esac
}

summary() {
  echo "fuzz: $1 passed, $2 failed"
}

if ! command -v clang >/dev/null; then
  echo "fuzz: clang not found (scripts/setup.sh installs it)" >&2
  summary 0 ${#targets[@]}
  exit 1
fi

output_base="${JOULE_FUZZ_OUTPUT_BASE:-${XDG_CACHE_HOME:-$HOME/.cache}/joule/bazel-libfuzzer}"
mkdir -p "$output_base"
bazel_cmd=(bazel "--output_base=$output_base" --max_idle_secs=600)
build_flags=(--config=libfuzzer)
if [ "${CI:-}" = "true" ]; then
  build_flags+=(--curses=no --color=no --noshow_progress)
fi

labels=()
for target in "${targets[@]}"; do labels+=("//fuzz:$target"); done
build_start=$SECONDS
# gold warns once per ASan helper symbol of clang 14 in every link: noise.
"${bazel_cmd[@]}" build "${build_flags[@]}" "${labels[@]}" 2>&1 |
  grep -v "ld.gold: warning: Cannot export local symbol '__asan"
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
  echo "fuzz: the clang build failed" >&2
  summary 0 ${#targets[@]}
  exit 1
fi
echo "fuzz: clang build took $((SECONDS - build_start)) s"
bin="$("${bazel_cmd[@]}" info "${build_flags[@]}" bazel-bin 2>/dev/null)"

work="$(mktemp -d "${TMPDIR:-/tmp}/joule-fuzz.XXXXXX")"
keep_work=0
fuzz_pid=""
# The targets' scratch files (fuzz/fuzz_support.h): on tmpfs where there is
# one, and removed here even when a target dies without cleaning up.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  scratch="$(mktemp -d /dev/shm/joule-fuzz.XXXXXX)"
else
  scratch="$work/scratch"
  mkdir -p "$scratch"
fi
export TEST_TMPDIR="$scratch"
cleanup() {
  if [ -n "$fuzz_pid" ]; then kill "$fuzz_pid" 2>/dev/null; fi
  rm -rf "$scratch"
  if [ $keep_work -eq 0 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
if command -v llvm-symbolizer >/dev/null; then
  export ASAN_SYMBOLIZER_PATH="${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer)}"
fi

passed=0
failed=0
printf '%-24s %12s %10s %8s\n' target executions exec/s crashes
for target in "${targets[@]}"; do
  dir="$work/$target"
  mkdir -p "$dir/artifacts"
  cp -r "fuzz/corpus/$target" "$dir/corpus"
  args=(
    "-max_len=$(max_len "$target")"
    -timeout=20
    -rss_limit_mb=4096
    -print_final_stats=1
    "-artifact_prefix=$dir/artifacts/"
    # libFuzzer 14's entropic scheduling spends most of its time updating
    # feature frequencies on these targets (8x fewer executions per second
    # on the scheduler's); plain scheduling finds more per minute.
    -entropic=0
  )
  # Extra libFuzzer flags, e.g. JOULE_FUZZ_FLAGS="-jobs=2 -workers=2".
  # shellcheck disable=SC2206
  args+=(${JOULE_FUZZ_FLAGS:-})
  if [ -f "fuzz/dict/$target.dict" ]; then args+=("-dict=fuzz/dict/$target.dict"); fi
  if [ -n "$runs" ]; then
    args+=("-runs=$runs")
  else
    args+=("-max_total_time=$seconds")
  fi
  # A hard bound as well: libFuzzer's own out-of-memory handling can hang
  # (ASan's memory profile of a process that is still allocating).
  if [ -n "$runs" ]; then limit_s=21600; else limit_s=$((seconds * 2 + 120)); fi
  limit_s="${JOULE_FUZZ_HARD_LIMIT_S:-$limit_s}"
  timeout -k 10 "$limit_s" "$bin/fuzz/$target" "${args[@]}" "$dir/corpus" >"$dir/log" 2>&1 &
  fuzz_pid=$!
  wait $fuzz_pid
  rc=$?
  fuzz_pid=""
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "fuzz: $target did not finish within $limit_s s; killed" >>"$dir/log"
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -1)"
  # -fork=N (JOULE_FUZZ_FLAGS) prints no final stats: its total and time.
  if [ -z "$execs" ]; then
    execs="$(sed -n 's/^INFO: fuzzed for \([0-9]*\) iterations.*/\1/p' "$dir/log" | tail -1)"
    elapsed="$(sed -n 's/^INFO: exiting: .* time: \([0-9]*\)s.*/\1/p' "$dir/log" | tail -1)"
    if [ -n "$execs" ] && [ -n "$elapsed" ] && [ "$elapsed" -gt 0 ]; then
      rate=$((execs / elapsed))
    fi
  fi
  artifacts=("$dir"/artifacts/*)
  crashes=0
  if [ -e "${artifacts[0]}" ]; then crashes=${#artifacts[@]}; fi
  if [ $rc -ne 0 ] && [ $crashes -eq 0 ]; then crashes=1; fi
  printf '%-24s %12s %10s %8s\n' "$target" "${execs:-?}" "${rate:-?}" "$crashes"
  if [ $crashes -eq 0 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    keep_work=1
    echo "fuzz: $target failed (exit $rc); log: $dir/log" >&2
    for artifact in "${artifacts[@]}"; do
      [ -e "$artifact" ] && echo "fuzz: reproducer: $artifact  (rerun: $bin/fuzz/$target $artifact)" >&2
    done
    grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|check failed|SUMMARY' "$dir/log" >&2 || tail -5 "$dir/log" >&2
  fi
done

summary $passed $failed
[ $failed -eq 0 ]
