# Sourced by scripts/test.sh and scripts/sanitize.sh: test-case totals from
# the JUnit XML each Bazel test target writes.
#
#   junit_add TESTLOGS BAZEL_LOG TARGET...
#       adds each target's test cases to the shell variables passed, failed
#       and skipped (which the caller sets to 0 first). TESTLOGS is the
#       output of `bazel info bazel-testlogs`; BAZEL_LOG, if not empty, holds
#       the `bazel test` output, so that a target Bazel failed but whose XML
#       shows no failing case (a sanitizer report at exit, after gtest wrote
#       a clean XML) still counts as one failure. A target with no XML is one
#       failure; one whose XML has no counts (a non-gtest test) is one case.
#   junit_report
#       prints "N passed, M failed[, K skipped]".

junit_add() {
  local testlogs="$1" bazel_log="$2"
  shift 2
  local target path xml header tests failures errors bad skips
  for target in "$@"; do
    path="${target#//}"
    path="${path/://}"
    xml="$testlogs/$path/test.xml"
    if [ ! -f "$xml" ]; then
      failed=$((failed + 1))
      continue
    fi
    if [ -n "$bazel_log" ] && grep -qE "^$target +(FAILED|TIMEOUT|NO STATUS)" "$bazel_log" &&
        ! grep -qE '<(failure|error)' "$xml"; then
      failed=$((failed + 1))
      continue
    fi
    # The first <testsuites ...> element carries the totals.
    header="$(grep -m1 -o '<testsuites[^>]*>' "$xml" || true)"
    tests="$(sed -n 's/.* tests="\([0-9]*\)".*/\1/p' <<<"$header")"
    failures="$(sed -n 's/.* failures="\([0-9]*\)".*/\1/p' <<<"$header")"
    errors="$(sed -n 's/.* errors="\([0-9]*\)".*/\1/p' <<<"$header")"
    tests=${tests:-0}
    bad=$(( ${failures:-0} + ${errors:-0} ))
    if [ "$tests" -eq 0 ]; then
      if grep -q '<failure' "$xml"; then failed=$((failed + 1)); else passed=$((passed + 1)); fi
      continue
    fi
    skips=$(grep -c '<skipped' "$xml" || true)
    passed=$((passed + tests - bad - skips))
    failed=$((failed + bad))
    skipped=$((skipped + skips))
  done
}

junit_report() {
  if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
  else
    echo "$passed passed, $failed failed"
  fi
}
