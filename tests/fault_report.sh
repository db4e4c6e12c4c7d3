#!/usr/bin/env bash
# Runs the fault scenarios (tests/fault/fault_test.cc: schedulers on Debian's
# real etcd killed, paused and restarted, etcd restarted, an agent killed) and
# prints one line per scenario: jobs submitted / finished / lost / duplicated
# and the recovery time the scenario measures.
#
#   tests/fault_report.sh            # from the repository root
#
# Needs what scripts/setup.sh installs (etcd-server among it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
bazel test //tests/fault:fault_test --test_output=all --cache_test_results=no \
  >"$log" 2>&1 || status=$?

printf '%-22s %9s %8s %5s %10s %10s\n' scenario submitted finished lost duplicated recovery
grep -o 'FAULT scenario=.*' "$log" | while read -r _ fields; do
  declare -A f=()
  for kv in $fields; do f[${kv%%=*}]=${kv#*=}; done
  printf '%-22s %9s %8s %5s %10s %9ss\n' "${f[scenario]}" "${f[submitted]}" \
    "${f[finished]}" "${f[lost]}" "${f[duplicated]}" "${f[recovery_s]}"
done
echo "(recovery: leader-kill-9 and paused-leader-fenced = kill/pause to a new"
echo " leader serving; scheduler-restart-x3 = worst kill to serving again;"
echo " etcd-restart = etcd down to the next accepted job; agent-kill-9 = node"
echo " death to the job's success)"
if [ "$status" -ne 0 ]; then
  echo "fault tests FAILED (bazel exit $status); the log:" >&2
  tail -n 80 "$log" >&2
fi
exit "$status"
