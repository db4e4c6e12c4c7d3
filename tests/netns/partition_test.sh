#!/usr/bin/env bash
# A real network between hosts: the scheduler and two agents each in a
# network namespace of its own (ip netns, veth pairs to a bridge in a fourth
# namespace, from Debian's iproute2), each host with its own address and a
# TLS certificate for that address, made here with openssl.
#
#  1. A 2-replica gang job runs across the two agents.
#  2. Agent b's link goes down mid-job: its task is lost when the heartbeat
#     timeout passes, and the job is retried per its restart policy. The
#     time from the cut to the retry is printed ("cut to retry: S s").
#  3. The link comes back: agent b reconnects, the scheduler stops the task
#     of the old attempt it still runs, and the retried job runs on both
#     agents to success.
#
# Usage (Bazel passes these): partition_test.sh SCHEDULER AGENT JOULECTL TRAINER
# Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for the namespaces; where they
# cannot be made it says why and is reported as skipped.
set -euo pipefail

scheduler_bin=$(realpath "$1")
agent_bin=$(realpath "$2")
ctl_bin=$(realpath "$3")
trainer_bin=$(realpath "$4")

# Bazel's JUnit file: a skip is written as one, so the suite counts it.
skip() {
  echo "SKIPPED: $*"
  if [ -n "${XML_OUTPUT_FILE:-}" ]; then
    cat >"$XML_OUTPUT_FILE" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="netns_partition_test" tests="1" failures="0" skipped="1">
<testcase name="PartitionAndHeal" classname="netns"><skipped message="$*"/></testcase>
</testsuite></testsuites>
EOF
  fi
  exit 0
}

