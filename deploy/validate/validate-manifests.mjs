// Validates rendered Kubernetes manifests against the Kubernetes OpenAPI schemas
// (kubernetes-models) and the Prometheus Operator CRD schemas
// (@kubernetes-models/prometheus-operator). Fails on any invalid object, any kind neither
// package knows, a missing name, or a duplicate kind/name.
//
//   NODE_PATH=<node_modules> node validate-manifests.mjs rendered.yaml [...]
//
// Prints one line per object and a summary; exit 1 on the first file with a problem
// (after reporting every problem in it).
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

// Packages resolve from NODE_MODULES (the npm cache of scripts/install-npm-deps.sh).
const modulesDir = process.env.NODE_MODULES;
if (!modulesDir) {
  console.error("validate-manifests: set NODE_MODULES to the node_modules directory");
  process.exit(2);
}
const require = createRequire(path.join(modulesDir, "noop.js"));
const YAML = require("yaml");

// apiVersion -> module path of its models.
function modulePath(apiVersion) {
  if (apiVersion.startsWith("monitoring.coreos.com/")) {
    return `@kubernetes-models/prometheus-operator/${apiVersion}`;
  }
  return `kubernetes-models/${apiVersion}`;
}

function modelFor(apiVersion, kind) {
  let mod;
  try {
    mod = require(modulePath(apiVersion));
  } catch {
    return undefined;
  }
  const Model = mod[kind];
  return typeof Model === "function" ? Model : undefined;
}

let failures = 0;
let objects = 0;
for (const file of process.argv.slice(2)) {
  const seen = new Set();
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  docs.forEach((doc, i) => {
    const where = `${file} #${i}`;
    if (doc.errors.length) {
      console.error(`FAIL ${where}: YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
      ++failures;
      return;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) return;  // empty document
    const { apiVersion, kind } = obj;
    const name = obj.metadata?.name;
    const id = `${apiVersion}/${kind} ${name}`;
    if (!apiVersion || !kind) {
      console.error(`FAIL ${where}: no apiVersion/kind`);
      ++failures;
      return;
    }
    if (!name) {
      console.error(`FAIL ${where}: ${apiVersion}/${kind} without metadata.name`);
      ++failures;
    }
    if (seen.has(id)) {
      console.error(`FAIL ${where}: duplicate ${id}`);
      ++failures;
    }
    seen.add(id);
    const Model = modelFor(apiVersion, kind);
    if (!Model) {
      console.error(`FAIL ${where}: unknown kind ${apiVersion}/${kind}`);
      ++failures;
      return;
    }
    try {
      new Model(obj).validate();
      ++objects;
      console.log(`ok   ${id}`);
    } catch (e) {
      const details = e.errors ? JSON.stringify(e.errors, null, 1) : "";
      console.error(`FAIL ${where}: ${id}: ${e.message} ${details}`);
      ++failures;
    }
  });
}
console.log(`validate-manifests: ${objects} objects valid, ${failures} problems`);
process.exit(failures ? 1 : 0);
