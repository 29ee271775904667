// The npm half of tests/deps/check_install_deps.sh:
//   node tests/deps/check_npm_deps.mjs REPO_ROOT CACHE_DIR
// - scripts/npm/package.json pins every dependency to one exact version;
// - scripts/npm/package-lock.json exists, agrees with package.json, and every package in it
//   has a version and an integrity hash (npm ci installs exactly that);
// - the tree scripts/install-npm-deps.sh installed in CACHE_DIR/npm is the lock file's;
// - no node_modules folder in the repository, and every package the repository's own .mjs/.js
//   files import is a direct dependency, resolved from the cache (the only source of modules).
import fs from "node:fs";
import path from "node:path";
import { builtinModules } from "node:module";

const [root, cache] = process.argv.slice(2);
if (!root || !cache) {
  console.error("usage: check_npm_deps.mjs REPO_ROOT CACHE_DIR");
  process.exit(2);
}
const failures = [];
const fail = (msg) => failures.push(msg);
const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));

const pkg = readJson(path.join(root, "scripts/npm/package.json"));
const deps = pkg.dependencies || {};
for (const [name, spec] of Object.entries(deps)) {
  if (!/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(spec)) fail(`package.json: ${name} "${spec}" is not one exact version`);
}
for (const field of ["devDependencies", "optionalDependencies", "peerDependencies"]) {
  if (pkg[field] && Object.keys(pkg[field]).length) fail(`package.json: ${field} is not installed by npm ci here; use dependencies`);
}

const lockPath = path.join(root, "scripts/npm/package-lock.json");
if (!fs.existsSync(lockPath)) {
  fail("scripts/npm/package-lock.json missing");
} else {
  const lock = readJson(lockPath);
  if (!(lock.lockfileVersion >= 2)) fail(`package-lock.json: lockfileVersion ${lock.lockfileVersion} (need 2 or 3)`);
  const packages = lock.packages || {};
  const rootDeps = (packages[""] || {}).dependencies || {};
  for (const [name, spec] of Object.entries(deps)) {
    if (rootDeps[name] !== spec) fail(`package-lock.json: ${name} is ${rootDeps[name]} there, ${spec} in package.json`);
    const entry = packages[`node_modules/${name}`];
    if (!entry || entry.version !== spec) fail(`package-lock.json: node_modules/${name} is not ${spec}`);
  }
  for (const name of Object.keys(rootDeps)) if (!(name in deps)) fail(`package-lock.json: ${name} not in package.json`);
  for (const [key, entry] of Object.entries(packages)) {
    if (key === "" || entry.link || entry.inBundle) continue;
    // No `resolved`: the lock names no registry host; npm ci fetches from the configured one
    // and checks the integrity hash.
    if (!entry.version || !entry.integrity) fail(`package-lock.json: ${key} lacks a version or an integrity hash`);
  }
  // The installed tree: npm writes node_modules/.package-lock.json after `npm ci`.
  const installedPath = path.join(cache, "npm/node_modules/.package-lock.json");
  if (!fs.existsSync(installedPath)) {
    fail(`${installedPath} missing: scripts/install-npm-deps.sh has not installed the packages`);
  } else {
    const installed = readJson(installedPath).packages || {};
    for (const [key, entry] of Object.entries(packages)) {
      if (key === "" || entry.optional) continue;
      if (!installed[key] || installed[key].version !== entry.version) {
        fail(`${cache}/npm: ${key} is ${installed[key]?.version ?? "absent"}, the lock file says ${entry.version}`);
      }
    }
  }
}

// The repository's own JavaScript: what it imports must be a direct dependency, found in the cache.
const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
function walk(dir, out) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.name === ".git" || /^build/.test(e.name)) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name === "node_modules") fail(`${p}: node_modules inside the repository (modules come from the cache)`);
      else walk(p, out);
    } else if (/\.(mjs|cjs|js)$/.test(e.name)) out.push(p);
  }
  return out;
}
const sources = walk(root, []);
const importRe = /(?:^|[\s;(])(?:import\s[^'"]*?from\s*|import\s*\(\s*|require(?:FromCache\(\))?\s*\(\s*|import\s+)["']([^"']+)["']/g;
let imports = 0;
for (const file of sources) {
  const text = fs.readFileSync(file, "utf8");
  for (const m of text.matchAll(importRe)) {
    const spec = m[1];
    if (spec.startsWith(".") || spec.startsWith("/") || builtins.has(spec)) continue;
    const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0];
    imports++;
    if (!(name in deps)) {
      fail(`${path.relative(root, file)} imports ${spec}, not a dependency in scripts/npm/package.json`);
      continue;
    }
    const manifest = path.join(cache, "npm/node_modules", name, "package.json");
    if (!fs.existsSync(manifest)) fail(`${name} is not installed in ${cache}/npm/node_modules`);
    else if (readJson(manifest).version !== deps[name]) fail(`${manifest}: version ${readJson(manifest).version}, not ${deps[name]}`);
  }
}

if (failures.length) {
  for (const f of failures) console.error(`check-npm-deps: FAIL: ${f}`);
  process.exit(1);
}
console.log(
  `check-npm-deps: ${Object.keys(deps).length} npm packages pinned and locked, installed tree matches the lock file; ` +
    `${sources.length} JS files, ${imports} package imports, all direct dependencies from the cache`);
