#!/usr/bin/env bash
# Installs the Debian packages Joule builds and runs with, if any is missing.
# Used by demo.sh and test.sh; safe to run again (does nothing when all are
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
  prometheus                 # prometheus and promtool, for the metrics checks
  clang                      # scripts/fuzz.sh: libFuzzer targets
  libclang-rt-14-dev         # libFuzzer and the sanitizer runtimes for clang
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q "${missing[@]}"
