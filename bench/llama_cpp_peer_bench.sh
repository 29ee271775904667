#!/usr/bin/env bash
# The engine beside llama.cpp on one host, in one run (issue 15): the same checkpoint (the
# bench preset, `dsv3 make-model --preset bench --seed 1`, converted to GGUF), the same
# threads, runs alternating, the STREAM triad measured at the start and the end, and right
# before and after each engine's batch-1 figure.
#
#   bench/llama_cpp_peer_bench.sh            # setup (once, ~15 min), then ~15 min of runs
#
# Pairs at equal weight bytes: ours as stored (BF16) vs llama.cpp BF16, twice: activations
# rounded to bf16 (our default, the arithmetic llama.cpp's BF16 uses) and split into two bf16
# parts (`bf16-split`: --bf16_activations=false, f32-level products); ours --weights int8 vs
# Q8_0 (both 8.5 bits a weight); ours --weights int4 vs Q4_0 (4.5 bits; llama.cpp's Q4_0 file
# keeps its output head in Q6_K, ours in 6 bits too). Figures: decode at batch 1 (llama-bench tg),
# 8 and 32 (llama-batched-bench), prefill of 512 tokens (llama-bench pp), each timed over at
# least 2 s of work, RUNS times; and the KL divergence of int8/int4 (Q8_0/Q4_0) from BF16 on
# the same text (llama-perplexity --kl-divergence). Prints a table (min/median/max, ratios)
# and leaves every raw output in $OUT.
#
# llama.cpp comes from a pinned source this machine can get: the npm package
# node-llama-cpp@3.22.1 carries llama.cpp v0.5.0 as a git bundle. Its converter runs under
# Debian's python3-torch through bench/llama_cpp/convert.py (see there).
#
# Environment: RUNS (3), THREADS (all cores), BUILD (build: our build tree), DSV3_PEER_DIR
# (~/.cache/dsv3/peer: llama.cpp, the model, the GGUF files), OUT, DSV3_TOKENIZER_DIR
# (DeepSeek-V3's tokenizer; scripts/install-npm-deps.sh lays it out when missing), SKIP_KL=1,
# PAIRS (ours:llama.cpp formats; default "auto:bf16 bf16-split:bf16 int8:q8_0 int4:q4_0").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
read -r -a PAIRS <<<"${PAIRS:-auto:bf16 bf16-split:bf16 int8:q8_0 int4:q4_0}"  # ours:llama.cpp
THREADS=${THREADS:-$(nproc)}
BUILD=${BUILD:-$ROOT/build}
WORK=${DSV3_PEER_DIR:-$HOME/.cache/dsv3/peer}
OUT=${OUT:-$WORK/results-$(date -u +%Y%m%dT%H%M%SZ)}
TOKENIZER=${DSV3_TOKENIZER_DIR:-$HOME/.cache/dsv3/deepseek-v3-tokenizer}
LLAMA_NPM=node-llama-cpp@3.22.1
PY=/usr/bin/python3  # Debian's, with python3-torch (not a pyenv one)
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
mkdir -p "$WORK" "$OUT"
log() { echo "[peer-bench $(date -u +%H:%M:%S)] $*" >&2; }

setup_llama_cpp() {
  local need=()
  for p in python3-torch python3-numpy python3-tqdm cmake ninja-build; do
    dpkg -s "$p" > /dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    log "apt: ${need[*]}"
    $SUDO apt-get install -y -q "${need[@]}" > "$WORK/apt.log"
  fi
  # GGML_NATIVE builds for this CPU: a build made on another host (a cache that moved, a
  # CPU without AVX512_BF16 or VNNI) would run llama.cpp below its best here, so rebuild it.
  local cpu
  cpu=$(grep -m1 '^flags' /proc/cpuinfo | md5sum | cut -c1-16)
  if [ "$(cat "$WORK/llama.cpp/build/cpu-flags" 2>/dev/null)" != "$cpu" ]; then
    rm -rf "$WORK/llama.cpp/build"
  fi
  if [ ! -x "$WORK/llama.cpp/build/bin/llama-batched-bench" ]; then
    log "llama.cpp from $LLAMA_NPM"
    (cd "$WORK" && rm -rf package llama.cpp && npm pack "$LLAMA_NPM" > /dev/null &&
      tar xzf node-llama-cpp-*.tgz package/llama &&
      git clone -q package/llama/gitRelease.bundle llama.cpp)
    cmake -S "$WORK/llama.cpp" -B "$WORK/llama.cpp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF \
      > "$WORK/llama-build.log"
    cmake --build "$WORK/llama.cpp/build" -j"$(nproc)" --target llama-bench llama-batched-bench \
      llama-perplexity llama-quantize >> "$WORK/llama-build.log"
    echo "$cpu" > "$WORK/llama.cpp/build/cpu-flags"
  fi
  log "llama.cpp: $(cat "$WORK/package/llama/binariesGithubRelease.json" | tr -d ' \n')"
}

