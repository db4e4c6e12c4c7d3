#!/usr/bin/env bash
# Installs the Debian packages Joule builds and runs with, if any is missing.
# Used by demo.sh and test.sh (--test: also the Kubernetes checks' kubectl and
# npm packages); safe to run again (does nothing when all are
# present).
set -euo pipefail

PACKAGES=(
  bazel-bootstrap            # Bazel 4.2.3, builds offline
  g++
  protobuf-compiler          # protoc
  protobuf-compiler-grpc     # grpc_cpp_plugin
  libprotobuf-dev
  libgrpc++-dev
  libabsl-dev
  prometheus-cpp-dev
  libgtest-dev
  libgmock-dev
  libyaml-cpp-dev
  libcli11-dev
  zlib1g-dev
  libssl-dev                 # libcrypto: SHA-256 of passwords and tokens
  gnuplot-nox                # gnuplot, for the simulator's report plot
  etcd-server                # etcd, started by the store and fault tests
  etcd-client                # etcdctl, used by the tests to enable auth
  openssl                    # test certificates for the etcd TLS test
  iproute2                   # ip netns and veth pairs for the network test
  prometheus                 # prometheus and promtool, for the metrics checks
  clang                      # scripts/fuzz.sh: libFuzzer targets
  libclang-rt-14-dev         # libFuzzer and the sanitizer runtimes for clang
  python3-torch              # the PyTorch example job (CPU), demo and tests
  python3-sklearn            # its data: the handwritten digits sklearn ships
  python3-pip                # pip install of python/ (the joule library), offline:
  python3-setuptools         #   built by these, into a venv (tested)
  python3-wheel
  python3-venv
)
# --test (scripts/test.sh): also what the Kubernetes manifest checks need.
WITH_TEST_TOOLS=false
if [ "${1:-}" = "--test" ]; then WITH_TEST_TOOLS=true; fi
# Node.js and npm for the offline validation of the Kubernetes manifests
# (deploy/kubernetes/validate): Debian's, unless a node is already there.
if $WITH_TEST_TOOLS && { ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; }; then
  PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${missing[@]}"
fi

$WITH_TEST_TOOLS || exit 0

# Debian's kubectl (package kubernetes-client, kubectl 1.20 with kustomize
# v2.0.3) renders the Kubernetes overlays. It is unpacked into .cache/ rather
# than installed, so that it never replaces a kubectl the machine has.
cd "$(dirname "$0")/.."
KUBECTL_DIR=.cache/kubernetes-client
if [ ! -x "$KUBECTL_DIR/usr/bin/kubectl" ]; then
  echo "setup: unpacking Debian's kubernetes-client into $KUBECTL_DIR" >&2
  mkdir -p .cache/debs
  (cd .cache/debs && { apt-get download kubernetes-client 2>/dev/null ||
                       { $SUDO apt-get update -q && apt-get download kubernetes-client; }; })
  rm -rf "$KUBECTL_DIR"
  dpkg -x .cache/debs/kubernetes-client_*.deb "$KUBECTL_DIR"
fi

# The validator's npm packages, exactly as package-lock.json pins them.
VALIDATE_DIR=deploy/kubernetes/validate
if [ ! -d "$VALIDATE_DIR/node_modules" ] ||
   ! (cd "$VALIDATE_DIR" && npm ls --all >/dev/null 2>&1); then
  echo "setup: npm ci in $VALIDATE_DIR" >&2
  (cd "$VALIDATE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
