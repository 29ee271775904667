// Validates rendered Kubernetes manifests against the Kubernetes OpenAPI schemas
// (kubernetes-models) and the Prometheus Operator CRD schemas
// (@kubernetes-models/prometheus-operator); cert-manager's Certificate (no npm package has
// its schema) against the fields of its cert-manager.io/v1 CRD the chart uses. Fails on any invalid object, any kind neither
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

// cert-manager.io/v1 Certificate: the CRD's required fields and the types and enums of the
// fields the chart sets.
class CertManagerCertificate {
  constructor(obj) {
    this.obj = obj;
  }
  validate() {
    const spec = this.obj.spec ?? {};
    const errors = [];
    const dns = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
    const duration = /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/;
    const usages = new Set(["signing", "digital signature", "content commitment", "key encipherment",
      "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only",
      "any", "server auth", "client auth", "code signing", "email protection", "s/mime",
      "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
      "microsoft sgc", "netscape sgc"]);
    if (typeof spec.secretName !== "string" || !spec.secretName) errors.push("spec.secretName is required");
    if (typeof spec.issuerRef?.name !== "string" || !spec.issuerRef.name) errors.push("spec.issuerRef.name is required");
    for (const k of Object.keys(spec.issuerRef ?? {})) {
      if (!["name", "kind", "group"].includes(k)) errors.push(`spec.issuerRef.${k} is not a field`);
    }
    for (const name of spec.dnsNames ?? []) if (!dns.test(name)) errors.push(`spec.dnsNames: '${name}' is not a DNS name`);
    for (const u of spec.usages ?? []) if (!usages.has(u)) errors.push(`spec.usages: '${u}' is not a usage`);
    for (const k of ["duration", "renewBefore"]) {
      if (spec[k] !== undefined && !duration.test(String(spec[k]))) errors.push(`spec.${k}: '${spec[k]}' is not a duration`);
    }
    const key = spec.privateKey ?? {};
    if (key.algorithm !== undefined && !["RSA", "ECDSA", "Ed25519"].includes(key.algorithm)) errors.push("spec.privateKey.algorithm");
    if (key.rotationPolicy !== undefined && !["Never", "Always"].includes(key.rotationPolicy)) errors.push("spec.privateKey.rotationPolicy");
    if (errors.length) {
      const e = new Error("invalid Certificate");
      e.errors = errors;
      throw e;
    }
  }
}

function modelFor(apiVersion, kind) {
  if (apiVersion === "cert-manager.io/v1" && kind === "Certificate") return CertManagerCertificate;
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
