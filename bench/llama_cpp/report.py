"""The table of bench/llama_cpp_peer_bench.sh from the raw outputs in one results directory.

usage: python3 report.py OUT_DIR"""

import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]
PAIRS = [("auto", "bf16", "BF16 / BF16"), ("bf16-split", "bf16", "BF16, split activations / BF16"),
         ("int8", "q8_0", "int8 / Q8_0"), ("int4", "q4_0", "int4 / Q4_0")]


def load(path):
    with open(path) as f:
        return json.load(f)


def runs(pattern):
    return sorted(glob.glob(os.path.join(out, pattern)))


def ours(fmt, key):
    return [load(p)[key] for p in runs(f"ours-{fmt}-[0-9]*.json")]


def llama_bench(q, kind):
    vals = []
    for p in runs(f"llama-{q}-{kind}-[0-9]*.json"):
        if "triad" in p:
            continue
        for r in load(p):
            vals.append(r["avg_ts"])
    return vals


def llama_batched(q, pl):
    vals = []
    for p in runs(f"llama-{q}-batched-*.jsonl"):
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    r = json.loads(line)
                    if r.get("pl") == pl:
                        vals.append(r["speed_tg"])
    return vals


def fmt3(v):
    if not v:
        return "-"
    return f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"


def ratio(a, b):
    return f"{statistics.median(a) / statistics.median(b):.2f}x" if a and b else "-"


ceil = {k: load(os.path.join(out, f"ceilings-{k}.json")) for k in ("start", "end")
        if os.path.exists(os.path.join(out, f"ceilings-{k}.json"))}
stream = [c["stream_triad_gb_s"] for c in ceil.values() if "stream_triad_gb_s" in c]
print(f"# Peer bench: dsv3 engine vs llama.cpp, {out}\n")
# Threads and runs from the first pair the run measured (PAIRS may leave out BF16).
first = next((f for f, _, _ in PAIRS if runs(f"ours-{f}-[0-9]*.json")), None)
first_runs = runs(f"ours-{first}-[0-9]*.json") if first else []
threads = load(first_runs[0]).get("threads", "?") if first_runs else "?"
if os.path.exists(os.path.join(out, "cpu.txt")):
    print(f"CPU: {open(os.path.join(out, 'cpu.txt')).read().strip()}\n")
print(f"STREAM triad (start, end of the run): {', '.join(f'{s:.1f}' for s in stream)} GB/s; "
      f"threads: {threads}; runs: {len(first_runs)}; "
      "figures: median (min-max) tokens/s\n")
print("| weights (ours / llama.cpp) | figure | ours | llama.cpp | ours / llama.cpp |")
print("|---|---|---:|---:|---:|")
for fmt, q, label in PAIRS:
    if not runs(f"ours-{fmt}-[0-9]*.json"):
        continue  # not in this run's PAIRS
    rows = [
        ("decode batch 1", ours(fmt, "decode_b1_tok_s"), llama_bench(q, "tg")),
        ("decode batch 8", ours(fmt, "decode_b8_tok_s"), llama_batched(q, 8)),
        ("decode batch 32", ours(fmt, "decode_b32_tok_s"), llama_batched(q, 32)),
        ("prefill 512", ours(fmt, "prefill_512_tok_s"), llama_bench(q, "pp")),
    ]
    for name, a, b in rows:
        print(f"| {label} | {name} | {fmt3(a)} | {fmt3(b)} | {ratio(a, b)} |")
print()
if stream:
    bw = statistics.median(stream) * 1e9
    print("Batch-1 decode against the STREAM roofline (weight bytes a token reads / bandwidth):\n")
    print("| weights | MB a token reads (ours) | ours % of roofline |")
    print("|---|---:|---:|")
    for fmt, q, label in PAIRS:
        files = runs(f"ours-{fmt}-[0-9]*.json")
        if not files:
            continue
        tb = load(files[0])["decode_token_weight_bytes"]
        b1 = ours(fmt, "decode_b1_tok_s")
        print(f"| {label.split(' / ')[0]} | {tb / 1e6:.1f} | {100 * statistics.median(b1) * tb / bw:.0f}% |")
    print()