fail() {
  echo "FAILED: $*" >&2
  for log in "$work"/*.err; do
    echo "---- $log (last 20 lines)" >&2
    tail -20 "$log" >&2 || true
  done
  exit 1
}

work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/joule-netns.XXXXXX")
tag="j$$"
ns_switch="${tag}sw"
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for host in s a b; do ip netns del "${tag}${host}" 2>/dev/null || true; done
  ip netns del "$ns_switch" 2>/dev/null || true
}
trap cleanup EXIT

command -v ip >/dev/null || skip "no ip command (iproute2)"
ip netns add "$ns_switch" 2>"$work/netns.err" ||
  skip "cannot make network namespaces here: $(head -1 "$work/netns.err")"
ip -n "$ns_switch" link add br0 type bridge
ip -n "$ns_switch" link set br0 up

# One host per namespace, on 10.77.0.0/24 through the switch's bridge.
declare -A address=([s]=10.77.0.1 [a]=10.77.0.2 [b]=10.77.0.3)
for host in s a b; do
  ns="${tag}${host}"
  ip netns add "$ns"
  ip link add "${tag}v${host}" type veth peer name "${tag}p${host}"
  ip link set "${tag}v${host}" netns "$ns"
  ip link set "${tag}p${host}" netns "$ns_switch"
  ip -n "$ns_switch" link set "${tag}p${host}" master br0
  ip -n "$ns_switch" link set "${tag}p${host}" up
  ip -n "$ns" addr add "${address[$host]}/24" dev "${tag}v${host}"
  ip -n "$ns" link set "${tag}v${host}" up
  ip -n "$ns" link set lo up
done

# Certificates: the scheduler's for its address, each agent's for its node
# name (spiffe://joule/node/NAME) and address.
pki="$work/pki"
mkdir -p "$pki"
issue() {  # issue NAME SAN
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/$1.key" \
    -out "$pki/$1.csr" -subj "/CN=$1" 2>/dev/null
  printf 'subjectAltName=%s\n' "$2" >"$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -out "$pki/$1.crt" -days 1 -extfile "$pki/$1.ext" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/ca.key" \
  -out "$pki/ca.crt" -days 1 -subj "/CN=Joule netns test CA" 2>/dev/null
issue scheduler "IP:${address[s]}"
issue a "URI:spiffe://joule/node/a,IP:${address[a]}"
issue b "URI:spiffe://joule/node/b,IP:${address[b]}"
token="jt_netns_$(date +%s%N)"
printf '%s\n' "$token" >"$work/admin.token"
printf 'token sha256:%s admin admin\n' "$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)" \
  >"$work/tokens"
chmod 600 "$work/tokens" "$work/admin.token"
printf 'admin 0 0\nalice 0 0\n' >"$work/task-users"

in_ns() {  # in_ns HOST LOG COMMAND... (in the background)
  local host=$1 log=$2
  shift 2
  ip netns exec "${tag}${host}" "$@" >"$work/$log.out" 2>"$work/$log.err" &
  pids+=($!)
}

in_ns s scheduler "$scheduler_bin" --listen="${address[s]}:7070" --data-dir="$work/data" \
  --tls-cert="$pki/scheduler.crt" --tls-key="$pki/scheduler.key" --tls-ca="$pki/ca.crt" \
  --tokens-file="$work/tokens" --heartbeat-timeout=3 --tick-ms=50 --stop-grace=2
for host in a b; do
  in_ns "$host" "agent-$host" "$agent_bin" --scheduler="${address[s]}:7070" --node-name="$host" \
    --listen="${address[$host]}:7071" --work-dir="$work/agent-$host" --telemetry-period=0.2 \
    --heartbeat-period=0.5 --simulate=V100:1 --cpus=4 --memory=8Gi --stop-grace=2 \
    --task-users="$work/task-users" --allow-root-tasks \
    --tls-ca="$pki/ca.crt" --tls-cert="$pki/$host.crt" --tls-key="$pki/$host.key"
done

ctl() {
  ip netns exec "${tag}s" "$ctl_bin" --scheduler="${address[s]}:7070" --ca="$pki/ca.crt" \
    --token-file="$work/admin.token" "$@"
}
# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}
ready_nodes() { [ "$(ctl nodes 2>/dev/null | grep -c READY)" -ge 2 ]; }
wait_for 30 ready_nodes || fail "the two agents did not register across the namespaces"

cat >"$work/job.yaml" <<EOF
name: netns-gang
type: training
command: $trainer_bin
args: ["--epochs", "30", "--samples-per-shard", "64", "--sim-step-ms", "250"]
resources: {gpus: 1, cpus: 1, memory: 256Mi}
replicas: 2
shard_count: 4
user: alice
restart_policy: {max_retries: 3, backoff_s: 1, max_backoff_s: 2, retry_on: [lost]}
EOF
job=$(ctl submit -f "$work/job.yaml" | sed -n 's/^\(job-[0-9]*\).*/\1/p' | head -1)
[ -n "$job" ] || fail "submit printed no job id"

job_json() { ctl -o json get "$job"; }
running_on_both() {
  local json
  json=$(job_json) || return 1
  python3 - "$json" <<'EOF'
import json, sys
job = json.loads(sys.argv[1])
tasks = [t for t in job.get("tasks", []) if t.get("attempt") == job.get("attempts")]
ok = job.get("state") == "JOB_STATE_RUNNING" and len(tasks) == 2 and \
    all(t.get("state") == "TASK_STATE_RUNNING" for t in tasks) and \
    {t.get("node") for t in tasks} == {"a", "b"}
sys.exit(0 if ok else 1)
EOF
}
wait_for 60 running_on_both || fail "the gang job did not run on a and b: $(job_json)"
sleep 2

# The cut.
cut=$(date +%s.%N)
ip -n "${tag}b" link set "${tag}vb" down
retried() { job_json | grep '"reason": *"Retrying"' >/dev/null; }
wait_for 60 retried || fail "no retry after b's link went down: $(job_json)"
retry_time=$(job_json | python3 -c '
import json, sys, datetime
job = json.load(sys.stdin)
when = [e["time"] for e in job["events"] if e["reason"] == "Retrying"][0]
print(datetime.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp())')
echo "cut to retry: $(python3 -c "print(f'{$retry_time - $cut:.2f}')") s (heartbeat timeout 3 s)"

# The heal: b comes back and is told to stop the old attempt's task.
ip -n "${tag}b" link set "${tag}vb" up
grep_stop() { grep -q "stopping task .*${job}\.r[01]\.a1" "$work/agent-b.err"; }
wait_for 60 grep_stop || fail "agent b was not told to stop the old attempt's task"
echo "agent b: $(grep -m1 "stopping task .*${job}\.r[01]\.a1" "$work/agent-b.err" | sed 's/^.*stopping/stopping/')"
succeeded() { job_json | grep '"state": *"JOB_STATE_SUCCEEDED"' >/dev/null; }
wait_for 120 succeeded || fail "the retried job did not succeed: $(job_json)"
attempts=$(job_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["attempts"])')
[ "$attempts" -ge 2 ] || fail "the job succeeded without a retry (attempts $attempts)"
echo "PASSED: the gang job was retried after the partition and succeeded on attempt $attempts"
