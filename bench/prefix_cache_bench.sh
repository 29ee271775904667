#!/usr/bin/env bash
# Prefix caching (issue 14, RESULTS.md), cache on and off in the same run, on one machine:
#   bench/prefix_cache_bench.sh BUILD_DIR MODEL_DIR [WHICH...]   (WHICH: turn, multi; both)
# turn:  1 prefill + 1 decode; 4 conversations (TURN_CONVERSATIONS) x 2 turns at concurrency
#        1: turn 1 is a 2,000-token prompt (a 1,936-token system prompt + a 64-token message)
#        answered with 64 tokens; turn 2 sends that history and a new 64-token message.
#        TTFT of turn 2 with the cache on (the prefill worker recomputes the answer, or the
#        decode worker computes the suffix: --decode_prefill_max_tokens 128) vs off (target:
#        <= 10%).
# multi: 2 prefill + 2 decode; 16 conversations x 8 turns at concurrency 8 (256-token system
#        prompt, 48-token messages, 32-token answers): the cache off, round robin, and the
#        kv policy with --kv_overlap_weight 1 and 3 (the default), each with and without
#        --decode_prefill_max_tokens 128. Hit rate against the ideal, TTFT, throughput.
# Each configuration gets a fresh `dsv3 cluster`; the bench's JSON lands in a temp dir.
set -euo pipefail
build="${1:?build dir}"; model="${2:?model dir}"; shift 2
which=("$@"); [ ${#which[@]} -gt 0 ] || which=(turn multi)
port=19500

run() {  # name prefill decode cluster-flags... -- bench-flags...
  local name="$1" np="$2" nd="$3"; shift 3
  local cflags=() bflags=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do cflags+=("$1"); shift; done
  shift
  bflags=("$@")
  local dir; dir="$(mktemp -d /tmp/prefix-cache-bench.XXXXXX)"
  "$build/bin/dsv3" cluster --model "$model" --prefill "$np" --decode "$nd" \
    --kv_pool_blocks 1024 --port_base "$port" --status_file "$dir/status.json" \
    --log_dir "$dir" "${cflags[@]}" >"$dir/cluster.out" 2>&1 &
  local cluster=$!
  for _ in $(seq 1 600); do [ -s "$dir/status.json" ] && break; sleep 0.5; done
  [ -s "$dir/status.json" ] || { echo "cluster did not start"; cat "$dir/cluster.out"; exit 1; }
  "$build/bin/dsv3" bench --router "127.0.0.1:$port" --bench_json "$dir/bench.json" \
    "${bflags[@]}" >"$dir/bench.out" 2>&1 || { cat "$dir/bench.out"; }
  curl -s "http://127.0.0.1:$((port + 1))/metrics" | grep '^dsv3_router_decisions_total' \
    >"$dir/decisions.txt" || true
  kill -INT "$cluster"; wait "$cluster" || true
  python3 - "$dir" "$name" <<'PY'
import json, sys
d, name = sys.argv[1], sys.argv[2]
j = json.load(open(d + "/bench.json"))
m = j["multi_turn"]
turns = {t["turn"]: t for t in m["ttft_by_turn"]}
last = max(turns)
print(f"{name:28s} hit {m['hit_rate']*100:5.1f}% (ideal {m['ideal_hit_rate']*100:5.1f}%, "
      f"{m['hit_rate_of_ideal']*100:5.1f}% of it)  TTFT p50 {j['ttft_ms']['p50']:8.1f} "
      f"p99 {j['ttft_ms']['p99']:8.1f} ms  ITL p50 {j['itl_ms']['p50']:6.1f} "
      f"p99 {j['itl_ms']['p99']:6.1f} ms  turn 1 p50 {turns[1]['p50_ms']:8.1f}  "
      f"turn {last} p50 {turns[last]['p50_ms']:8.1f} ms  output {j['output_token_throughput']:7.1f} "
      f"tok/s  errors {j['errors']}  ({d})")
for line in open(d + "/decisions.txt"):
    print("    " + line.strip())
PY
}

for w in "${which[@]}"; do
  case "$w" in
    turn)
      echo "== one turn after a 2,000-token history (1 prefill + 1 decode)"
      for config in "true 0" "true 128" "false 0"; do
        set -- $config
        run "prefix_cache=$1 decode_prefill=$2" 1 1 --prefix_cache="$1" \
          --decode_prefill_max_tokens="$2" -- \
          --bench_conversations "${TURN_CONVERSATIONS:-4}" --bench_turns 2 --bench_concurrency 1 \
          --bench_system_tokens 1936 --bench_user_tokens 64 --bench_output_tokens 64 \
          --timeout_s 600
      done ;;
    multi)
      echo "== multi-turn: 16 conversations x 8 turns, concurrency 8 (2 prefill + 2 decode)"
      # Policy, prefix cache, --decode_prefill_max_tokens, --kv_overlap_weight and, optional,
      # the decode workers' --local_prefill_chunk_tokens; MULTI_CONFIGS ("a b c d;e f g h i")
      # replaces the list.
      configs=("kv false 0 3" "round_robin true 0 3" "kv true 0 1" "kv true 128 1" "kv true 0 3"
               "kv true 128 3")
      [ -z "${MULTI_CONFIGS:-}" ] || IFS=';' read -ra configs <<<"$MULTI_CONFIGS"
      for config in "${configs[@]}"; do
        set -- $config
        chunk="${5:--1}"
        run "$1 cache=$2 decode_prefill=$3 overlap_weight=$4 chunk=$chunk" 2 2 \
          --router_policy="$1" --prefix_cache="$2" --decode_prefill_max_tokens="$3" \
          --kv_overlap_weight="$4" --local_prefill_chunk_tokens="$chunk" -- \
          --bench_conversations 16 --bench_turns 8 --bench_concurrency 8 \
          --bench_system_tokens 256 --bench_user_tokens 48 --bench_output_tokens 32 \
          --timeout_s 600
      done ;;
  esac
done
