#!/usr/bin/env bash
# Chaos run (issue 17, RESULTS.md "Reliability"): `dsv3 bench` load on a cluster of 2 prefill,
# 2 decode and EXPERTS (default 2) expert workers while a random worker is, every 6-12 s,
# either killed (kill -9, restarted on the same ports 3 s later, as Kubernetes restarts a pod)
# or stopped (SIGSTOP for 3 s, then SIGCONT: a hung process).
#   bench/chaos_bench.sh BUILD_DIR MODEL_DIR [MINUTES]      (default 3 minutes of faults)
# Reports: requests completed, migrated (by reason), failed (by status), hung (ended by their
# deadline: must be 0), whether the router survived (must), KV blocks still used on the
# decode workers once the load is over (must be 0), and per fault the time until the errors
# stopped. Env: EXPERTS, CONCURRENCY (8), PROMPT (256), OUTPUT (64), PORT (19700).
set -euo pipefail
build="${1:?build dir}"; model="${2:?model dir}"; minutes="${3:-3}"
experts="${EXPERTS:-2}"; port="${PORT:-19700}"
dir="$(mktemp -d /tmp/chaos-bench.XXXXXX)"
echo "chaos: logs and results in $dir"
ucx=(); [ "$experts" -gt 0 ] && ucx=(--ucx_transports tcp)
"$build/bin/dsv3" cluster --model "$model" --prefill 2 --decode 2 --experts "$experts" \
  "${ucx[@]}" --kv_pool_blocks 512 --port_base "$port" --status_file "$dir/status.json" \
  --log_dir "$dir" --worker_drain_timeout 2s >"$dir/cluster.out" 2>&1 &
cluster=$!
for _ in $(seq 1 1200); do [ -s "$dir/status.json" ] && break; sleep 0.5; done
[ -s "$dir/status.json" ] || { echo "cluster did not start"; cat "$dir/cluster.out"; exit 1; }
router_pid="$(python3 -c 'import json,sys; print([p["pid"] for p in json.load(open(sys.argv[1])) if p["role"]=="router"][0])' "$dir/status.json")"
# role pid grpc http, one worker a line (the pid changes when a worker is restarted)
python3 -c '
import json, sys
for p in json.load(open(sys.argv[1])):
    if p["role"] != "router": print(p["role"], p["pid"], p["grpc"], p["http"])' \
  "$dir/status.json" >"$dir/workers.txt"
restarted=()
cleanup() {
  for pid in "${restarted[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  kill -INT "$cluster" 2>/dev/null || true
  wait "$cluster" 2>/dev/null || true
}
trap cleanup EXIT

metrics() { curl -s --max-time 2 "http://127.0.0.1:$((port + 1))/metrics" || true; }
# The router's request counters each second: time, ok, errors, deadline_exceeded, migrations.
(
  while true; do
    metrics | python3 -c '
import sys, time
ok = err = hung = mig = 0.0
for line in sys.stdin:
    if line.startswith("dsv3_requests_total{"):
        v = float(line.rsplit(" ", 1)[1])
        if "status=\"ok\"" in line: ok += v
        else: err += v
        if "deadline_exceeded" in line: hung += v
    elif line.startswith("dsv3_request_migrations_total{"):
        mig += float(line.rsplit(" ", 1)[1])
print(f"{time.time():.3f} {ok:.0f} {err:.0f} {hung:.0f} {mig:.0f}")' >>"$dir/timeline.txt"
    sleep 1
  done
) &
scraper=$!

duration=$((minutes * 60 + 20))
"$build/bin/dsv3" bench --router "127.0.0.1:$port" --bench_concurrency "${CONCURRENCY:-8}" \
  --bench_duration "$duration" --bench_prompt_tokens "${PROMPT:-256}" \
  --bench_output_tokens "${OUTPUT:-64}" --timeout_s 60 --bench_json "$dir/bench.json" \
  >"$dir/bench.out" 2>&1 &
bench=$!

end=$(($(date +%s) + minutes * 60))
sleep 10
while [ "$(date +%s)" -lt "$end" ]; do
  mapfile -t lines <"$dir/workers.txt"
  victim="${lines[RANDOM % ${#lines[@]}]}"
  read -r role pid grpc http <<<"$victim"
  if [ $((RANDOM % 2)) -eq 0 ]; then
    mapfile -d '' argv <"/proc/$pid/cmdline"
    echo "$(date +%s.%N) kill $role $grpc" | tee -a "$dir/faults.txt"
    kill -9 "$pid"
    sleep 3
    "${argv[@]}" >>"$dir/restart-$role-${grpc##*:}.log" 2>&1 &
    new=$!
    restarted+=("$new")
    sed -i "s/^$role $pid /$role $new /" "$dir/workers.txt"
  else
    echo "$(date +%s.%N) stop $role $grpc" | tee -a "$dir/faults.txt"
    kill -STOP "$pid"; sleep 3; kill -CONT "$pid"
  fi
  sleep $((3 + RANDOM % 7))
done
wait "$bench" || true
sleep 5  # the last requests' blocks come back
router_alive=yes; kill -0 "$router_pid" 2>/dev/null || router_alive=no
metrics >"$dir/final-metrics.txt"
kill "$scraper" 2>/dev/null || true
used=0
while read -r role pid grpc http; do
  [ "$role" = decode ] || continue
  n="$(curl -s --max-time 2 "http://$http/metrics" | awk '/^dsv3_kv_cache_used_blocks\{/ {print $2}')"
  echo "decode $grpc: ${n:-unreachable} KV blocks in use after the run"
  used=$((used + ${n%.*}))
done <"$dir/workers.txt"
python3 - "$dir" "$router_alive" "$used" <<'PY'
import json, sys
d, router_alive, used = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = json.load(open(d + "/bench.json"))
timeline = [list(map(float, l.split())) for l in open(d + "/timeline.txt") if l.strip()]
faults = [(float(l.split()[0]), " ".join(l.split()[1:])) for l in open(d + "/faults.txt")]
mig = {}
for line in open(d + "/final-metrics.txt"):
    if line.startswith("dsv3_request_migrations_total{"):
        reason = line.split('reason="')[1].split('"')[0]
        mig[reason] = mig.get(reason, 0) + float(line.rsplit(" ", 1)[1])
print(f"requests: {b['requests']} sent, {b['completed']} completed, {b['errors']} failed "
      f"{dict(b['errors_by_code'])}")
print(f"migrated: {dict((k, int(v)) for k, v in mig.items())}")
hung = int(timeline[-1][3]) if timeline else -1
print(f"hung (ended by their deadline): {hung}   router alive: {router_alive}   "
      f"KV blocks in use after the run: {used}")
print(f"output {b['output_token_throughput']:.1f} tok/s, TTFT p50/p99 {b['ttft_ms']['p50']:.0f}/"
      f"{b['ttft_ms']['p99']:.0f} ms, ITL p99 {b['itl_ms']['p99']:.0f} ms")
# Per fault: from the fault to the last second whose error count grew, before the next fault.
for i, (t, what) in enumerate(faults):
    nxt = faults[i + 1][0] if i + 1 < len(faults) else float("inf")
    window = [r for r in timeline if t - 1 <= r[0] < nxt]
    last_growth = None
    for a, c in zip(window, window[1:]):
        if c[2] > a[2]: last_growth = c[0]
    rec = "no errors" if last_growth is None else f"errors stopped {last_growth - t:.1f} s after"
    print(f"  {what:40s} {rec}")
PY