setup_ours() {
  cmake --build "$BUILD" --target engine_bench weight_format_kl matmul_bench dsv3 > "$OUT/ours-build.log"
  [ -f "$TOKENIZER/tokenizer.json" ] || "$ROOT/scripts/install-npm-deps.sh" > /dev/null
}

setup_models() {
  local m="$WORK/model-bf16" b="$WORK/llama.cpp/build/bin"
  if [ ! -f "$m/config.json" ]; then
    log "the bench preset checkpoint (seed 1) -> $m"
    "$BUILD/bin/dsv3" make-model --preset bench --seed 1 --tokenizer "$TOKENIZER" --out "$m.tmp"
    mv "$m.tmp" "$m"
  fi
  if [ ! -f "$WORK/bench-bf16.gguf" ]; then
    log "convert to GGUF"
    $PY "$ROOT/bench/llama_cpp/convert.py" "$WORK/llama.cpp" "$m" "$WORK/bench-bf16.gguf.tmp" bf16 \
      > "$WORK/convert.log" 2>&1
    mv "$WORK/bench-bf16.gguf.tmp" "$WORK/bench-bf16.gguf"
  fi
  for q in q8_0 q4_0; do
    [ -f "$WORK/bench-$q.gguf" ] && continue
    "$b/llama-quantize" "$WORK/bench-bf16.gguf" "$WORK/bench-$q.gguf" "${q^^}" > "$WORK/quantize-$q.log" 2>&1
  done
}

ceilings() {  # STREAM triad and GEMM peak now
  "$BUILD/bench/engine_bench" --model "$WORK/model-bf16" --speed=false --roles=false \
    --threads "$THREADS" --reps 3 --json "$OUT/ceilings-$1.json" > /dev/null
}

triad() {  # the STREAM triad now, into FILE (JSON)
  "$BUILD/bench/engine_bench" --model "$WORK/model-bf16" --speed=false --roles=false \
    --gemm_peak=false --reps 2 --json "$1" > /dev/null
}

# Batch 1 reads memory, and this VM's bandwidth moves within minutes: each engine's batch-1
# figure also gets the triad measured right before and after it (ours: --triad_beside).
ours() {  # ours FORMAT RUN (FORMAT: a --weights value, or bf16-split: as stored, split activations)
  local load=(--weights "$1")
  [ "$1" = bf16-split ] && load=(--weights auto --bf16_activations=false)
  "$BUILD/bench/engine_bench" --model "$WORK/model-bf16" "${load[@]}" --threads "$THREADS" \
    --reps 1 --roles=false --ceilings=false --triad_beside --min_seconds 2 \
    --json "$OUT/ours-$1-$2.json" > "$OUT/ours-$1-$2.log" 2>&1
}

llama() {  # llama GGUF_TYPE RUN
  local b="$WORK/llama.cpp/build/bin" g="$WORK/bench-$1.gguf"
  triad "$OUT/llama-$1-tg-$2-triad-before.json"
  "$b/llama-bench" -m "$g" -t "$THREADS" -p 0 -n 256 -r 1 -o json > "$OUT/llama-$1-tg-$2.json" 2> /dev/null
  triad "$OUT/llama-$1-tg-$2-triad-after.json"
  "$b/llama-bench" -m "$g" -t "$THREADS" -p 512 -n 0 -r 3 -o json > "$OUT/llama-$1-pp-$2.json" 2> /dev/null
  "$b/llama-batched-bench" -m "$g" -t "$THREADS" -c 4096 -b 2048 -ub 512 -npp 32 -ntg 48 \
    -npl 8,32 --output-format jsonl > "$OUT/llama-$1-batched-$2.jsonl" 2> /dev/null
}

