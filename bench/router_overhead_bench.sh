#!/usr/bin/env bash
# Router overhead (issue 5, RESULTS.md): TTFT through the router minus the prefill worker's
# own time, per request, at concurrency 1 and 256, beside the same run's one-hop floor (a
# gRPC call that does nothing, to the prefill worker, every 5 ms: `dsv3 bench --bench_probe`).
#   bench/router_overhead_bench.sh BUILD_DIR MODEL_DIR [ROUNDS] [TRANSPORTS...]
#     (default: 3 rounds; tcp and posix,cma,self)
#   AUTH="open keys" bench/router_overhead_bench.sh ...: each round and transport also with
#     the router's --api_keys on (one key, limits set but never reached), to put the cost of
#     API keys beside the open router in one run (issue 16). Default AUTH=open.
#   AUTH="open tls tls+keys": also with `dsv3 cluster --tls` (TLS on every port, mutual TLS
#     between the processes; the bench presents the cluster's certificate), and with both.
# Each round and transport: a fresh `dsv3 cluster` (router + 1 prefill + 1 decode), then
# `dsv3 bench` with 128-token prompts and 2 output tokens; at 256 streams the first 256
# requests (the ramp) are left out. Prints the bench's figures and the router's histograms
# (dsv3_router_overhead_seconds, dsv3_reserve_seconds; quantiles interpolated in buckets).
set -euo pipefail
build="${1:?build dir}"; model="${2:?model dir}"; rounds="${3:-3}"; shift 2; shift || true
transports=("$@"); [ ${#transports[@]} -gt 0 ] || transports=(tcp "posix,cma,self")
port=19400
quantiles() {  # metrics-before metrics-after
  python3 - "$1" "$2" <<'PY'
import re, sys
def parse(f):
    m = {}
    for l in open(f):
        r = re.match(r'^dsv3_(router_overhead|reserve)_seconds_bucket\{.*le="([^"]+)"\} (\S+)', l)
        if r:
            le = float('inf') if r.group(2) == '+Inf' else float(r.group(2))
            m.setdefault(r.group(1), []).append((le, float(r.group(3))))
    return m
a, b = parse(sys.argv[1]), parse(sys.argv[2])
for k, v in b.items():
    d = [(le, c - (a[k][i][1] if k in a else 0)) for i, (le, c) in enumerate(v)]
    total = d[-1][1]
    def q(p):
        t, prev, pc = p * total, 0.0, 0.0
        for le, c in d:
            if c >= t:
                return float('inf') if le == float('inf') else (prev + (le - prev) * (t - pc) / max(1, c - pc)) * 1e3
            prev, pc = le, c
    print(f"  router {k}: n {int(total)} p50 {q(.5):.2f} p90 {q(.9):.2f} p99 {q(.99):.2f} ms")
PY
}
read -r -a auths <<<"${AUTH:-open}"
key="sk-bench-0123456789abcdef"
for round in $(seq 1 "$rounds"); do
  for tls in "${transports[@]}"; do
  for auth in "${auths[@]}"; do
    dir="$(mktemp -d /tmp/router-overhead-bench.XXXXXX)"
    keys=(); tls_flags=(); client_tls=(); curl_tls=(); scheme=http
    if [[ "$auth" == tls* ]]; then
      tls_flags=(--tls)
      client_tls=(--tls_ca "$dir/tls/ca.pem" --tls_cert "$dir/tls/cluster.pem" --tls_key "$dir/tls/cluster.key")
      curl_tls=(--cacert "$dir/tls/ca.pem"); scheme=https
    fi
    if [[ "$auth" == *keys ]]; then
      echo "bench $key rps=100000 tpm=1000000000 streams=100000" >"$dir/keys"
      keys=(--api_keys "$dir/keys")
    fi
    "$build/bin/dsv3" cluster --model "$model" --kv_pool_blocks 1024 --decode_max_running 256 \
      --ucx_transports "$tls" --port_base "$port" --status_file "$dir/status.json" \
      --log_dir "$dir" "${keys[@]}" "${tls_flags[@]}" >"$dir/cluster.out" 2>&1 &
    cluster=$!
    trap 'kill -TERM "$cluster" 2>/dev/null || true' EXIT  # a failed step leaves no cluster
    for _ in $(seq 1 600); do [ -s "$dir/status.json" ] && break; sleep 0.5; done
    [ -s "$dir/status.json" ] || { echo "cluster did not start"; cat "$dir/cluster.out"; exit 1; }
    prefill=$(python3 -c "import json,sys; print([e['grpc'] for e in json.load(open(sys.argv[1])) if e['role']=='prefill'][0])" "$dir/status.json")
    for c in 1 256; do
      n=1024; warmup=256; [ "$c" = 1 ] && { n=100; warmup=10; }
      curl -s "${curl_tls[@]}" "$scheme://127.0.0.1:$((port + 1))/metrics" >"$dir/m0.txt"
      DSV3_API_KEY="$key" "$build/bin/dsv3" bench --router "127.0.0.1:$port" --bench_concurrency "$c" \
        --bench_requests "$n" --bench_warmup_requests "$warmup" --bench_prompt_tokens 128 \
        --bench_output_tokens 2 --bench_probe "$prefill" --bench_json "$dir/bench-$c.json" "${client_tls[@]}" \
        >"$dir/bench-$c.out" 2>&1 || true
      curl -s "${curl_tls[@]}" "$scheme://127.0.0.1:$((port + 1))/metrics" >"$dir/m1.txt"
      python3 - "$dir/bench-$c.json" "$round" "$tls" "$c" "$auth" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
a, p = j["ttft_minus_prefill_worker_ms"], j["probe_rtt_ms"]
print(f"round {sys.argv[2]} {sys.argv[3]} {sys.argv[5]} concurrency {sys.argv[4]}: requests {j['requests']} "
      f"errors {j['errors']}; TTFT - prefill worker p50 {a['p50']:.2f} p90 {a['p90']:.2f} "
      f"p99 {a['p99']:.2f} ms; probe RTT p50 {p['p50']:.2f} p99 {p['p99']:.2f} ms")
PY
      quantiles "$dir/m0.txt" "$dir/m1.txt"
    done
    kill -TERM "$cluster"; wait "$cluster" || true
  done
  done
done
