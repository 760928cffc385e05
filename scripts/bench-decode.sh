#!/usr/bin/env bash
# Decode and prefill speed of Cria on a synthetic model with real shapes (default TinyLlama-1.1B:
# random weights, nothing downloaded) in f16, q8_0 and q4_0, each as a ratio to the adapter's
# copy bandwidth measured in the same run, and Hugging Face transformers (PyTorch, CPU) on the
# very same weights side by side. Prints a Markdown table for docs/BENCHMARKS.md.
#
#   bash scripts/bench-decode.sh [MODEL] [PROMPT_LEN] [GEN_LEN]
#
# MODEL: tinyllama-1.1b (default), litellama-460m or stories15m. Needs a GPU adapter (lavapipe:
# scripts/setup-lavapipe.sh) and, for the peer, the venv of scripts/py-env.sh (skipped, and said
# so, without it). Writes the synthetic model (2.2 GB for TinyLlama in f16) under a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-tinyllama-1.1b}
prompt_len=${2:-32}
gen_len=${3:-8}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}
cargo build -q --release -p cria-cli
cria="$CARGO_TARGET_DIR/release/cria"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cria" quantize --synthetic "$model" --to f16 --out "$work/model" 2>/dev/null

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "command: bash scripts/bench-decode.sh $model $prompt_len $gen_len"
echo
echo "| runtime | weights | prefill tok/s | decode tok/s | weight bytes/token | achieved GB/s | copy GB/s (same run) | ratio to copy | dispatches/token | submits/token |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for q in f16 q8_0 q4_0; do
  json=$("$cria" bench --model "$work/model" --quant "$q" --prompt-len "$prompt_len" --gen-len "$gen_len" --json)
  python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| Cria on {r['adapter']} | {r['weights']} | {r['prefill_tokens_per_s']:.2f} | {r['decode_tokens_per_s']:.3f} | "
      f"{r['weight_bytes_per_token'] / 2**20:.0f} MiB | {r['achieved_gb_per_s']:.3f} | {r['copy_gb_per_s']:.2f} | "
      f"{100 * r['ratio_to_copy']:.1f}% | {r['dispatches_per_token']} | {r['submits_per_token']} |")
PY
done
venv=${CRIA_VENV:-.venv}
if [ -x "$venv/bin/python" ]; then
  json=$("$venv/bin/python" scripts/bench-peer.py "$work/model" --prompt-len "$prompt_len" --gen-len "$gen_len" 2>/dev/null | tail -1)
  python3 - "$json" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| {r['peer']} | f32 (from the same f16 weights) | {r['prefill_tokens_per_s']:.2f} | {r['decode_tokens_per_s']:.3f} | | | | | | |")
PY
else
  echo "(peer skipped: no venv at $venv; run scripts/py-env.sh)"
fi
