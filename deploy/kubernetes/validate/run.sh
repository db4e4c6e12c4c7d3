#!/bin/sh
# Offline validation of every Kubernetes overlay of Joule, start to end:
#
#   deploy/kubernetes/validate/run.sh
#
#  1. ../render.sh renders every overlay and monitoring/ into a temporary
#     directory (KUBECTL and PYTHON are passed through to it);
#  2. the npm packages are installed from package-lock.json (npm ci) when
#     node_modules is missing or does not match the lockfile;
#  3. validate.mjs checks every rendered object: schema, unknown fields,
#     policy (see its header);
#  4. validate_test.mjs, the checker's own tests, run with node --test;
#  5. check_rules.sh runs promtool check rules on the PrometheusRule;
#  with JOULE_BIN_DIR (bazel-bin), check_args.mjs first runs every Joule
#  container's binary with exactly its arguments and --check-config.
#
# The last line is `kubernetes manifests: N objects in M overlays valid`
# (monitoring/ counts as an overlay); any failure stops the script with a
# message and a non-zero status. Environment: KUBECTL (default kubectl),
# PYTHON, NODE (default node), NPM (default npm), PROMTOOL.
set -eu

die() {
  echo "run.sh: $*" >&2
  exit 1
}

here=$(cd "$(dirname "$0")" && pwd)
NODE=${NODE:-node}
NPM=${NPM:-npm}
command -v "$NODE" >/dev/null 2>&1 || die "no $NODE (Node.js 20 or later)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/joule-validate.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT INT TERM

echo "== render"
"$here/../render.sh" "$tmp/out" || die "render.sh failed"

echo "== npm packages"
if [ ! -d "$here/node_modules" ] || ! (cd "$here" && "$NPM" ls --all >/dev/null 2>&1); then
  (cd "$here" && "$NPM" ci --prefer-offline --no-audit --no-fund) || die "npm ci failed in $here"
else
  echo "node_modules matches package-lock.json"
fi

echo "== validate.mjs"
# The rendered names have no spaces (overlay directory names).
# shellcheck disable=SC2046
"$NODE" "$here/validate.mjs" $(ls "$tmp/out"/*.yaml) >"$tmp/validate.out" || {
  cat "$tmp/validate.out"
  die "validate.mjs found problems (above)"
}
cat "$tmp/validate.out"
summary=$(sed -n 's/^validate.mjs: \([0-9][0-9]*\) objects in \([0-9][0-9]*\) files valid$/\1 \2/p' "$tmp/validate.out")
[ -n "$summary" ] || die "validate.mjs printed no summary"

if [ -n "${JOULE_BIN_DIR:-}" ]; then
  echo "== check_args.mjs"
  # shellcheck disable=SC2046
  "$NODE" "$here/check_args.mjs" "$JOULE_BIN_DIR" $(ls "$tmp/out"/*.yaml) ||
    die "a container's arguments are refused by its binary (above)"
fi

echo "== validate_test.mjs"
(cd "$here" && "$NODE" --test validate_test.mjs) >"$tmp/test.out" 2>&1 || {
  cat "$tmp/test.out"
  die "validate_test.mjs failed"
}
grep -E '^# (tests|pass|fail) ' "$tmp/test.out"

echo "== check_rules.sh"
"$here/check_rules.sh" "$tmp/out/monitoring.yaml" || die "check_rules.sh failed"

# "N M" from the summary: split on purpose.
# shellcheck disable=SC2086
set -- $summary
echo "kubernetes manifests: $1 objects in $2 overlays valid"
