#!/usr/bin/env node
// The manifests and the binaries cannot drift apart: every container of
// every rendered overlay that runs a Joule binary is run here, with exactly
// its command-line arguments, as `BINARY --check-config ARGS...`, and must
// be accepted (exit 0).
//
//   node check_args.mjs BIN_DIR FILE.yaml...
//
// BIN_DIR holds joule-scheduler and joule-agent (bazel-bin's
// scheduler/ and agent/ are searched too). Which binary a container runs is
// read from its image name (joule-scheduler, joule-agent).
//
// What a pod gets from Kubernetes is stood in for, nothing else changes:
//  - $(VAR) references are expanded from the container's env: literal
//    values as they are, downward-API fields as fixed test values (node
//    name gpu-node-1, pod IP 10.0.0.1, pod name and namespace);
//  - an argument that names a file under one of the container's volume
//    mounts is moved under a scratch root, where a file of the kind its
//    flag wants is made: certificates and keys (a test CA made here with
//    openssl, the scheduler's and the node's certificates), a tokens file,
//    metrics users, task users; directories are made empty; paths of the
//    hardware (NVML library, sysfs, procfs), which --check-config does not
//    touch, stay as they are. A flag naming a path of a kind this script
//    does not know is an error, so a new file flag gets a fixture here.
//
// Output: one line per container checked; problems on stderr, exit 1.

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { parseAllDocuments } from "yaml";

const FIELD_VALUES = {
  "spec.nodeName": "gpu-node-1",
  "status.podIP": "10.0.0.1",
  "metadata.name": "joule-pod-0",
  "metadata.namespace": "joule",
};

// The kind of file each flag wants.
const FILE_KINDS = {
  "--tls-cert": "cert",
  "--tls-key": "key",
  "--tls-ca": "ca",
  "--etcd-cert": "cert",
  "--etcd-key": "key",
  "--etcd-ca": "ca",
  "--tokens-file": "tokens",
  "--metrics-auth-file": "users",
  "--task-users": "task-users",
  "--etcd-password-file": "password",
  // Directories the binary makes or fills itself: made empty.
  "--data-dir": "dir",
  "--work-dir": "dir",
  // The hardware's, which --check-config does not touch: left as they are.
  "--nvml-library": "hardware",
  "--sysfs-root": "hardware",
  "--procfs-root": "hardware",
  "--task-cgroup-root": "hardware",
  // The kubelet's socket, which --check-config does not dial.
  "--pod-resources-socket": "hardware",
};

function fail(message) {
  console.error(`check_args: ${message}`);
  process.exit(1);
}

function run(argv, options = {}) {
  const result = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", ...options });
  if (result.error) fail(`${argv[0]}: ${result.error.message}`);
  return result;
}

function openssl(args) {
  const result = run(["openssl", ...args]);
  if (result.status !== 0) fail(`openssl ${args.join(" ")}: ${result.stderr}`);
}

// A CA, and one certificate and key signed by it (EC P-256, a day).
function makePki(dir) {
  mkdirSync(dir, { recursive: true });
  const ca = { cert: join(dir, "ca.crt"), key: join(dir, "ca.key") };
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", ca.key, "-out", ca.cert, "-days", "1", "-subj", "/CN=check_args CA"]);
  const leaf = { cert: join(dir, "leaf.crt"), key: join(dir, "leaf.key") };
  const csr = join(dir, "leaf.csr");
  openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", leaf.key, "-out", csr, "-subj", "/CN=gpu-node-1"]);
  const ext = join(dir, "leaf.ext");
  writeFileSync(ext, "subjectAltName=URI:spiffe://joule/node/gpu-node-1,DNS:localhost\n");
  openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
           "-out", leaf.cert, "-days", "1", "-extfile", ext]);
  return { ca, leaf };
}

