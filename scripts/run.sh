#!/usr/bin/env bash
# Sets up, builds and runs the dsv3-serve cluster on this machine: a router, one prefill and
# one decode worker on 127.0.0.1, serving an embedded default model (a synthetic
# DeepSeek-V3-architecture checkpoint with the real DeepSeek-V3 tokenizer) unless --model
# names a real checkpoint directory. Ctrl-C stops every process it started.
# A cold first run takes about 10 minutes on 2 cores; each phase says how long it took.
#
#   scripts/run.sh                              # the default model
#   scripts/run.sh --model /models/DeepSeek-V3  # a real checkpoint (HF layout)
#   scripts/run.sh --prefill 2 --decode 2       # any `dsv3 cluster` flag
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${DSV3_CACHE_DIR:-$HOME/.cache/dsv3}"
source "$root/scripts/phase.sh"

phase_begin "installing dependencies (apt, npm)"
"$root/scripts/install-deps.sh"
phase_begin "building the binaries into build/bin"
"$root/scripts/build.sh" "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSV3_CUDA=AUTO \
  --target dsv3 --target dsv3-router --target dsv3-prefill --target dsv3-decode \
  --target dsv3-expert

args=("$@")
if [[ " $* " != *" --model"* ]]; then
  model="$cache/models/demo-v3"
  if [ ! -f "$model/config.json" ] || [ ! -f "$model/tokenizer.json" ]; then
    phase_begin "making the default model in $model"
    rm -rf "$model.tmp" && mkdir -p "$(dirname "$model")"
    "$root/build/bin/dsv3" make-model --preset demo --dtype bf16 --mtp 1 --seed 1 \
      --out "$model.tmp" --tokenizer "${DSV3_TOKENIZER_DIR:-$cache/deepseek-v3-tokenizer}"
    rm -rf "$model" && mv "$model.tmp" "$model"
  fi
  args=(--model "$model" "${args[@]}")
fi
phase_summary
echo "== [run] starting the cluster (dsv3 cluster): workers load the model, then it prints how to talk to it"
exec "$root/build/bin/dsv3" cluster --status-file "$cache/cluster-status.json" "${args[@]}"
