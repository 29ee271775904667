#!/usr/bin/env bash
# Prints, one per line, the Debian packages that own the shared libraries the given
# binaries load (ldd + dpkg -S): what a runtime image must install. Fails if a library
# belongs to no package (it would be missing at run time), except the CUDA Toolkit's and
# NCCL's under /usr/local/cuda*, which the CUDA runtime base image provides.
set -euo pipefail
(($#)) || { echo "usage: runtime-packages.sh BINARY..." >&2; exit 2; }
mapfile -t libs < <(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// && $3 !~ /^\/usr\/local\/cuda/ {print $3}' | sort -u)
# dpkg records /lib/... or /usr/lib/... depending on the package (merged /usr): ask for
# every spelling at once (one dpkg call; unknown paths only add to stderr).
candidates=()
for lib in "${libs[@]}"; do
  candidates+=("$lib" "/usr$lib" "${lib#/usr}" "$(readlink -f "$lib")")
done
owners=$(dpkg -S "${candidates[@]}" 2>/dev/null | grep -v '^diversion' || true)
for lib in "${libs[@]}"; do
  owner=""
  for path in "$lib" "/usr$lib" "${lib#/usr}" "$(readlink -f "$lib")"; do
    owner=$(awk -v p="$path" '{ split($0, a, ": "); if (a[2] == p) { sub(/:.*/, "", a[1]); print a[1]; exit } }' <<<"$owners")
    [ -n "$owner" ] && break
  done
  [ -n "$owner" ] || { echo "runtime-packages: no package owns $lib" >&2; exit 1; }
  echo "$owner"
done | sort -u
