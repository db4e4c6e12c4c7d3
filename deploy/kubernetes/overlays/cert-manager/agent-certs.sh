#!/bin/sh
# Writes this overlay's per-node agent files for the GPU nodes named on the
# command line:
#   agent-certificates.yaml   one cert-manager Certificate per node: URI SAN
#                             spiffe://joule/node/NODE, client auth, into the
#                             Secret joule-agent-tls-NODE;
#   agent-tls-projected.yaml  the agents' agent-tls volume made of those
#                             Secrets, as NODE.crt and NODE.key.
# Usage (from any directory):
#   overlays/cert-manager/agent-certs.sh $(kubectl get nodes \
#     -l feature.node.kubernetes.io/pci-10de.present=true -o name | cut -d/ -f2)
# Run it again when GPU nodes come or go, then apply the overlay again.
# TRUST_DOMAIN (default joule) must match the scheduler's --trust-domain.
set -eu

if [ "$#" -eq 0 ]; then
  echo "usage: $0 NODE [NODE...]" >&2
  exit 2
fi
dir=$(cd "$(dirname "$0")" && pwd)
domain=${TRUST_DOMAIN:-joule}
certs="$dir/agent-certificates.yaml.tmp"
volume="$dir/agent-tls-projected.yaml.tmp"
trap 'rm -f "$certs" "$volume"' EXIT

for node in "$@"; do
  # Kubernetes node names: DNS-1123 subdomains (the agent checks the same).
  if ! printf '%s' "$node" | grep -Eq '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$' \
      || [ "${#node}" -gt 230 ]; then
    echo "$0: not a node name: '$node'" >&2
    exit 2
  fi
done

{
  echo "# Written by agent-certs.sh for: $*"
  echo "# One certificate per GPU node, naming it as the scheduler expects."
  for node in "$@"; do
    cat <<YAML
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: joule-agent-$node
  labels:
    app.kubernetes.io/name: joule-agent
    app.kubernetes.io/part-of: joule
spec:
  secretName: joule-agent-tls-$node
  issuerRef:
    kind: Issuer
    name: joule-ca
  commonName: $node
  uris:
    - spiffe://$domain/node/$node
  usages:
    - digital signature
    - key encipherment
    - client auth
  privateKey:
    algorithm: ECDSA
    size: 256
    rotationPolicy: Always
  duration: 2160h
  renewBefore: 720h
YAML
  done
} > "$certs"

{
  cat <<YAML
# Written by agent-certs.sh for: $*
# The agents' certificates from the per-node Secrets of
# agent-certificates.yaml; each agent reads NODE.crt and NODE.key for its
# own node. Every agent pod can read every node's key: README.md, "Agent
# certificates", explains the limit and overlays/node-local-pki the
# alternative.
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: joule-agent
spec:
  template:
    spec:
      volumes:
        - name: agent-tls
          secret: null
          projected:
            defaultMode: 0400
            sources:
YAML
  for node in "$@"; do
    cat <<YAML
              - secret:
                  name: joule-agent-tls-$node
                  # A node whose certificate is not issued yet must not keep
                  # the other agents from starting.
                  optional: true
                  items:
                    - key: tls.crt
                      path: $node.crt
                    - key: tls.key
                      path: $node.key
YAML
  done
} > "$volume"

mv "$certs" "$dir/agent-certificates.yaml"
mv "$volume" "$dir/agent-tls-projected.yaml"
trap - EXIT
echo "wrote $dir/agent-certificates.yaml and $dir/agent-tls-projected.yaml for $# node(s)"
