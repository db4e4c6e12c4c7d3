#!/usr/bin/env bash
# The main job: a scheduler on its embedded store, three local agents with
# simulated devices (4x V100, 2x A40, CPU only), the example jobs submitted
# with joulectl and followed to completion, then a table per job. Stops
# everything it started on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh

echo "== building"
bazel build --noshow_progress //scheduler:joule-scheduler //agent:joule-agent \
  //cli:joulectl //examples:mlp_trainer //examples:batch_infer

WORK="$(mktemp -d -t joule-demo.XXXXXX)"
# Private copies, so a rebuild during the demo cannot swap binaries.
mkdir -p "$WORK/bin"
for target in scheduler/joule-scheduler agent/joule-agent cli/joulectl \
              examples/mlp_trainer examples/batch_infer; do
  cp "bazel-bin/$target" "$WORK/bin/"
done
BIN="$WORK/bin"
PIDS=()

cleanup() {
  trap - EXIT INT TERM
  if [ ${#PIDS[@]} -gt 0 ]; then
    echo "== stopping agents and scheduler"
    # Agents first: they stop their tasks and restore caps.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
      kill -TERM "${PIDS[$i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
      for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done
  fi
  if pgrep -f "$BIN/" >/dev/null 2>&1; then
    echo "warning: processes left behind:" >&2
    pgrep -af "$BIN/" >&2 || true
    pkill -KILL -f "$BIN/" || true
  fi
  echo "logs and data were in $WORK (removed)"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "interrupted"; exit 130' INT TERM

echo "== starting joule-scheduler (embedded store in $WORK/data)"
# Short profiling windows so that profiling fits in the demo's small jobs.
"$BIN/joule-scheduler" --listen=127.0.0.1:0 --data-dir="$WORK/data" \
  --profile-step-w=50 --profile-warmup=1 --profile-window=4 \
  --carbon-config=examples/carbon.yaml --metrics-listen=127.0.0.1:0 \
  >"$WORK/scheduler.out" 2>"$WORK/scheduler.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
  grep -q "listening on" "$WORK/scheduler.out" 2>/dev/null &&
    grep -q "metrics on" "$WORK/scheduler.out" 2>/dev/null && break
  sleep 0.1
done
ADDRESS="$(sed -n 's/^listening on //p' "$WORK/scheduler.out")"
[ -n "$ADDRESS" ] || { echo "scheduler did not start:"; cat "$WORK/scheduler.log"; exit 1; }
export JOULE_SCHEDULER="$ADDRESS"
METRICS="$(sed -n 's/^metrics on //p' "$WORK/scheduler.out")"
echo "   listening on $ADDRESS, metrics on $METRICS"

start_agent() {
  local node="$1" simulate="$2" static="$3" region="${4:-}"
  # The example workloads are found through the agents' PATH.
  PATH="$BIN:$PATH" "$BIN/joule-agent" --node-name="$node" \
    ${simulate:+--simulate="$simulate"} --static-power-w="$static" \
    --work-dir="$WORK/agent-$node" --cpus=8 --memory=32Gi --listen=127.0.0.1:0 \
    --telemetry-period=0.5 ${region:+--label=joule.dev/region="$region"} \
    >"$WORK/agent-$node.out" 2>"$WORK/agent-$node.log" &
  PIDS+=($!)
}
echo "== starting three agents"
start_agent gpu-v100 V100:4 120
start_agent gpu-a40 A40:2 90 low-carbon
start_agent cpu-only "" 60
for _ in $(seq 1 100); do
  [ "$("$BIN/joulectl" nodes 2>/dev/null | grep -c READY)" -eq 3 ] && break
  sleep 0.1
done
"$BIN/joulectl" nodes

echo "== submitting example jobs"
JOBS=()
for file in examples/jobs/mnist-mlp.yaml examples/jobs/mlp-ddp-a40.yaml \
            examples/jobs/batch-infer.yaml examples/jobs/cpu-train.yaml; do
  id="$("$BIN/joulectl" submit -q -f "$file")"
  echo "   $file -> $id"
  JOBS+=("$id")
done

echo "== following jobs to completion"
for id in "${JOBS[@]}"; do
  "$BIN/joulectl" watch "$id" || true
done

# The same training class again: its power profile is stored, so it starts
# at the chosen cap without profiling.
echo "== submitting mnist-mlp again (a recurring job class)"
id="$("$BIN/joulectl" submit -q -f examples/jobs/mnist-mlp.yaml)"
JOBS+=("$id")
"$BIN/joulectl" watch "$id" || true

echo
echo "== results"
for id in "${JOBS[@]}"; do
  echo
  "$BIN/joulectl" get "$id" | sed '/^Events:/,$d'
  # The profiling steps, when there were any.
  "$BIN/joulectl" get "$id" | grep -E "Profiling|CapChosen" || true
done
echo
echo "== why the first job went where it did"
"$BIN/joulectl" explain "${JOBS[0]}"
echo
echo "== cap and batch decisions of every job (joulectl explain)"
for id in "${JOBS[@]}"; do
  "$BIN/joulectl" explain "$id" | grep -E "^(Job|Cap|Batch):"
done
echo
"$BIN/joulectl" list

echo "== the scheduler's Prometheus totals (http://$METRICS/metrics)"
sleep 2  # the exporter refreshes once a second
exec 3<>"/dev/tcp/${METRICS%:*}/${METRICS##*:}"
printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
grep -E '^joule_(energy_joules_total|energy_saved_joules_total|co2e_grams_total|cost_total|jobs)' <&3 || true
exec 3<&-
