#!/usr/bin/env bash
# Configures and builds dsv3-serve into a build directory.
#   scripts/build.sh [BUILD_DIR] [extra cmake -D options...] [--target TARGET...]
# ccache is used when present (warm rebuilds take seconds).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${1:-$root/build}"
shift || true
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-8G}"
# Paths relative to the checkout, so a fresh clone in another folder still hits the cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
# Compiles stay within memory with one job per core (2 here).
jobs="${DSV3_BUILD_JOBS:-$(nproc)}"
cmake_args=(); targets=()
while (($#)); do
  if [ "$1" = "--target" ]; then targets+=("$2"); shift 2; else cmake_args+=("$1"); shift; fi
done
mkdir -p "$build_dir"
t0=$(date +%s)
echo "build: configuring $build_dir (cmake; log in $build_dir/configure.log)"
cmake -S "$root" -B "$build_dir" -G Ninja "${cmake_args[@]}" >"$build_dir/configure.log" 2>&1 || {
  cat "$build_dir/configure.log"; exit 1; }
grep -E "^-- dsv3:" "$build_dir/configure.log" || true
t1=$(date +%s)
echo "build: configured in $((t1 - t0)) s; compiling with $jobs jobs ([done/total] per step;" \
     "a cold build of everything takes ~10 min on 2 cores, a warm ccache ~1 min)"
# [finished/total elapsed-seconds] on every line, also when the output is not a terminal.
NINJA_STATUS="${NINJA_STATUS:-[%f/%t %es] }" ninja -C "$build_dir" -j "$jobs" "${targets[@]}"
echo "build: $build_dir built in $(($(date +%s) - t1)) s"