beside = []  # (label, MB, ours shares, llama.cpp shares) against the triads measured beside
for fmt, q, label in PAIRS:
    files = [p for p in runs(f"ours-{fmt}-[0-9]*.json") if "decode_b1_triad_beside_gb_s" in load(p)]
    if not files:
        continue
    tb = load(files[0])["decode_token_weight_bytes"]
    mine = [load(p)["decode_b1_roofline_share_beside"] for p in files]
    theirs = []
    for p in runs(f"llama-{q}-tg-[0-9]*.json"):
        if "triad" in p:
            continue
        pair = [p[:-len(".json")] + f"-triad-{w}.json" for w in ("before", "after")]
        if not all(os.path.exists(t) for t in pair):
            continue
        triad = statistics.mean(load(t)["stream_triad_gb_s"] for t in pair) * 1e9
        theirs += [r["avg_ts"] * tb / triad for r in load(p)]
    beside.append((label, tb, mine, theirs))
if beside:
    print("Batch-1 decode against the STREAM triad measured right before and after each figure "
          "(llama.cpp at ours' bytes a token: equal formats; its Q6_K head is 1% larger than "
          "ours): median (min-max) % of that roofline:\n")
    print("| weights (ours / llama.cpp) | MB a token reads | ours | llama.cpp |")
    print("|---|---:|---:|---:|")
    def pct(v):
        if not v:
            return "-"
        v = [100 * x for x in v]
        return f"{statistics.median(v):.0f}% ({min(v):.0f}-{max(v):.0f})"

    for label, tb, mine, theirs in beside:
        print(f"| {label} | {tb / 1e6:.1f} | {pct(mine)} | {pct(theirs)} |")
    print()
kl_rows = []
for fmt, q in (("int8", "q8_0"), ("int4", "q4_0")):
    p = os.path.join(out, f"ours-kl-{fmt}.json")
    lp = os.path.join(out, f"llama-kl-{q}.log")
    if not (os.path.exists(p) and os.path.exists(lp)):
        continue
    o = load(p)
    text = open(lp).read()
    m = re.search(r"Mean\s+KLD:\s+([0-9.eE+-]+)", text)
    t = re.search(r"Same top p:\s+([0-9.]+)", text)
    dp = os.path.join(out, f"ours-kl-{fmt}-decode.json")
    d = load(dp) if os.path.exists(dp) else None
    kl_rows.append((fmt, q, o, d, float(m.group(1)) if m else None, float(t.group(1)) if t else None))
if kl_rows:
    print("KL divergence from BF16 of the next-token distribution (second half of 512-token "
          "chunks of the same text). Ours as a prefill (int8 activations, or, where the CPU "
          "has AVX512_BF16, activations and weights rounded to bf16: int4 above 24 rows, int8 "
          "above 32) and 16 tokens at a time (the decode kernels: int8 activations):\n")
    print("| ours | mean KL prefill | mean KL decode | same top token (decode) | llama.cpp | mean KL | same top token |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for fmt, q, o, d, lk, lt in kl_rows:
        lks = f"{lk:.6f}" if lk is not None else "-"
        lts = f"{lt:.2f}%" if lt is not None else "-"
        dk = f"{d['mean_kl']:.6f}" if d else "-"
        dt = f"{100 * d['same_top_token']:.2f}%" if d else "-"
        print(f"| {fmt} | {o['mean_kl']:.6f} | {dk} | {dt} | {q.upper()} | {lks} | {lts} |")
    p = os.path.join(out, "ours-kl-bf16-act.json")
    dp = os.path.join(out, "ours-kl-bf16-act-decode.json")
    if os.path.exists(p) and os.path.exists(dp):
        o, d = load(p), load(dp)
        print(f"| BF16, rounded activations (vs split) | {o['mean_kl']:.6f} | {d['mean_kl']:.6f} | "
              f"{100 * d['same_top_token']:.2f}% | - | - | - |")
