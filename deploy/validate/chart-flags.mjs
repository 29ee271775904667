// Every flag the chart gives a process is one that process knows: reads a `helm template`
// render, collects each dsv3 container's flags (its args, and the flag files of the
// ConfigMap they name, recursively) and checks them against `<bin>/dsv3-<role> --help`.
//   node chart-flags.mjs RENDER.yaml BIN_DIR
// Exits 1 naming the role and flag on a flag the binary does not define.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(process.env.NODE_MODULES + '/');
const YAML = require('yaml');

const [renderPath, binDir] = process.argv.slice(2);
const docs = YAML.parseAllDocuments(readFileSync(renderPath, 'utf8')).map((d) => d.toJSON());
const flagFiles = {};  // "/etc/dsv3/<name>" -> text
for (const d of docs) {
  if (d && d.kind === 'ConfigMap' && d.data) {
    for (const [k, v] of Object.entries(d.data)) flagFiles[`/etc/dsv3/${k}`] = v;
  }
}
// absl's own flags, known to every binary.
const builtin = new Set(['flagfile', 'fromenv', 'tryfromenv', 'undefok', 'help', 'helpfull']);

function flagsOf(args, seen = new Set()) {
  const out = [];
  for (const a of args) {
    const m = /^--([A-Za-z0-9_-]+)(=(.*))?$/.exec(a.trim());
    if (!m) continue;
    if (m[1] === 'flagfile') {
      const file = m[3];
      if (seen.has(file)) continue;
      seen.add(file);
      if (!(file in flagFiles)) throw new Error(`flag file ${file} is not in the ConfigMap`);
      out.push(...flagsOf(flagFiles[file].split('\n'), seen));
      continue;
    }
    out.push(m[1].replace(/-/g, '_'));
  }
  return out;
}

const known = {};
let checked = 0;
const errors = [];
for (const d of docs) {
  const spec = d?.spec?.template?.spec;
  if (!spec) continue;
  for (const c of [...(spec.containers || []), ...(spec.initContainers || [])]) {
    const cmd = (c.command || [])[0] || '';
    const m = /dsv3-(router|prefill|decode|expert|rebalancer)$/.exec(cmd);
    if (!m) continue;
    const role = m[1];
    if (!known[role]) {
      const help = execFileSync(`${binDir}/dsv3-${role}`, ['--help'], { encoding: 'utf8' });
      known[role] = new Set([...help.matchAll(/^\s+--([a-z0-9_]+)\s/gm)].map((x) => x[1]));
    }
    for (const f of flagsOf(c.args || [])) {
      checked++;
      if (!builtin.has(f) && !known[role].has(f)) errors.push(`${d.metadata.name}: dsv3-${role} has no --${f}`);
    }
  }
}
if (errors.length) {
  console.error(errors.join('\n'));
  process.exit(1);
}
console.log(`chart-flags: ${checked} flags of ${Object.keys(known).length} roles known to their binaries`);