function fixture(kind, pki) {
  switch (kind) {
    case "cert": return readFileSync(pki.leaf.cert, "utf8");
    case "key": return readFileSync(pki.leaf.key, "utf8");
    case "ca": return readFileSync(pki.ca.cert, "utf8");
    case "tokens": return `token sha256:${"b".repeat(64)} admin admin\n`;
    case "users": return `prometheus sha256:${"a".repeat(64)}\n`;
    case "task-users": return "alice 60001 60001\n";
    case "password": return "secret\n";
    default: fail(`no fixture for file kind ${kind}`);
  }
  return "";
}

function expand(value, env) {
  return value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (match, name) =>
    name in env ? env[name] : match);
}

function containerEnv(container) {
  const env = {};
  for (const entry of container.env ?? []) {
    if ("value" in entry) env[entry.name] = entry.value;
    const field = entry.valueFrom?.fieldRef?.fieldPath;
    if (field !== undefined) {
      if (!(field in FIELD_VALUES)) fail(`env ${entry.name}: no test value for field ${field}`);
      env[entry.name] = FIELD_VALUES[field];
    }
  }
  return env;
}

function binaryFor(image, binDir) {
  const name = basename(image.split("@")[0].split(":")[0]);
  if (name !== "joule-scheduler" && name !== "joule-agent") return null;
  for (const candidate of [join(binDir, name),
                           join(binDir, name === "joule-agent" ? "agent" : "scheduler", name)]) {
    if (existsSync(candidate)) return candidate;
  }
  fail(`no ${name} under ${binDir}`);
  return null;
}

function podSpecs(object) {
  if (object.kind === "Pod") return [object.spec];
  const template = object.spec?.template?.spec ?? object.spec?.jobTemplate?.spec?.template?.spec;
  return template ? [template] : [];
}

const [binDir, ...files] = process.argv.slice(2);
if (!binDir || files.length === 0) fail("usage: node check_args.mjs BIN_DIR FILE.yaml...");
const scratch = mkdtempSync(join(tmpdir(), "joule-check-args-"));
let checked = 0;
let problems = 0;
try {
  const pki = makePki(join(scratch, "pki"));
  for (const file of files) {
    for (const document of parseAllDocuments(readFileSync(file, "utf8"), { version: "1.1" })) {
      const object = document.toJS();
      if (!object) continue;
      for (const spec of podSpecs(object)) {
        for (const container of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
          const binary = binaryFor(container.image ?? "", binDir);
          if (binary === null) continue;
          const where = `${basename(file)}: ${object.kind}/${object.metadata?.name}: ${container.name}`;
          const env = containerEnv(container);
          const mounts = (container.volumeMounts ?? []).map((mount) => mount.mountPath);
          const root = join(scratch, `root-${checked}`);
          const args = [...(container.command ?? []).slice(1), ...(container.args ?? [])].map(
            (arg) => {
              const expanded = expand(arg, env);
              const match = /^(--[a-z0-9-]+)=(\/.*)$/.exec(expanded);
              if (!match || !mounts.some((mount) => match[2].startsWith(mount))) return expanded;
              const kind = FILE_KINDS[match[1]];
              if (kind === undefined) {
                console.error(`${where}: ${match[1]} names a file of a kind check_args.mjs has no fixture for`);
                problems++;
                return expanded;
              }
              if (kind === "hardware") return expanded;
              const path = join(root, match[2]);
              if (kind === "dir") {
                mkdirSync(path, { recursive: true });
              } else {
                mkdirSync(dirname(path), { recursive: true });
                writeFileSync(path, fixture(kind, pki), { mode: 0o600 });
              }
              return `${match[1]}=${path}`;
            });
          const result = run([binary, "--check-config", ...args]);
          checked++;
          if (result.status === 0) {
            console.log(`${where}: ${basename(binary)} accepts its ${args.length} arguments`);
          } else {
            problems++;
            console.error(`${where}: ${basename(binary)} --check-config exited ${result.status}:\n` +
                          `${result.stderr.trim()}\n  arguments: ${args.join(" ")}`);
          }
        }
      }
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
if (checked === 0) fail("no container runs a Joule binary: nothing was checked");
if (problems > 0) {
  console.error(`check_args: ${problems} of ${checked} containers refused`);
  process.exit(1);
}
console.log(`check_args: ${checked} containers accepted by their binaries`);
