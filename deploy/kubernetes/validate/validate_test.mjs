// Tests of validate.mjs on the fixtures in fixtures/: the good one passes,
// each bad one fails with exactly the problems it was written to have.
//
//   node --test validate_test.mjs      (or: npm test)

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { imagePinned, unknownFields, findClass, validateFile, validateText } from "./validate.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const fixture = (name) => join(here, "fixtures", name);
const cli = (...args) =>
  spawnSync(process.execPath, [join(here, "validate.mjs"), ...args], { encoding: "utf8" });

async function problemsOf(name) {
  return (await validateFile(fixture(name))).problems;
}

test("the good fixture passes, through the command too", async () => {
  const r = await validateFile(fixture("good.yaml"));
  assert.deepEqual(r.problems, []);
  assert.equal(r.objects, 5);
  const run = cli(fixture("good.yaml"));
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /5 objects in 1 files valid/);
});

test("the package's own validate() lets an unknown field through; ours does not", async () => {
  const Deployment = await findClass("apps/v1", "Deployment");
  const obj = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "x" },
    spec: {
      selector: {},
      template: { spec: { containers: [{ name: "c", bogus: 1 }] } },
    },
  };
  assert.doesNotThrow(() => new Deployment(obj).validate());
  assert.deepEqual(unknownFields(Deployment, obj), ["/spec/template/spec/containers/0/bogus"]);
  // A map (labels) may have any key; a misspelt field may not.
  obj.metadata.labels = { anything: "goes" };
  obj.spec.template.spec.containers[0] = { name: "c", readinesProbe: {} };
  assert.deepEqual(unknownFields(Deployment, obj), ["/spec/template/spec/containers/0/readinesProbe"]);
});

test("unknown field", async () => {
  assert.deepEqual(await problemsOf("bad-unknown-field.yaml"), [
    "overlay bad-unknown-field.yaml: Deployment/joule/unknown-field: unknown field spec.template.spec.containers[0].bogus",
  ]);
});

test("missing limits", async () => {
  assert.deepEqual(await problemsOf("bad-missing-limits.yaml"), [
    "overlay bad-missing-limits.yaml: Deployment/joule/missing-limits: container main: no resources.limits.memory",
  ]);
});

test("latest image", async () => {
  assert.deepEqual(await problemsOf("bad-latest-image.yaml"), [
    'overlay bad-latest-image.yaml: Deployment/joule/latest-image: container main: image "joule/demo:latest" not pinned (need name:tag, tag not latest, or a digest)',
  ]);
});

test("privileged without a reason", async () => {
  assert.deepEqual(await problemsOf("bad-privileged.yaml"), [
    "overlay bad-privileged.yaml: Deployment/joule/privileged: container main: privileged: true without a joule.dev/privileged-reason annotation",
  ]);
});

test("wrong type, and the command's exit status and output", async () => {
  assert.deepEqual(await problemsOf("bad-wrong-type.yaml"), [
    "overlay bad-wrong-type.yaml: Deployment/joule/wrong-type: schema: spec.replicas: must be integer",
  ]);
  const run = cli(fixture("good.yaml"), fixture("bad-wrong-type.yaml"));
  assert.equal(run.status, 1);
  assert.equal(run.stdout, "");
  assert.deepEqual(run.stderr.trim().split("\n"), [
    "overlay bad-wrong-type.yaml: Deployment/joule/wrong-type: schema: spec.replicas: must be integer",
    "validate.mjs: 1 problem(s) in 2 file(s)",
  ]);
});

test("a kind without a schema is an error", async () => {
  assert.deepEqual(await problemsOf("bad-no-schema.yaml"), [
    "overlay bad-no-schema.yaml: Widget/joule/no-schema: no schema for apiVersion example.com/v1 kind Widget (add a package, or list it in NO_SCHEMA with a reason)",
  ]);
});

test("GPU request in the agent, token mounted, probe missing", async () => {
  assert.deepEqual(await problemsOf("bad-agent-gpu.yaml"), [
    "overlay bad-agent-gpu.yaml: DaemonSet/joule/joule-agent: pod automountServiceAccountToken is not false and no joule.dev/api-access-reason annotation",
    "overlay bad-agent-gpu.yaml: DaemonSet/joule/joule-agent: container agent: resources.limits has nvidia.com/gpu (the agent must not take GPUs from the device plugin)",
    "overlay bad-agent-gpu.yaml: DaemonSet/joule/joule-agent: container agent: no livenessProbe",
  ]);
});

test("host namespaces, ServiceAccount tokens, YAML errors, duplicates", async () => {
  const base = `apiVersion: v1
kind: ServiceAccount
metadata:
  name: sa
  namespace: joule
`;
  let r = await validateText(base, "t.yaml");
  assert.deepEqual(r.problems, [
    "overlay t.yaml: ServiceAccount/joule/sa: automountServiceAccountToken is not false and no joule.dev/api-access-reason annotation",
  ]);
  r = await validateText(base + `  annotations: {joule.dev/api-access-reason: "lists pods"}\n`, "t.yaml");
  assert.deepEqual(r.problems, []);
  r = await validateText(base + "automountServiceAccountToken: false\n---\n" + base + "automountServiceAccountToken: false\n", "t.yaml");
  assert.deepEqual(r.problems, ["overlay t.yaml: ServiceAccount/joule/sa: defined twice"]);
  r = await validateText("a: [1\n", "t.yaml");
  assert.match(r.problems[0], /^overlay t\.yaml: document 1: YAML: /);
  assert.equal(r.problems.at(-1), "overlay t.yaml: no objects");
  const pod = (extra) => `apiVersion: v1
kind: Pod
metadata: {name: p, namespace: joule${extra}}
spec:
  hostNetwork: true
  automountServiceAccountToken: false
  containers:
    - name: c
      image: x/y:1
      readinessProbe: {exec: {command: ["true"]}}
      livenessProbe: {exec: {command: ["true"]}}
      resources: {requests: {cpu: 1, memory: 1Mi}, limits: {cpu: 1, memory: 1Mi}}
`;
  r = await validateText(pod(""), "p.yaml");
  assert.deepEqual(r.problems, [
    "overlay p.yaml: Pod/joule/p: hostNetwork: true without a joule.dev/privileged-reason annotation",
  ]);
  r = await validateText(pod(', annotations: {joule.dev/privileged-reason: ""}'), "p.yaml");
  assert.equal(r.problems.length, 1, "an empty reason is no reason");
  r = await validateText(pod(', annotations: {joule.dev/privileged-reason: "CNI"}'), "p.yaml");
  assert.deepEqual(r.problems, []);
});

test("image pinning", () => {
  for (const ok of ["a:1", "joule/joule-agent:0.1.0", "quay.io/coreos/etcd:v3.5.17", "host:5000/a/b:2",
    "a@sha256:" + "0".repeat(64), "a:1@sha256:" + "f".repeat(64)]) {
    assert.equal(imagePinned(ok), true, ok);
  }
  for (const bad of ["a", "a:latest", "host:5000/a", "host:5000/a:latest", "a:", "a@sha256:xyz", "", undefined]) {
    assert.equal(imagePinned(bad), false, String(bad));
  }
});
