#!/usr/bin/env bash
# Decode throughput at batch 8 through the whole cluster, routed experts colocated vs on
# expert workers (issue 6, RESULTS.md). All processes on this machine.
#   bench/expert_cluster_bench.sh BUILD_DIR MODEL_DIR [EXPERT_COUNTS...]   (default: 0 2)
# Each configuration: `dsv3 cluster --experts N`, then `dsv3 bench` with 8 concurrent streams
# (prompt 64 tokens, 128 output tokens, ignore EOS), twice; prints output tok/s and TPOT.
set -euo pipefail
build="${1:?build dir}"; model="${2:?model dir}"; shift 2
counts=("$@"); [ ${#counts[@]} -gt 0 ] || counts=(0 2)
port=19300
for n in "${counts[@]}"; do
  dir="$(mktemp -d /tmp/expert-cluster-bench.XXXXXX)"
  "$build/bin/dsv3" cluster --model "$model" --experts "$n" --port_base "$port" \
    --status_file "$dir/status.json" --log_dir "$dir" --kv_pool_blocks 512 \
    --decode_max_running 8 >"$dir/cluster.out" 2>&1 &
  cluster=$!
  for _ in $(seq 1 600); do [ -s "$dir/status.json" ] && break; sleep 0.5; done
  [ -s "$dir/status.json" ] || { echo "cluster with $n expert workers did not start"; cat "$dir/cluster.out"; exit 1; }
  for rep in 1 2; do
    "$build/bin/dsv3" bench --router "127.0.0.1:$port" --bench_concurrency 8 --bench_requests 16 \
      --bench_prompt_tokens 64 --bench_output_tokens 128 --bench_json "$dir/bench-$rep.json" \
      >"$dir/bench-$rep.out" 2>&1
    python3 - "$dir/bench-$rep.json" "$n" "$rep" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
def find(d, *keys):
    for k in keys:
        if k in d: return d[k]
    return None
print(f"experts={sys.argv[2]} rep={sys.argv[3]} " + json.dumps({k: j[k] for k in j if not isinstance(j[k], (list, dict))}))
PY
  done
  kill -INT "$cluster"; wait "$cluster" || true
  port=$((port + 40))
done
