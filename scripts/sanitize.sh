#!/usr/bin/env bash
# Runs the unit tests under AddressSanitizer and UndefinedBehaviorSanitizer
# (gcc, --config=asan in .bazelrc; LeakSanitizer too): any memory error,
# leak or undefined behaviour fails the test that hit it.
#
#   scripts/sanitize.sh                 every test except the slow packages
#   scripts/sanitize.sh --all           every test
#   scripts/sanitize.sh LABEL...        these tests or patterns only
#
# Left out by default: //tests/e2e, //tests/fault, //tests/load and
# //tests/bench. They start whole clusters of real binaries and measure time
# and memory (RSS bounds, overhead), which the sanitizers' 2-3x slowdown and
# shadow memory make meaningless; --all runs them anyway.
#
# Ends with "N passed, M failed" (test cases, from each target's JUnit XML,
# as scripts/test.sh counts them) and exits non-zero on any failure. The
# sanitized build has its own Bazel output base under the user's cache
# directory (JOULE_ASAN_OUTPUT_BASE overrides it), so it never evicts the
# normal build; the first run compiles everything again (long on a small
# machine).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/junit_totals.sh

slow='//tests/e2e/... + //tests/fault/... + //tests/load/... + //tests/bench/...'
query="tests(//...) except tests($slow)"
patterns=()
for arg in "$@"; do
  case "$arg" in
    --all) query='tests(//...)' ;;
    -h|--help)
      echo "usage: $0 [--all | LABEL...]" >&2
      exit 2
      ;;
    *) patterns+=("$arg") ;;
  esac
done
if [ ${#patterns[@]} -gt 0 ]; then
  query="tests(${patterns[0]}"
  for pattern in "${patterns[@]:1}"; do query+=" + $pattern"; done
  query+=")"
fi

output_base="${JOULE_ASAN_OUTPUT_BASE:-${XDG_CACHE_HOME:-$HOME/.cache}/joule/bazel-asan}"
mkdir -p "$output_base"
bazel_cmd=(bazel "--output_base=$output_base" --max_idle_secs=600)
flags=(--config=asan --test_timeout=180,600,1800,3600)
if [ "${CI:-}" = "true" ]; then
  flags+=(--curses=no --color=no --noshow_progress)
fi
# The measured data beside the checkout, as scripts/test.sh passes it.
if [ -d ../shared/data/gpu-power ]; then
  flags+=("--test_env=JOULE_DATA_DIR=$(cd ../shared/data/gpu-power && pwd)")
fi

targets=()
while IFS= read -r target; do
  [ -n "$target" ] && targets+=("$target")
# Queried in the main output base: it knows the bazel-* links of the
# checkout as its own and does not descend into them; the sanitizer's base
# would.
done < <(bazel query "$query" 2>/dev/null)
if [ ${#targets[@]} -eq 0 ]; then
  echo "sanitize: no tests match $query" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
echo "sanitize: ${#targets[@]} test targets under ASan + UBSan"

status=0
bazel_log="$(mktemp)"
trap 'rm -f "$bazel_log"' EXIT
"${bazel_cmd[@]}" test "${flags[@]}" --test_output=errors "${targets[@]}" 2>&1 |
  tee "$bazel_log"
status=${PIPESTATUS[0]}

passed=0
failed=0
skipped=0
junit_add "$("${bazel_cmd[@]}" info "${flags[@]}" bazel-testlogs 2>/dev/null)" "$bazel_log" \
  "${targets[@]}"

if [ $status -ne 0 ] && [ $failed -eq 0 ]; then
  failed=1
fi
junit_report
[ $status -eq 0 ] && [ $failed -eq 0 ]
