#!/usr/bin/env bash
# Runs promtool over the Prometheus files in deploy/prometheus.
#   promtool_test.sh config   check prometheus.yml (and the rule files it
#                             loads), alerts.yml, and the commented
#                             Kubernetes example in prometheus.yml
#   promtool_test.sh unit     promtool test rules alerts_test.yml
# Used by //deploy:prometheus_config_test and //deploy:alerts_unit_test; runs
# by hand from anywhere. Fails, never skips, when promtool is missing.
set -euo pipefail

if [ -n "${TEST_SRCDIR:-}" ]; then
  root="${TEST_SRCDIR}/${TEST_WORKSPACE}"
else
  root="$(cd "$(dirname "$0")/../.." && pwd)"
fi
dir="${root}/deploy/prometheus"
tmp="$(mktemp -d "${TEST_TMPDIR:-${TMPDIR:-/tmp}}/promtool.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

if ! command -v promtool >/dev/null 2>&1; then
  echo "FAILED: promtool not found on PATH: run scripts/setup.sh (it installs Debian's prometheus package)" >&2
  exit 1
fi

run() {
  echo "+ $*"
  if ! "$@"; then
    echo "FAILED: $*" >&2
    exit 1
  fi
}

case "${1:-}" in
  config)
    run promtool check config "${dir}/prometheus.yml"
    run promtool check rules "${dir}/alerts.yml"
    # The commented Kubernetes example: from its first "# - job_name:" line
    # to the end of that comment block, uncommented, as a config of its own.
    awk '
      !started && /^  # - job_name:/ { started = 1 }
      started && !/^  #/ { exit }
      started { sub(/^  # ?/, "  "); print }
    ' "${dir}/prometheus.yml" >"${tmp}/jobs.yml"
    jobs="$(grep -c '^  - job_name:' "${tmp}/jobs.yml" || true)"
    if [ "${jobs}" -lt 2 ]; then
      echo "FAILED: prometheus.yml has no commented Kubernetes example with both jobs (found ${jobs})" >&2
      exit 1
    fi
    if ! grep -q 'kubernetes_sd_configs' "${tmp}/jobs.yml"; then
      echo "FAILED: the commented example in prometheus.yml does not use kubernetes_sd_configs" >&2
      exit 1
    fi
    { echo "scrape_configs:"; cat "${tmp}/jobs.yml"; } >"${tmp}/kubernetes.yml"
    # Debian builds Prometheus without Kubernetes discovery, and its promtool
    # rejects kubernetes_sd_configs as an unknown field. There, the example is
    # checked with static targets in place of the discovery block: everything
    # else (relabelling included) is still checked.
    printf 'scrape_configs:\n  - job_name: probe\n    kubernetes_sd_configs:\n      - role: pod\n' \
      >"${tmp}/probe.yml"
    if ! promtool check config "${tmp}/probe.yml" >/dev/null 2>&1; then
      echo "NOTE: this promtool has no Kubernetes discovery; checking the example with static targets"
      awk '
        /^    kubernetes_sd_configs:/ { print "    static_configs: [{targets: [\"pod.example.internal:7073\"]}]"; skip = 1; next }
        skip && /^      / { next }
        { skip = 0; print }
      ' "${tmp}/kubernetes.yml" >"${tmp}/kubernetes_static.yml"
      run promtool check config "${tmp}/kubernetes_static.yml"
    else
      run promtool check config "${tmp}/kubernetes.yml"
    fi
    ;;
  unit)
    run promtool test rules "${dir}/alerts_test.yml"
    ;;
  *)
    echo "usage: $0 config|unit" >&2
    exit 2
    ;;
esac
echo "PASSED: promtool ${1}"
