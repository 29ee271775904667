// The chart's security properties on `helm template` output (issue 16), beyond what the
// schemas check:
//   NODE_MODULES=<node_modules> node check-hardening.mjs rendered.yaml [tls]
// Every pod: runAsNonRoot, seccomp RuntimeDefault, no service-account token; every container:
// read-only root filesystem, no privilege escalation, all capabilities dropped (IPC_LOCK the
// only one added back, for UCX's RDMA registration), CPU and memory requests and a memory
// limit. Every workload role: a PodDisruptionBudget (the rebalancer, one replica, excepted)
// and, when the render has NetworkPolicies, one selecting its pods; the router's open to
// clients on its two ports, every other role's only to the release's pods (any port) and to
// the metrics scrapers (the metrics port). The router Service exposes no metrics port. With `tls`: the flags of every process carry the
// certificate, key and CA, and every probe is an HTTPS GET. Prints one line; exit 1 listing
// every problem.
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_MODULES, "noop.js"));
const YAML = require("yaml");
const [file, mode] = process.argv.slice(2);
const objects = YAML.parseAllDocuments(fs.readFileSync(file, "utf8")).map((d) => d.toJS()).filter(Boolean);
const problems = [];
const problem = (what) => problems.push(what);
const matches = (selector, labels) =>
  Object.entries(selector?.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v);

const workloads = objects.filter((o) => ["Deployment", "StatefulSet"].includes(o.kind));
const pods = [
  ...workloads.map((w) => ({ name: `${w.kind} ${w.metadata.name}`, labels: w.spec.template.metadata.labels, spec: w.spec.template.spec })),
  ...objects.filter((o) => o.kind === "Pod").map((p) => ({ name: `Pod ${p.metadata.name}`, labels: p.metadata.labels, spec: p.spec })),
];
for (const { name, spec } of pods) {
  const psc = spec.securityContext ?? {};
  if (psc.runAsNonRoot !== true) problem(`${name}: runAsNonRoot`);
  if (psc.seccompProfile?.type !== "RuntimeDefault") problem(`${name}: seccompProfile RuntimeDefault`);
  if (spec.automountServiceAccountToken !== false) problem(`${name}: automountServiceAccountToken: false`);
  for (const c of spec.containers) {
    const sc = c.securityContext ?? {};
    const where = `${name} container ${c.name}`;
    if (sc.readOnlyRootFilesystem !== true) problem(`${where}: readOnlyRootFilesystem`);
    if (sc.allowPrivilegeEscalation !== false) problem(`${where}: allowPrivilegeEscalation: false`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) problem(`${where}: capabilities.drop [ALL]`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== "IPC_LOCK") problem(`${where}: adds capability ${cap}`);
    if (sc.privileged) problem(`${where}: privileged`);
    const r = c.resources ?? {};
    if (!r.requests?.cpu || !r.requests?.memory || !r.limits?.memory) problem(`${where}: cpu/memory requests and a memory limit`);
    if (mode === "tls" && !name.startsWith("Pod ")) {
      for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
        if (c[probe]?.httpGet?.scheme !== "HTTPS") problem(`${where}: ${probe} is not an HTTPS GET`);
      }
    }
  }
}

const pdbs = objects.filter((o) => o.kind === "PodDisruptionBudget");
const policies = objects.filter((o) => o.kind === "NetworkPolicy");
for (const w of workloads) {
  const labels = w.spec.template.metadata.labels;
  const role = labels["app.kubernetes.io/component"];
  if (role !== "rebalancer" && !pdbs.some((p) => matches(p.spec.selector, labels))) problem(`${w.metadata.name}: no PodDisruptionBudget`);
  if (!policies.length) continue;
  const mine = policies.filter((p) => matches(p.spec.podSelector, labels));
  if (mine.length !== 1) {
    problem(`${w.metadata.name}: ${mine.length} NetworkPolicies select it`);
    continue;
  }
  const rules = mine[0].spec.ingress ?? [];
  if (role === "router") {
    const ports = new Set(rules.flatMap((r) => (r.ports ?? []).map((p) => p.port)));
    if (!ports.has("grpc") || !ports.has("http") || rules.some((r) => !r.ports)) problem("router: ingress must name its grpc and http ports");
    continue;
  }
  for (const rule of rules) {
    if (!rule.from?.length) problem(`${role}: an ingress rule open to any source`);
    const anyPort = !rule.ports;
    const fromRelease = (rule.from ?? []).every((f) => f.podSelector && !f.namespaceSelector &&
      f.podSelector.matchLabels?.["app.kubernetes.io/instance"] === labels["app.kubernetes.io/instance"]);
    if (anyPort && !fromRelease) problem(`${role}: every port open to pods outside the release`);
    if (!anyPort && rule.ports.some((p) => p.port !== "metrics")) problem(`${role}: a port other than metrics open outside the release`);
  }
}

const routerService = objects.find((o) => o.kind === "Service" && o.spec?.clusterIP !== "None" &&
  o.spec?.selector?.["app.kubernetes.io/component"] === "router");
if (routerService?.spec.ports.some((p) => p.targetPort === "metrics")) problem("the router Service exposes /metrics");
const common = objects.find((o) => o.kind === "ConfigMap" && o.data?.["common.flags"]);
if (!/--metrics_port=\d+/.test(common?.data["common.flags"] ?? "")) problem("common.flags lacks --metrics_port");

if (mode === "tls") {
  const config = objects.find((o) => o.kind === "ConfigMap" && o.data?.["common.flags"]);
  for (const flag of ["--tls_cert=", "--tls_key=", "--tls_ca=", "--tls_server_name="]) {
    if (!config?.data["common.flags"].includes(flag)) problem(`common.flags lacks ${flag}`);
  }
}

if (problems.length) {
  for (const p of problems) console.error(`FAIL ${file}: ${p}`);
  process.exit(1);
}
console.log(`hardening ok: ${pods.length} pods, ${pdbs.length} PDBs, ${policies.length} NetworkPolicies${mode === "tls" ? ", TLS everywhere" : ""}`);
