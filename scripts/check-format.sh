#!/usr/bin/env bash
# Checks (or, with --fix, applies) .clang-format on every tracked C++ and CUDA source.
#   scripts/check-format.sh         exit 1 naming each file that differs
#   scripts/check-format.sh --fix   rewrite them in place
# clang-format 14 (Debian 12's, installed by scripts/install-deps.sh): another version may
# format differently, so the check uses exactly that one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cf="$(command -v clang-format-14 || command -v clang-format || true)"
[ -n "$cf" ] || { echo "check-format: clang-format not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
"$cf" --version | grep -q "version 14\." ||
  { echo "check-format: need clang-format 14, found: $("$cf" --version)" >&2; exit 1; }
mapfile -t files < <(git ls-files '*.cc' '*.h' '*.cu' '*.cuh')
if [ "${1:-}" = "--fix" ]; then
  "$cf" -i "${files[@]}"
  echo "check-format: formatted ${#files[@]} files"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$cf" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  printf 'check-format: not formatted: %s\n' "${bad[@]}" >&2
  echo "check-format: ${#bad[@]} of ${#files[@]} files differ from .clang-format; run scripts/check-format.sh --fix" >&2
  exit 1
fi
echo "check-format: ${#files[@]} files formatted as .clang-format says"
