#!/bin/sh
# Checks the alert and recording rules of the rendered monitoring tree with
# promtool: every PrometheusRule's spec (its `groups:`) is written to a rules
# file of its own, and `promtool check rules` reads them all.
#
#   deploy/kubernetes/validate/check_rules.sh RENDERED_MONITORING_YAML
#
# RENDERED_MONITORING_YAML is render.sh's OUTDIR/monitoring.yaml. promtool
# comes from Debian's prometheus package, installed with apt-get when it is
# missing and we are root. The YAML is read with node and the `yaml` package
# of this directory (npm ci here first). Environment: PROMTOOL (default
# promtool), NODE (default node).
set -eu

die() {
  echo "check_rules.sh: $*" >&2
  exit 1
}

[ "$#" -eq 1 ] || { echo "usage: $0 RENDERED_MONITORING_YAML" >&2; exit 2; }
[ -f "$1" ] || die "no file $1"
here=$(cd "$(dirname "$0")" && pwd)
input=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PROMTOOL=${PROMTOOL:-promtool}
NODE=${NODE:-node}
command -v "$NODE" >/dev/null 2>&1 || die "no $NODE"
[ -d "$here/node_modules/yaml" ] || die "no $here/node_modules/yaml: run npm ci in $here"

if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "check_rules.sh: installing promtool (Debian package prometheus)"
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; } \
      >/dev/null 2>&1 || die "apt-get install prometheus failed"
  fi
  command -v "$PROMTOOL" >/dev/null 2>&1 || die "no $PROMTOOL (Debian: apt-get install prometheus)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/joule-rules.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT INT TERM

# Writes $tmp/NAME.rules.yaml per PrometheusRule and prints their paths.
(cd "$here" && "$NODE" --input-type=module - "$input" "$tmp") >"$tmp/files" <<'JS' || die "cannot extract the rules from $1"
import { readFileSync, writeFileSync } from "node:fs";
import { parseAllDocuments, stringify } from "yaml";
const [input, dir] = process.argv.slice(2);
const fail = (msg) => { console.error(`check_rules.sh: ${msg}`); process.exit(1); };
let n = 0;
for (const doc of parseAllDocuments(readFileSync(input, "utf8"), { version: "1.1" })) {
  if (doc.errors.length) fail(`${input}: ${doc.errors[0].message.split("\n")[0]}`);
  const obj = doc.toJS();
  if (!obj || obj.kind !== "PrometheusRule") continue;
  const name = String(obj.metadata?.name ?? "rule").replace(/[^A-Za-z0-9_.-]/g, "_");
  if (!obj.spec || !Array.isArray(obj.spec.groups)) fail(`PrometheusRule ${name}: no spec.groups`);
  const path = `${dir}/${++n}-${name}.rules.yaml`;
  writeFileSync(path, stringify({ groups: obj.spec.groups }, { lineWidth: 0 }));
  console.log(path);
}
if (n === 0) fail(`${input}: no PrometheusRule`);
JS

# One path a line, no spaces (mktemp's and sanitised names): split on purpose.
# shellcheck disable=SC2046
"$PROMTOOL" check rules $(cat "$tmp/files") || die "promtool check rules failed"
