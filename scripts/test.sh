#!/usr/bin/env bash
# Installs what is missing, builds everything, runs the whole test suite.
# Ends with one line "N passed, M failed" (test cases, from each test
# target's JUnit XML; a test target that produced no XML counts as one
# failure). Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/junit_totals.sh

./scripts/setup.sh --test || { echo "0 passed, 1 failed"; exit 1; }

BAZEL_FLAGS=(--noshow_progress)
TEST_FLAGS=()
# The measured data beside the checkout (shared/data), for the tests that
# read the real tables; without it they skip.
if [ -d ../shared/data/gpu-power ]; then
  TEST_FLAGS+=("--test_env=JOULE_DATA_DIR=$(cd ../shared/data/gpu-power && pwd)")
fi
if [ "${CI:-}" = "true" ]; then
  BAZEL_FLAGS+=(--curses=no --color=no)
fi

status=0
bazel_log="$(mktemp)"
trap 'rm -f "$bazel_log"' EXIT
bazel build "${BAZEL_FLAGS[@]}" //... || status=$?
if [ $status -eq 0 ]; then
  bazel test "${BAZEL_FLAGS[@]}" "${TEST_FLAGS[@]}" --test_output=errors //... 2>&1 |
    tee "$bazel_log"
  status=${PIPESTATUS[0]}
fi

passed=0
failed=0
skipped=0
mapfile -t targets < <(bazel query 'tests(//...)' 2>/dev/null)
junit_add "$(bazel info bazel-testlogs 2>/dev/null)" "$bazel_log" "${targets[@]}"

# The Python library (python/joule): its unit tests, the contract's shared
# vectors and the PyTorch workload, with Debian's python3 (the one
# python3-torch is for; a python3 earlier on PATH may not have it). One per
# test case.
py_log="$(mktemp)"
/usr/bin/python3 -m unittest discover -s python/tests -t python 2>&1 | tee "$py_log"
py_status=${PIPESTATUS[0]}
py_ran="$(sed -n 's/^Ran \([0-9]*\) tests* in .*/\1/p' "$py_log" | tail -1)"
py_bad="$(sed -n 's/^FAILED (\(.*\))$/\1/p' "$py_log" | grep -o '\(failures\|errors\)=[0-9]*' |
  cut -d= -f2 | awk '{ n += $1 } END { print n + 0 }')"
py_skipped="$(grep -o 'skipped=[0-9]*' "$py_log" | tail -1 | cut -d= -f2)"
rm -f "$py_log"
if [ -z "$py_ran" ]; then
  failed=$((failed + 1))
else
  py_bad=${py_bad:-0}
  py_skipped=${py_skipped:-0}
  if [ "$py_status" -ne 0 ] && [ "$py_bad" -eq 0 ]; then py_bad=1; fi
  passed=$((passed + py_ran - py_bad - py_skipped))
  failed=$((failed + py_bad))
  skipped=$((skipped + py_skipped))
fi

# The libFuzzer targets, 5 s each: one pass or failure per target.
fuzz_log="$(mktemp)"
./scripts/fuzz.sh 5 2>&1 | tee "$fuzz_log"
fuzz_counts="$(sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$fuzz_log" | tail -1)"
rm -f "$fuzz_log"
read -r fuzz_passed fuzz_failed <<<"${fuzz_counts:-0 1}"
passed=$((passed + fuzz_passed))
failed=$((failed + fuzz_failed))

# The Kubernetes manifests, offline: every overlay rendered by Debian's
# kubectl, validated against the API schemas and the policy, the validator's
# own tests, every Joule container's arguments checked by its binary
# (--check-config), promtool on the generated rules. Counts: one per
# overlay, validator test and container, one for the rules; a failure
# counts one.
k8s_log="$(mktemp)"
KUBECTL="$PWD/.cache/kubernetes-client/usr/bin/kubectl" JOULE_BIN_DIR="$(bazel info bazel-bin 2>/dev/null)" \
  deploy/kubernetes/validate/run.sh 2>&1 | tee "$k8s_log"
k8s_status=${PIPESTATUS[0]}
if [ "$k8s_status" -eq 0 ]; then
  overlays="$(sed -n 's/^kubernetes manifests: [0-9]* objects in \([0-9]*\) overlays valid$/\1/p' "$k8s_log")"
  node_tests="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$k8s_log" | tail -1)"
  containers="$(sed -n 's/^check_args: \([0-9]*\) containers accepted by their binaries$/\1/p' "$k8s_log")"
  passed=$((passed + ${overlays:-0} + ${node_tests:-0} + ${containers:-0} + 1))
else
  failed=$((failed + 1))
fi
rm -f "$k8s_log"

if [ $status -ne 0 ] && [ $failed -eq 0 ]; then
  failed=1
fi
junit_report
[ $status -eq 0 ] && [ $failed -eq 0 ]
