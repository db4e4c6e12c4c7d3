#!/bin/sh
# deploy/power/ipmi-power.sh: maps the node to its BMC, runs ipmitool with
# "chassis power soft" to suspend and "chassis power on" to resume, and fails
# with a clear message for a node without a BMC address or an unknown action.
# A fake ipmitool on PATH records its arguments.
set -eu

script="deploy/power/ipmi-power.sh"
work="${TEST_TMPDIR:-$(mktemp -d)}"
mkdir -p "$work/bin"
cat > "$work/bin/ipmitool" <<FAKE
#!/bin/sh
echo "\$*" >> "$work/calls"
FAKE
chmod +x "$work/bin/ipmitool"
printf 'gpu-a 10.0.0.11\ngpu-b 10.0.0.12\n' > "$work/bmc-map"
echo secret > "$work/password"
export PATH="$work/bin:$PATH" JOULE_BMC_MAP="$work/bmc-map" JOULE_BMC_USER=ops \
  JOULE_BMC_PASSWORD_FILE="$work/password"

fail() { echo "FAIL: $*" >&2; exit 1; }

JOULE_POWER_ACTION=suspend sh "$script" gpu-b
JOULE_POWER_ACTION=resume sh "$script" gpu-a
expected="-I lanplus -H 10.0.0.12 -U ops -f $work/password chassis power soft
-I lanplus -H 10.0.0.11 -U ops -f $work/password chassis power on"
[ "$(cat "$work/calls")" = "$expected" ] || fail "ipmitool calls: $(cat "$work/calls")"

if out=$(JOULE_POWER_ACTION=suspend sh "$script" gpu-z 2>&1); then fail "unknown node accepted"; fi
case "$out" in *"node gpu-z has no BMC address"*) ;; *) fail "unknown node: $out" ;; esac
if out=$(JOULE_POWER_ACTION=reboot sh "$script" gpu-a 2>&1); then fail "bad action accepted"; fi
case "$out" in *"JOULE_POWER_ACTION"*) ;; *) fail "bad action: $out" ;; esac
if sh "$script" 2>/dev/null; then fail "no node accepted"; fi
echo PASS
