#!/bin/sh
# Example --suspend-program / --resume-program for joule-scheduler's idle
# power management: powers a node off (soft, through the OS) or on through
# its BMC with ipmitool. Install it twice, or link it, as
#   joule-ipmi-suspend  ->  runs "chassis power soft"
#   joule-ipmi-resume   ->  runs "chassis power on"
# or pass the action in JOULE_POWER_ACTION (suspend | resume).
#
# The scheduler runs it as PROGRAM NODE, one at a time, and kills it after
# two minutes. Joule never suspends a node that runs a task or holds GPUs
# for one; a node that does not register again within --resume-timeout is
# marked down and its work placed elsewhere.
#
# Configuration (environment of joule-scheduler):
#   JOULE_BMC_MAP       file of "NODE BMC-ADDRESS" lines (default
#                       /etc/joule/bmc-map)
#   JOULE_BMC_USER      BMC user (default joule)
#   JOULE_BMC_PASSWORD_FILE  file holding the BMC password (default
#                       /etc/joule/bmc-password, mode 0600)
# Redfish or a cloud API work the same way: any executable that takes the
# node name and exits 0 once the request is accepted.
set -eu

node="${1:?usage: $0 NODE}"
case "${JOULE_POWER_ACTION:-$(basename "$0")}" in
  *suspend*) action="soft" ;;
  *resume*) action="on" ;;
  *) echo "$0: set JOULE_POWER_ACTION to suspend or resume" >&2; exit 2 ;;
esac

map="${JOULE_BMC_MAP:-/etc/joule/bmc-map}"
bmc="$(awk -v n="$node" '$1 == n { print $2; exit }' "$map")"
if [ -z "$bmc" ]; then
  echo "$0: node $node has no BMC address in $map" >&2
  exit 3
fi
exec ipmitool -I lanplus -H "$bmc" -U "${JOULE_BMC_USER:-joule}" \
  -f "${JOULE_BMC_PASSWORD_FILE:-/etc/joule/bmc-password}" chassis power "$action"
