// Turns a dsv3 launcher status file into a Prometheus file_sd target file.
//
//   node deploy/prometheus/file_sd_from_status.mjs STATUS.json OUT.json
//
// STATUS.json: the launcher's status file, a JSON array of the ready files of its processes
// ([{"role","pid","grpc","http"}, ...]); a single ready-file object is accepted too.
// OUT.json: one target group per role, [{"targets": ["host:http_port", ...],
// "labels": {"component": role}}], written to a temporary file and renamed, so Prometheus
// never reads half a file. Exits 1 with a message on malformed input.
import fs from "node:fs";
import path from "node:path";

function fail(message) {
  process.stderr.write(`file_sd_from_status: ${message}\n`);
  process.exit(1);
}

const [statusPath, outPath] = process.argv.slice(2);
if (!statusPath || !outPath) fail("usage: file_sd_from_status.mjs STATUS.json OUT.json");

let status;
try {
  status = JSON.parse(fs.readFileSync(statusPath, "utf8"));
} catch (e) {
  fail(`${statusPath}: ${e.message}`);
}
if (!Array.isArray(status)) status = [status];

const byRole = new Map();
status.forEach((entry, i) => {
  const where = `${statusPath}[${i}]`;
  if (entry === null || typeof entry !== "object") fail(`${where}: not an object`);
  const { role, http } = entry;
  if (typeof role !== "string" || !/^[a-z][a-z0-9_-]*$/.test(role)) fail(`${where}: bad role`);
  if (typeof http !== "string" || !/^[^\s:]+:\d{1,5}$/.test(http)) {
    fail(`${where}: http must be host:port, got ${JSON.stringify(http)}`);
  }
  if (!byRole.has(role)) byRole.set(role, []);
  byRole.get(role).push(http);
});

const groups = [...byRole.keys()].sort().map((role) => ({
  targets: byRole.get(role).sort(),
  labels: { component: role },
}));
const tmp = path.join(path.dirname(outPath), `.${path.basename(outPath)}.tmp`);
fs.writeFileSync(tmp, JSON.stringify(groups, null, 2) + "\n");
fs.renameSync(tmp, outPath);
