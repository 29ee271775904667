#!/usr/bin/env bash
# Installs what is missing (apt, npm), builds dsv3-serve (CPU + CUDA compile where nvcc
# exists) and runs every test: unit and integration tests on the normal build, then the
# unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
start=$(date +%s)

"$root/scripts/install-deps.sh"

echo "== build (RelWithDebInfo, DSV3_CUDA=AUTO)"
"$root/scripts/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV3_CUDA=AUTO
echo "== tests"
ctest --test-dir "$root/build" --output-on-failure --timeout 900 -j 2

echo "== build (ASan + UBSan, CPU only)"
"$root/scripts/build.sh" "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DDSV3_SANITIZE=ON \
  -DDSV3_CUDA=OFF -DDSV3_BUILD_BENCH=OFF
echo "== unit tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$root/build-asan" --output-on-failure -L unit --timeout 900 -j 2

echo "== fuzz: safetensors header parser (libFuzzer, bounded)"
CC=clang CXX=clang++ "$root/scripts/build.sh" "$root/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDSV3_FUZZ=ON -DDSV3_CUDA=OFF -DDSV3_BUILD_TESTS=OFF -DDSV3_BUILD_BENCH=OFF \
  --target safetensors_header_fuzzer
mkdir -p "$root/build-fuzz/corpus"
"$root/build-fuzz/engine/safetensors_header_fuzzer" -max_total_time="${DSV3_FUZZ_SECONDS:-30}" \
  -rss_limit_mb=2048 -print_final_stats=1 "$root/build-fuzz/corpus" 2>&1 | tail -n 12

"$root/deploy/validate.sh"  # helm lint/template + k8s schema validation, Dockerfile checks
echo "== all tests passed in $(( $(date +%s) - start )) s"
