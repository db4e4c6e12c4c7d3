#!/usr/bin/env node
// Offline validation of Joule's rendered Kubernetes manifests.
//
//   node validate.mjs FILE.yaml...
//
// Every document of every FILE (the output of ../render.sh, one file per
// overlay) is checked three ways, without a cluster:
//
//  1. Schema: the object is built with the class that the pinned npm
//     packages (kubernetes-models, @kubernetes-models/prometheus-operator,
//     @kubernetes-models/cert-manager) export for its apiVersion and kind,
//     and that class's validate() runs (types, enums, required fields). A
//     kind without a class is an error unless NO_SCHEMA below names it with
//     a reason.
//  2. Unknown fields: those validators let unknown properties through (a
//     misspelt `readinesProbe` would pass), so the same validator runs once
//     more on a Proxy of the object that records which properties it reads.
//     The generated validators read every property their schema declares
//     and enumerate the keys only of maps (labels, resources.limits, ...)
//     and of objects that accept additional properties; a key of a
//     non-enumerated object that the validator never read is not in the
//     schema, and is reported. An object of which the validator read nothing
//     is free-form (x-kubernetes-preserve-unknown-fields or an untyped
//     object) and is not checked.
//  3. Policy, for every pod template and ServiceAccount: see checkPolicy().
//
// Output: one line per problem on stderr,
//   overlay FILE: Kind/namespace/name: what is wrong
// and exit status 1; otherwise a summary on stdout and exit status 0.
// YAML is read with YAML 1.1 rules, as the Kubernetes API server reads it.

import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { pathToFileURL } from "node:url";
import { parseAllDocuments } from "yaml";

// The npm packages whose classes give the schemas, tried in this order.
const SCHEMA_PACKAGES = [
  "kubernetes-models",
  "@kubernetes-models/prometheus-operator",
  "@kubernetes-models/cert-manager",
];

// "apiVersion kind" of objects accepted without a schema, each with why.
// Empty: every kind in the rendered trees has a class.
export const NO_SCHEMA = new Map([
  // ["example.com/v1 Widget", "no npm package ships its CRD schema; shape checked by hand"],
]);

export const PRIVILEGED_REASON = "joule.dev/privileged-reason";
export const API_ACCESS_REASON = "joule.dev/api-access-reason";

// ---------------------------------------------------------------- schemas

const classCache = new Map();

// findClass(apiVersion, kind): the model class, or null when no package has one.
export async function findClass(apiVersion, kind) {
  const key = apiVersion + " " + kind;
  if (classCache.has(key)) return classCache.get(key);
  let found = null;
  // Only names that look like an apiVersion and a kind become module paths.
  if (/^([a-z0-9]([a-z0-9.-]*[a-z0-9])?\/)?v[0-9]+((alpha|beta)[0-9]+)?$/.test(apiVersion) &&
      /^[A-Z][A-Za-z0-9]*$/.test(kind)) {
    for (const pkg of SCHEMA_PACKAGES) {
      let mod;
      try {
        mod = await import(`${pkg}/${apiVersion}`);
      } catch (e) {
        if (e && (e.code === "ERR_PACKAGE_PATH_NOT_EXPORTED" || e.code === "ERR_MODULE_NOT_FOUND")) continue;
        throw e;
      }
      const cls = mod[kind];
      // Sub-types (DaemonSetSpec, ...) are exported too but have no apiVersion.
      if (typeof cls === "function" && cls.apiVersion === apiVersion && cls.kind === kind) {
        found = cls;
        break;
      }
    }
  }
  classCache.set(key, found);
  return found;
}

