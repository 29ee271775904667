#!/usr/bin/env bash
# Proves that tests/deps/check_install_deps.sh can fail: with packages the build needs dropped
# from scripts/install-deps.sh's list (one only a CMake config file requires, one whose headers
# and library the sources use, one a test calls as a tool), it must exit non-zero and name
# each of them.
#   tests/deps/guard_self_test.sh BUILD_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
(($#)) || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
dropped=(ocl-icd-opencl-dev libpcre2-dev prometheus)
args=()
for p in "${dropped[@]}"; do args+=(--without "$p"); done
if out="$("$here/check_install_deps.sh" "${args[@]}" "$@" 2>&1)"; then
  echo "$out" >&2
  echo "guard-self-test: FAIL: the guard passed with ${dropped[*]} dropped from the list" >&2
  exit 1
fi
for p in "${dropped[@]}"; do
  grep -q "FAIL: package $p is used" <<<"$out" ||
    { echo "$out" >&2; echo "guard-self-test: FAIL: the guard did not name $p" >&2; exit 1; }
done
echo "guard-self-test: the guard fails and names ${dropped[*]} when they are dropped from the list"
