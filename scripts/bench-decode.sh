#!/usr/bin/env bash
# Decode and prefill speed of Cria on a synthetic model with real shapes (default TinyLlama-1.1B:
# random weights, nothing downloaded), written as a CHECKPOINT (f16 or bf16) checkpoint and run
# in each of CONFIGS, each as a ratio to the adapter's copy bandwidth measured in the same run,
# with the GPU memory the model holds, and Hugging Face transformers (PyTorch, CPU) on the very
# same weights side by side. Prints a Markdown table for docs/BENCHMARKS.md.
#
#   bash scripts/bench-decode.sh [MODEL] [PROMPT_LEN] [GEN_LEN] [CHECKPOINT] [CONFIGS]
#
# CONFIGS: space-separated WEIGHTS[:KV] where WEIGHTS is `keep` (the checkpoint's own type) or a
# --quant type and KV the --kv-cache type (default f16); default "keep q8_0 q4_0". For BF16:
#   bash scripts/bench-decode.sh tinyllama-1.1b 32 8 bf16 "keep keep:f32 f32"
# (f32: BF16 widened at load, what Cria did before BF16 was a weight type.)
# MODEL: tinyllama-1.1b (default), litellama-460m or stories15m. Needs a GPU adapter (lavapipe:
# scripts/setup-lavapipe.sh) and, for the peer, the venv of scripts/py-env.sh (skipped, and said
# so, without it). Writes the synthetic model (2.2 GB for TinyLlama in f16) under a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-tinyllama-1.1b}
prompt_len=${2:-32}
gen_len=${3:-8}
checkpoint=${4:-f16}
configs=${5:-keep q8_0 q4_0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}
cargo build -q --release -p cria-cli
cria="$CARGO_TARGET_DIR/release/cria"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cria" quantize --synthetic "$model" --to "$checkpoint" --out "$work/model" 2>/dev/null

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "command: bash scripts/bench-decode.sh $model $prompt_len $gen_len $checkpoint \"$configs\" (commit $(git rev-parse --short HEAD))"
echo
echo "| runtime | weights ($checkpoint checkpoint) | KV cache | prefill tok/s | decode tok/s | weight bytes/token | achieved GB/s | copy GB/s (same run) | ratio to copy | GPU memory | dispatches/token | submits/token |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for config in $configs; do
  weights=${config%%:*}
  kv=f16
  [[ $config == *:* ]] && kv=${config#*:}
  quant=()
  [ "$weights" != keep ] && quant=(--quant "$weights")
  json=$("$cria" bench --device gpu --model "$work/model" "${quant[@]}" --kv-cache "$kv" --prompt-len "$prompt_len" --gen-len "$gen_len" --json)
  python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| Cria on {r['adapter']} | {r['weights']} | {r['kv_cache']} | {r['prefill_tokens_per_s']:.2f} | {r['decode_tokens_per_s']:.3f} | "
      f"{r['weight_bytes_per_token'] / 2**20:.0f} MiB | {r['achieved_gb_per_s']:.3f} | {r['copy_gb_per_s']:.2f} | "
      f"{100 * r['ratio_to_copy']:.1f}% | {r['memory_bytes'] / 2**20:.0f} MiB | {r['dispatches_per_token']} | {r['submits_per_token']} |")
PY
done
venv=${CRIA_VENV:-.venv}
if [ -x "$venv/bin/python" ]; then
  json=$("$venv/bin/python" scripts/bench-peer.py "$work/model" --prompt-len "$prompt_len" --gen-len "$gen_len" 2>/dev/null | tail -1)
  python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| {r['peer']} | {r.get('dtype', 'f32')} (the same weights) | | {r['prefill_tokens_per_s']:.2f} | {r['decode_tokens_per_s']:.3f} | | | | | | | |")
PY
else
  echo "(peer skipped: no venv at $venv; run scripts/py-env.sh)"
fi