// "/spec/template/spec/containers/0/bogus" -> "spec.template.spec.containers[0].bogus"
export function pointerToPath(pointer) {
  let out = "";
  for (const raw of pointer.split("/").slice(1)) {
    const part = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (/^[0-9]+$/.test(part)) out += `[${part}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(part)) out += (out ? "." : "") + part;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out || "(object)";
}

function escapePointer(key) {
  return String(key).replace(/~/g, "~0").replace(/\//g, "~1");
}

// schemaErrors(cls, obj): the messages of `new cls(obj).validate()`.
function schemaErrors(cls, obj) {
  try {
    new cls(obj).validate();
    return [];
  } catch (e) {
    if (!Array.isArray(e.errors)) return [`schema: ${e.message}`];
    return e.errors.map((err) => {
      let msg = err.message || err.keyword;
      if (err.keyword === "enum" && err.params && err.params.allowedValues) {
        msg += ` (${err.params.allowedValues.map((v) => JSON.stringify(v)).join(", ")})`;
      }
      return `schema: ${pointerToPath(err.instancePath)}: ${msg}`;
    });
  }
}

// unknownFields(cls, obj): JSON pointers of properties that cls's schema does
// not declare (see the header).
export function unknownFields(cls, obj) {
  const records = new Map(); // pointer -> { read: Set, enumerated: bool }
  const wrap = (target, pointer) => {
    let rec = records.get(pointer);
    if (!rec) records.set(pointer, (rec = { read: new Set(), enumerated: false }));
    return new Proxy(target, {
      get(t, k, receiver) {
        const v = Reflect.get(t, k, receiver);
        if (typeof k !== "string") return v;
        rec.read.add(k);
        if (v !== null && typeof v === "object" && Object.hasOwn(t, k)) {
          return wrap(v, `${pointer}/${escapePointer(k)}`);
        }
        return v;
      },
      has(t, k) {
        if (typeof k === "string") rec.read.add(k);
        return Reflect.has(t, k);
      },
      ownKeys(t) {
        rec.enumerated = true;
        return Reflect.ownKeys(t);
      },
    });
  };
  // The class's validate() checks `this`, which is the Proxy here.
  try {
    cls.prototype.validate.call(wrap(obj, ""));
  } catch {
    // schema errors are reported by schemaErrors()
  }
  const unknown = [];
  const walk = (node, pointer) => {
    const rec = records.get(pointer);
    if (!rec) return; // never reached: an unknown key above, or free-form
    const keys = Array.isArray(node) ? [...node.keys()].map(String) : Object.keys(node);
    if (!Array.isArray(node) && !rec.enumerated && rec.read.size > 0) {
      for (const k of keys) if (!rec.read.has(k)) unknown.push(`${pointer}/${escapePointer(k)}`);
    }
    for (const k of keys) {
      const v = node[k];
      if (v !== null && typeof v === "object") walk(v, `${pointer}/${escapePointer(k)}`);
    }
  };
  walk(obj, "");
  return unknown;
}

// ----------------------------------------------------------------- policy

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

function annotation(meta, key) {
  const v = isObject(meta) && isObject(meta.annotations) ? meta.annotations[key] : undefined;
  return typeof v === "string" && v.trim() !== "" ? v : null;
}

// podTemplates(obj): [{ spec, meta }] of the pods that obj makes.
function podTemplates(obj) {
  const spec = isObject(obj.spec) ? obj.spec : {};
  switch (obj.kind) {
    case "Pod":
      return [{ spec, meta: obj.metadata }];
    case "Deployment":
    case "DaemonSet":
    case "StatefulSet":
    case "ReplicaSet":
    case "ReplicationController":
    case "Job":
    case "PodTemplate": {
      const t = obj.kind === "PodTemplate" ? obj.template : spec.template;
      return isObject(t) ? [{ spec: isObject(t.spec) ? t.spec : {}, meta: t.metadata }] : [];
    }
    case "CronJob": {
      const t = spec.jobTemplate && spec.jobTemplate.spec && spec.jobTemplate.spec.template;
      return isObject(t) ? [{ spec: isObject(t.spec) ? t.spec : {}, meta: t.metadata }] : [];
    }
    default:
      return [];
  }
}

// imagePinned(image): a tag other than latest, or a digest.
export function imagePinned(image) {
  if (typeof image !== "string" || image === "") return false;
  const at = image.indexOf("@");
  if (at >= 0) return /^[a-z0-9]+([+._-][a-z0-9]+)*:[a-fA-F0-9]{32,}$/.test(image.slice(at + 1));
  const last = image.slice(image.lastIndexOf("/") + 1); // a registry's :port is before the last "/"
  const colon = last.indexOf(":");
  if (colon < 0) return false;
  const tag = last.slice(colon + 1);
  return /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag) && tag !== "latest";
}

function isAgentDaemonSet(obj) {
  const labels = isObject(obj.metadata) && isObject(obj.metadata.labels) ? obj.metadata.labels : {};
  return obj.kind === "DaemonSet" &&
    (obj.metadata.name === "joule-agent" || labels["app.kubernetes.io/name"] === "joule-agent");
}

// checkPolicy(obj): messages for Joule's rules.
//  - privileged containers, hostNetwork, hostPID, hostIPC only with a
//    non-empty joule.dev/privileged-reason annotation on the object or its
//    pod template;
//  - every container and init container: requests and limits of cpu and
//    memory, an image with a tag other than latest or a digest;
//  - every container: a readinessProbe and a livenessProbe;
//  - automountServiceAccountToken: false on every ServiceAccount and pod
//    spec, unless joule.dev/api-access-reason says why not;
//  - no nvidia.com/gpu request or limit in the agent DaemonSet (the agent
//    takes every GPU of its node through the runtime, not the device plugin).
export function checkPolicy(obj) {
  const problems = [];
  const meta = isObject(obj.metadata) ? obj.metadata : {};
  if (obj.kind === "ServiceAccount") {
    if (obj.automountServiceAccountToken !== false && !annotation(meta, API_ACCESS_REASON)) {
      problems.push(`automountServiceAccountToken is not false and no ${API_ACCESS_REASON} annotation`);
    }
  }
  for (const { spec, meta: tmeta } of podTemplates(obj)) {
    const privilegedReason = annotation(meta, PRIVILEGED_REASON) || annotation(tmeta, PRIVILEGED_REASON);
    const apiReason = annotation(meta, API_ACCESS_REASON) || annotation(tmeta, API_ACCESS_REASON);
    for (const field of ["hostNetwork", "hostPID", "hostIPC"]) {
      if (spec[field] === true && !privilegedReason) {
        problems.push(`${field}: true without a ${PRIVILEGED_REASON} annotation`);
      }
    }
    if (spec.automountServiceAccountToken !== false && !apiReason) {
      problems.push(`pod automountServiceAccountToken is not false and no ${API_ACCESS_REASON} annotation`);
    }
    const groups = [
      ["initContainers", false],
      ["containers", true],
    ];
    for (const [field, needsProbes] of groups) {
      const list = Array.isArray(spec[field]) ? spec[field] : [];
      if (field === "containers" && list.length === 0) problems.push("pod has no containers");
      for (const c of list) {
        if (!isObject(c)) continue;
        const what = `${field === "containers" ? "container" : "initContainer"} ${c.name}`;
        const sc = isObject(c.securityContext) ? c.securityContext : {};
        if (sc.privileged === true && !privilegedReason) {
          problems.push(`${what}: privileged: true without a ${PRIVILEGED_REASON} annotation`);
        }
        if (!imagePinned(c.image)) {
          problems.push(`${what}: image ${JSON.stringify(c.image)} not pinned (need name:tag, tag not latest, or a digest)`);
        }
        const res = isObject(c.resources) ? c.resources : {};
        for (const part of ["requests", "limits"]) {
          const have = isObject(res[part]) ? res[part] : {};
          for (const r of ["cpu", "memory"]) {
            if (have[r] === undefined || have[r] === null || have[r] === "") problems.push(`${what}: no resources.${part}.${r}`);
          }
          if (isAgentDaemonSet(obj) && have["nvidia.com/gpu"] !== undefined) {
            problems.push(`${what}: resources.${part} has nvidia.com/gpu (the agent must not take GPUs from the device plugin)`);
          }
        }
        if (needsProbes) {
          for (const p of ["readinessProbe", "livenessProbe"]) {
            if (!isObject(c[p])) problems.push(`${what}: no ${p}`);
          }
        }
      }
    }
  }
  return problems;
}

// ------------------------------------------------------------------ files

function describe(obj) {
  const kind = typeof obj.kind === "string" && obj.kind ? obj.kind : "?";
  const meta = isObject(obj.metadata) ? obj.metadata : {};
  const name = typeof meta.name === "string" && meta.name ? meta.name : "?";
  return meta.namespace ? `${kind}/${meta.namespace}/${name}` : `${kind}/${name}`;
}

// validateObject(obj): messages for one object (schema, unknown fields, policy).
export async function validateObject(obj) {
  if (!isObject(obj)) return ["not a mapping"];
  const problems = [];
  if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
    return ["no apiVersion or kind"];
  }
  if (!isObject(obj.metadata) || typeof obj.metadata.name !== "string" || obj.metadata.name === "") {
    problems.push("no metadata.name");
  }
  const cls = await findClass(obj.apiVersion, obj.kind);
  if (cls) {
    problems.push(...schemaErrors(cls, obj));
    for (const p of unknownFields(cls, obj)) problems.push(`unknown field ${pointerToPath(p)}`);
  } else if (!NO_SCHEMA.has(`${obj.apiVersion} ${obj.kind}`)) {
    problems.push(`no schema for apiVersion ${obj.apiVersion} kind ${obj.kind} (add a package, or list it in NO_SCHEMA with a reason)`);
  }
  problems.push(...checkPolicy(obj));
  return [...new Set(problems)];
}

// validateText(text, label): { objects, problems } for a multi-document YAML text.
export async function validateText(text, label) {
  const problems = [];
  const where = `overlay ${label}`;
  let objects = 0;
  const seen = new Set();
  const docs = parseAllDocuments(text, { version: "1.1", uniqueKeys: true });
  const list = Array.isArray(docs) ? docs : [docs];
  for (const [i, doc] of list.entries()) {
    if (doc.errors && doc.errors.length) {
      for (const e of doc.errors) problems.push(`${where}: document ${i + 1}: YAML: ${e.message.split("\n")[0]}`);
      continue;
    }
    const obj = doc.toJS({ maxAliasCount: 100 });
    if (obj === null || obj === undefined) continue;
    objects++;
    const id = isObject(obj) ? describe(obj) : `document ${i + 1}`;
    if (isObject(obj)) {
      const key = `${obj.apiVersion} ${id}`;
      if (seen.has(key)) problems.push(`${where}: ${id}: defined twice`);
      seen.add(key);
    }
    for (const p of await validateObject(obj)) problems.push(`${where}: ${id}: ${p}`);
  }
  if (objects === 0) problems.push(`${where}: no objects`);
  return { objects, problems };
}

export async function validateFile(path) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    return { objects: 0, problems: [`overlay ${basename(path)}: cannot read: ${e.message}`] };
  }
  return validateText(text, basename(path));
}

async function main(argv) {
  if (argv.length === 0 || argv.includes("-h") || argv.includes("--help")) {
    process.stderr.write("usage: node validate.mjs FILE.yaml...\n");
    return 2;
  }
  let objects = 0;
  const problems = [];
  for (const path of argv) {
    const r = await validateFile(path);
    objects += r.objects;
    problems.push(...r.problems);
  }
  for (const p of problems) process.stderr.write(p + "\n");
  if (problems.length) {
    process.stderr.write(`validate.mjs: ${problems.length} problem(s) in ${argv.length} file(s)\n`);
    return 1;
  }
  process.stdout.write(`validate.mjs: ${objects} objects in ${argv.length} files valid\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.slice(2));
}
