#!/usr/bin/env bash
# The main job: a scheduler on its embedded store, three local agents with
# simulated devices (4x V100, 2x A40, CPU only), the example jobs submitted
# with joulectl by their owners and followed to completion, then a table per
# job. Everything runs the secure way a cluster would: a CA made on the fly
# (openssl) signs the scheduler's certificate and one per agent node, each
# user has a bearer token, Prometheus scrapes with basic auth, and the
# agents run every task as its owner's uid. Stops everything it started on
# exit, Ctrl-C included.
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
# The PyTorch job's script, with the joule library beside it.
cp examples/jobs/digits_ddp.py "$WORK/bin/"
mkdir -p "$WORK/bin/joule"
cp python/joule/*.py "$WORK/bin/joule/"
chmod -R go+rX "$WORK/bin/joule"
BIN="$WORK/bin"
PIDS=()
# Tasks run as their owners, who must reach their task directories and the
# example binaries.
chmod 711 "$WORK"
chmod 755 "$BIN"

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

echo "== making a CA, certificates and tokens"
PKI="$WORK/pki"
mkdir -m 700 "$PKI"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$PKI/ca.key" -out "$PKI/ca.pem" -days 1 -subj "/CN=Joule demo CA" \
  -addext basicConstraints=critical,CA:TRUE 2>/dev/null
# issue NAME SUBJECT_ALT_NAME: a certificate signed by the demo CA.
issue() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "/CN=$1" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$2" >"$PKI/$1.ext"
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" \
    -set_serial "$((RANDOM * 32768 + RANDOM))" -days 1 -extfile "$PKI/$1.ext" \
    -out "$PKI/$1.pem" 2>/dev/null
}
issue scheduler "DNS:localhost,IP:127.0.0.1"
for node in gpu-v100 gpu-a40 cpu-only; do
  issue "node-$node" "URI:spiffe://joule/node/$node"
done
# One token per user (the example jobs belong to alice, bob and carol) and
# one for an operator; the scheduler's file holds only their hashes.
: >"$PKI/tokens"
for entry in alice:user bob:user carol:user ops:operator; do
  user="${entry%%:*}"
  made="$("$BIN/joulectl" token create --user "$user" --role "${entry##*:}")"
  sed -n 's/^token: //p' <<<"$made" >"$PKI/token-$user"
  sed -n 's/^tokens-file line: //p' <<<"$made" >>"$PKI/tokens"
done
chmod 600 "$PKI"/token-* "$PKI/tokens"
# Prometheus's scrape password, stored hashed for both exporters.
METRICS_PASSWORD="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf 'prometheus sha256:%s\n' \
  "$(printf '%s' "$METRICS_PASSWORD" | sha256sum | cut -d' ' -f1)" >"$PKI/metrics-users"
# The agents' map from job owners to uids: unprivileged uids when run as
# root, otherwise everyone is the user running the demo.
if [ "$(id -u)" -eq 0 ]; then
  printf 'alice 60001 60001\nbob 60002 60002\ncarol 60003 60003\n' >"$WORK/task-users"
  TASK_UID_FLAGS=()
else
  for user in alice bob carol; do
    echo "$user $(id -u) $(id -g)" >>"$WORK/task-users"
  done
  TASK_UID_FLAGS=(--min-task-uid="$(id -u)")
fi
echo "   CA, scheduler and node certificates in $PKI; tokens for alice, bob, carol, ops"

echo "== starting joule-scheduler (TLS, tokens; embedded store in $WORK/data)"
# Short profiling windows so that profiling fits in the demo's small jobs.
"$BIN/joule-scheduler" --listen=127.0.0.1:0 --data-dir="$WORK/data" \
  --tls-cert="$PKI/scheduler.pem" --tls-key="$PKI/scheduler.key" --tls-ca="$PKI/ca.pem" \
  --tokens-file="$PKI/tokens" \
  --profile-step-w=50 --profile-warmup=1 --profile-window=4 \
  --carbon-config=examples/carbon.yaml --metrics-listen=127.0.0.1:0 \
  --metrics-auth-file="$PKI/metrics-users" \
  >"$WORK/scheduler.out" 2>"$WORK/scheduler.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
  grep -q "listening on" "$WORK/scheduler.out" 2>/dev/null &&
    grep -q "metrics on" "$WORK/scheduler.out" 2>/dev/null && break
  sleep 0.1
done
ADDRESS="$(sed -n 's/^listening on //p' "$WORK/scheduler.out")"
[ -n "$ADDRESS" ] || { echo "scheduler did not start:"; cat "$WORK/scheduler.log"; exit 1; }
# joulectl's config file, like a kubeconfig: address, CA, the operator's
# token. Submissions below pass each owner's token instead.
cat >"$WORK/joulectl.yaml" <<CONFIG
scheduler: $ADDRESS
ca: $PKI/ca.pem
token-file: $PKI/token-ops
CONFIG
export JOULE_CONFIG="$WORK/joulectl.yaml"
METRICS="$(sed -n 's/^metrics on //p' "$WORK/scheduler.out")"
echo "   listening on $ADDRESS, metrics on $METRICS"

start_agent() {
  local node="$1" simulate="$2" static="$3" ports="$4" region="${5:-}"
  # The example workloads are found through the agents' PATH.
  PATH="$BIN:$PATH" "$BIN/joule-agent" --node-name="$node" --scheduler="$ADDRESS" \
    --tls-ca="$PKI/ca.pem" --tls-cert="$PKI/node-$node.pem" --tls-key="$PKI/node-$node.key" \
    --task-users="$WORK/task-users" ${TASK_UID_FLAGS[@]+"${TASK_UID_FLAGS[@]}"} \
    ${simulate:+--simulate="$simulate"} --static-power-w="$static" \
    --work-dir="$WORK/agent-$node" --cpus=8 --memory=32Gi --listen=127.0.0.1:0 \
    --telemetry-period=0.5 ${region:+--label=joule.dev/region="$region"} \
    --task-ports="$ports" \
    >"$WORK/agent-$node.out" 2>"$WORK/agent-$node.log" &
  PIDS+=($!)
}
echo "== starting three agents"
# Three "nodes" on one host share its ports: each its own rendezvous range.
start_agent gpu-v100 V100:4 120 29500-29599
start_agent gpu-a40 A40:2 90 29600-29699 low-carbon
start_agent cpu-only "" 60 29700-29799
for _ in $(seq 1 100); do
  [ "$("$BIN/joulectl" nodes 2>/dev/null | grep -c READY)" -eq 3 ] && break
  sleep 0.1
done
"$BIN/joulectl" nodes

echo "== submitting example jobs"
JOBS=()
for file in examples/jobs/mnist-mlp.yaml examples/jobs/mlp-ddp-a40.yaml \
            examples/jobs/batch-infer.yaml examples/jobs/cpu-train.yaml \
            examples/jobs/digits-ddp.yaml; do
  owner="$(sed -n 's/^user: *//p' "$file")"
  id="$("$BIN/joulectl" --token-file="$PKI/token-$owner" submit -q -f "$file")"
  echo "   $file -> $id (as $owner)"
  JOBS+=("$id")
