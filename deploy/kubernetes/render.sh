#!/bin/sh
# Renders every Kubernetes overlay of Joule, offline, into OUTDIR: one file
# per overlay (OUTDIR/OVERLAY.yaml) and OUTDIR/monitoring.yaml.
#
#   deploy/kubernetes/render.sh OUTDIR
#
# It works on a temporary copy of deploy/kubernetes, into which generate.py
# writes monitoring/generated/ (the PrometheusRule and the dashboard
# ConfigMap, from deploy/prometheus/alerts.yml and
# deploy/grafana/dashboards/joule.json), so the tree itself is not touched.
# Then `kubectl kustomize` builds the base (checked, not written) and every
# overlay, and each result is checked: it parses, every container has CPU
# and memory requests and limits, every image is pinned to a tag other than
# latest, every namespaced object is in the joule namespace. The checks
# need PyYAML (Debian: python3-yaml) and are skipped, saying so, without
# it. Any failure stops the script with a message and a non-zero status.
#
# Environment: KUBECTL (default kubectl; Debian 12's kubernetes-client,
# kubectl 1.20 with kustomize v2.0.3, is the oldest it is meant for),
# PYTHON (default python3).
set -eu

die() {
  echo "render.sh: $*" >&2
  exit 1
}

[ "$#" -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
KUBECTL=${KUBECTL:-kubectl}
PYTHON=${PYTHON:-python3}
command -v "$KUBECTL" >/dev/null 2>&1 || die "no $KUBECTL (Debian: apt-get install kubernetes-client)"
command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON"

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1" || die "cannot create $1"
out=$(cd "$1" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/joule-render.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT INT TERM
tree="$tmp/kubernetes"
cp -R "$here" "$tree" || die "cannot copy $here"
# Whatever an operator generated in place is not what we check.
rm -rf "$tree/monitoring/generated"

"$PYTHON" "$here/generate.py" "$tree/monitoring/generated" >"$tmp/generate.log" 2>&1 || {
  cat "$tmp/generate.log" >&2
  die "generate.py failed"
}
sed 's/^/  /' "$tmp/generate.log"

# build NAME DIR: kubectl kustomize DIR > $tmp/NAME.yaml, loudly on failure.
build() {
  if ! "$KUBECTL" kustomize "$2" >"$tmp/$1.yaml" 2>"$tmp/$1.err"; then
    cat "$tmp/$1.err" >&2
    die "kubectl kustomize ${2#"$tree"/} failed"
  fi
  [ -s "$tmp/$1.yaml" ] || die "kubectl kustomize ${2#"$tree"/} wrote nothing"
}

names=""
build base "$tree/base"
for dir in "$tree"/overlays/*/; do
  dir=${dir%/}
  [ -f "$dir/kustomization.yaml" ] || continue
  name=$(basename "$dir")
  build "$name" "$dir"
  names="$names $name"
done
[ -n "$names" ] || die "no overlays found under $here/overlays"
build monitoring "$tree/monitoring"
names="$names monitoring"

# $names is a space-separated list of directory names: split on purpose.
# shellcheck disable=SC2086
"$PYTHON" - "$tmp" base $names <<'PY' || die "checks failed"
import os
import sys

try:
    import yaml
except ImportError:
    print("  checks skipped: PyYAML not importable (Debian: python3-yaml)")
    sys.exit(0)

CLUSTER_SCOPED = {"Namespace", "PriorityClass", "ClusterRole", "ClusterRoleBinding",
                  "RuntimeClass", "ClusterIssuer", "CustomResourceDefinition"}
POD_TEMPLATE_KINDS = {"Deployment", "DaemonSet", "StatefulSet"}
tmp, names = sys.argv[1], sys.argv[2:]
problems = []
for name in names:
    path = os.path.join(tmp, name + ".yaml")
    try:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        problems.append("%s: not YAML: %s" % (name, e))
        continue
    if not docs:
        problems.append("%s: no objects" % name)
    kinds = {}
    for doc in docs:
        kind = doc.get("kind", "?")
        meta = doc.get("metadata", {})
        what = "%s: %s/%s" % (name, kind, meta.get("name", "?"))
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind not in CLUSTER_SCOPED and meta.get("namespace") != "joule":
            problems.append("%s: namespace %r, not joule" % (what, meta.get("namespace")))
        if kind not in POD_TEMPLATE_KINDS:
            continue
        spec = doc["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            image = c.get("image", "")
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if not tag or tag == "latest":
                problems.append("%s: container %s: image %r not pinned to a version"
                                % (what, c["name"], image))
            resources = c.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(part, {}):
                        problems.append("%s: container %s: no %s.%s"
                                        % (what, c["name"], part, resource))
    summary = ", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items()))
    print("  %-20s %s" % (name, summary))
for p in problems:
    print("render.sh: " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

for name in $names; do
  cp "$tmp/$name.yaml" "$out/$name.yaml" || die "cannot write $out/$name.yaml"
  echo "wrote $out/$name.yaml"
done