kl() {
  local text="$OUT/kl-text.txt" b="$WORK/llama.cpp/build/bin"
  cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/GFDL-1.3 > "$text"
  $PY -c 'import json,sys; print(json.dumps({"text": open(sys.argv[1]).read()}))' "$text" |
    "$BUILD/bin/dsv3" tokenize --tokenizer "$WORK/model-bf16" > "$OUT/kl-tokens.json"
  # Ours twice: the chunk as one prefill (int8 activations; int4 on AVX512_BF16 rounds them and
  # its weights to bf16 instead), and 16 tokens at a time, which runs the decode kernels (int8
  # activations): what generated tokens are computed with.
  for f in int8 int4; do
    "$BUILD/bench/weight_format_kl" --model "$WORK/model-bf16" --weights $f --threads "$THREADS" \
      --tokens "$OUT/kl-tokens.json" --ctx 512 --chunks 16 > "$OUT/ours-kl-$f.json"
    "$BUILD/bench/weight_format_kl" --model "$WORK/model-bf16" --weights $f --threads "$THREADS" \
      --tokens "$OUT/kl-tokens.json" --ctx 512 --chunks 16 --step 16 > "$OUT/ours-kl-$f-decode.json"
  done
  # BF16 as it runs by default, activations rounded to bf16, against the same model with them
  # split: what rounding them costs, prefill and decode (llama.cpp's BF16 rounds them the same way).
  "$BUILD/bench/weight_format_kl" --model "$WORK/model-bf16" --weights auto \
    --threads "$THREADS" --tokens "$OUT/kl-tokens.json" --ctx 512 --chunks 16 > "$OUT/ours-kl-bf16-act.json"
  "$BUILD/bench/weight_format_kl" --model "$WORK/model-bf16" --weights auto \
    --threads "$THREADS" --tokens "$OUT/kl-tokens.json" --ctx 512 --chunks 16 --step 16 \
    > "$OUT/ours-kl-bf16-act-decode.json"
  "$b/llama-perplexity" -m "$WORK/bench-bf16.gguf" -t "$THREADS" -f "$text" -c 512 --chunks 16 \
    --kl-divergence-base "$OUT/llama-kl-base.bin" > "$OUT/llama-kl-base.log" 2>&1
  for q in q8_0 q4_0; do
    "$b/llama-perplexity" -m "$WORK/bench-$q.gguf" -t "$THREADS" --chunks 16 \
      --kl-divergence-base "$OUT/llama-kl-base.bin" --kl-divergence > "$OUT/llama-kl-$q.log" 2>&1
  done
  rm -f "$OUT/llama-kl-base.bin"
}

setup_llama_cpp
setup_ours
setup_models
log "runs: $RUNS, threads: $THREADS, results in $OUT"
# Which CPU: hosts of one name differ (AMD family 25 is Zen 4, 26 Zen 5), and kernels with them.
awk -F': ' '/^model name/ && !n {n = $2} /^cpu family/ && !f {f = $2}
  /^model[ \t]*:/ && !m {m = $2} END {print n ", family " f ", model " m}' /proc/cpuinfo > "$OUT/cpu.txt"
ceilings start
for run in $(seq 1 "$RUNS"); do
  for pair in "${PAIRS[@]}"; do
    set -- ${pair/:/ }
    log "run $run: ours $1, llama.cpp $2"
    if [ $((run % 2)) = 1 ]; then ours "$1" "$run"; llama "$2" "$run"; else llama "$2" "$run"; ours "$1" "$run"; fi
  done
done
ceilings end
[ "${SKIP_KL:-0}" = 1 ] || { log "KL divergence"; kl; }
$PY "$ROOT/bench/llama_cpp/report.py" "$OUT" | tee "$OUT/report.md"
