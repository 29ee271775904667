#!/usr/bin/env bash
# Soak (issue 17, RESULTS.md "Reliability"): STREAMS (default 1000) concurrent streams for
# MINUTES (default 10) on a cluster of 2 prefill + 2 decode workers.
#   bench/soak_bench.sh BUILD_DIR MODEL_DIR [MINUTES] [STREAMS]
# Every 10 s the resident (VmRSS) and private (USS) memory of every process is sampled.
# Reports, against the issue's targets: memory growth of each process from the end of the
# first minute (warm-up) to the end (<= 5%), the KV blocks still used once the load is over
# (0), and the inter-token latency p99 of the last minute against the first minute after
# warm-up (within 20%; from the router's dsv3_inter_token_latency_seconds histogram, bucket
# resolution).
# Env: PROMPT (64), OUTPUT (256), PORT (19800).
set -euo pipefail
build="${1:?build dir}"; model="${2:?model dir}"; minutes="${3:-10}"; streams="${4:-1000}"
port="${PORT:-19800}"
dir="$(mktemp -d /tmp/soak-bench.XXXXXX)"
echo "soak: logs and results in $dir"
"$build/bin/dsv3" cluster --model "$model" --prefill 2 --decode 2 --kv_pool_blocks 2048 \
  --decode_max_running 512 --port_base "$port" --status_file "$dir/status.json" \
  --log_dir "$dir" >"$dir/cluster.out" 2>&1 &
cluster=$!
trap 'kill -INT "$cluster" 2>/dev/null || true; wait "$cluster" 2>/dev/null || true' EXIT
for _ in $(seq 1 1200); do [ -s "$dir/status.json" ] && break; sleep 0.5; done
[ -s "$dir/status.json" ] || { echo "cluster did not start"; cat "$dir/cluster.out"; exit 1; }
python3 -c '
import json, sys
for p in json.load(open(sys.argv[1])): print(p["role"], p["pid"], p["grpc"], p["http"])' \
  "$dir/status.json" >"$dir/procs.txt"

"$build/bin/dsv3" bench --router "127.0.0.1:$port" --bench_concurrency "$streams" \
  --bench_duration "$((minutes * 60))" --bench_prompt_tokens "${PROMPT:-64}" \
  --bench_output_tokens "${OUTPUT:-256}" --timeout_s 600 --bench_json "$dir/bench.json" \
  >"$dir/bench.out" 2>&1 &
bench=$!
start=$(date +%s)
# Every 10 s: elapsed seconds, then role:pid:rss_kb for each process; and the router's ITL
# histogram at 60 s, 120 s, and every sample after (the last two minutes are read from it).
while kill -0 "$bench" 2>/dev/null; do
  now=$(($(date +%s) - start))
  line="$now"
  while read -r role pid grpc http; do
    rss="$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
    uss="$(awk '/^Private_(Clean|Dirty)/ {n += $2} END {print n + 0}' \
      "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)"
    line="$line $role:$pid:${rss:-0}:${uss:-0}"
  done <"$dir/procs.txt"
  echo "$line" >>"$dir/rss.txt"
  curl -s --max-time 5 "http://127.0.0.1:$((port + 1))/metrics" |
    grep '^dsv3_inter_token_latency_seconds_bucket' >"$dir/itl-$now.txt" || true
  sleep 10
done
wait "$bench" || true
sleep 5
used=0
while read -r role pid grpc http; do
  [ "$role" = decode ] || continue
  n="$(curl -s --max-time 5 "http://$http/metrics" | awk '/^dsv3_kv_cache_used_blocks\{/ {print $2}')"
  used=$((used + ${n%.*}))
done <"$dir/procs.txt"
python3 - "$dir" "$used" "$minutes" <<'PY'
import glob, json, os, re, sys
d, used, minutes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
b = json.load(open(d + "/bench.json"))
print(f"requests: {b['requests']} sent, {b['completed']} completed, {b['errors']} failed "
      f"{dict(b['errors_by_code'])}; {b['output_token_throughput']:.0f} output tok/s")
rows = [l.split() for l in open(d + "/rss.txt")]
def mem_at(row, field):
    return {f"{e.split(':')[0]}-{e.split(':')[1]}": int(e.split(':')[field]) for e in row[1:]}
warm = next((r for r in rows if int(r[0]) >= 60), rows[0])
last = rows[-2] if len(rows) > 1 else rows[-1]  # the last sample under load
# RSS counts shared pages too: a prefill worker maps the decode workers' /dev/shm KV pools
# (UCX shared memory) and its RSS grows as it writes into more of them, though no memory is
# added. Private (USS) is what the process alone holds.
for field, what in ((2, "resident (RSS)"), (3, "private (USS)")):
    w, l = mem_at(warm, field), mem_at(last, field)
    print(f"{what} memory, {warm[0]} s -> {last[0]} s (target: growth <= 5%):")
    for k in w:
        g = (l[k] - w[k]) / max(w[k], 1) * 100
        print(f"  {k:20s} {w[k]/1024:8.1f} MiB -> {l[k]/1024:8.1f} MiB  {g:+5.1f}%")
print(f"KV blocks used after the run: {used} (target 0)")
def hist(path):
    h = {}
    for line in open(path):
        m = re.match(r'.*le="([^"]+)"\} (\S+)', line)
        if m: h[float("inf") if m.group(1) == "+Inf" else float(m.group(1))] = float(m.group(2))
    return h
def p99(a, b):
    les = sorted(b)
    delta = [(le, b[le] - a.get(le, 0.0)) for le in les]
    total = delta[-1][1]
    if total <= 0: return float("nan"), 0
    for le, c in delta:
        if c >= 0.99 * total: return le, total
    return les[-1], total
snaps = sorted((int(os.path.basename(p)[4:-4]), p) for p in glob.glob(d + "/itl-*.txt"))
snaps = [(t, p) for t, p in snaps if os.path.getsize(p) > 0]
first = [s for s in snaps if s[0] >= 60][:7]   # 60 s .. ~120 s
tail = [s for s in snaps if s[0] >= snaps[-1][0] - 60] if snaps else []
if len(first) >= 2 and len(tail) >= 2:
    f, ft = p99(hist(first[0][1]), hist(first[-1][1]))
    t, tt = p99(hist(tail[0][1]), hist(tail[-1][1]))
    print(f"ITL p99 (bucket upper bound): minute after warm-up {f*1e3:.1f} ms ({ft:.0f} gaps), "
          f"last minute {t*1e3:.1f} ms ({tt:.0f} gaps) (target: within 20%)")
PY