done

echo "== following jobs to completion"
for id in "${JOBS[@]}"; do
  "$BIN/joulectl" watch "$id" || true
done

# The same training class again: its power profile is stored, so it starts
# at the chosen cap without profiling.
echo "== submitting mnist-mlp again (a recurring job class)"
id="$("$BIN/joulectl" --token-file="$PKI/token-alice" submit -q -f examples/jobs/mnist-mlp.yaml)"
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
echo "== access control: bob asks for alice's job (refused), alice's own list"
"$BIN/joulectl" --token-file="$PKI/token-bob" get "${JOBS[0]}" || true
"$BIN/joulectl" --token-file="$PKI/token-alice" list
echo
echo "== every job (the operator's view)"
"$BIN/joulectl" list

echo "== the scheduler's Prometheus totals (http://$METRICS/metrics)"
sleep 2  # the exporter refreshes once a second
exec 3<>"/dev/tcp/${METRICS%:*}/${METRICS##*:}"
printf 'GET /metrics HTTP/1.0\r\nAuthorization: Basic %s\r\n\r\n' \
  "$(printf 'prometheus:%s' "$METRICS_PASSWORD" | base64 -w0)" >&3
grep -E '^joule_(energy_joules_total|energy_saved_joules_total|co2e_grams_total|cost_total|jobs)' <&3 || true
exec 3<&-
