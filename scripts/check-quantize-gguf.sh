#!/usr/bin/env bash
# `cria quantize` writes GGUF that the llama.cpp ecosystem reads: requantizes the committed
# Q4_K_M fixture to other file types, generates from each with `cria generate`, and has
# tests/fixtures/check_quantized_gguf.py read the file with the `gguf` package and transformers.
# Usage: scripts/check-quantize-gguf.sh PYTHON   (a python with gguf, torch, transformers:
# the venv of scripts/py-env.sh). Needs a GPU adapter (lavapipe is fine).
set -euo pipefail
export TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
cd "$(dirname "$0")/.."
python="${1:?usage: scripts/check-quantize-gguf.sh PYTHON}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
src=tests/fixtures/kquant/kquant-mini-q4_k_m.gguf
prompt="$("$python" -c 'import json; print(json.load(open("tests/fixtures/kquant/golden.json"))["prompt"])')"
cargo build -q -p cria-cli
cria="${CARGO_TARGET_DIR:-target}/debug/cria"
for t in q5_k_m q4_0 q6_k; do
    "$cria" quantize --model "$src" --to "$t" --out "$tmp/$t.gguf" 2>"$tmp/$t.quantize.log" || { cat "$tmp/$t.quantize.log"; exit 1; }
    "$cria" generate --device gpu --model "$tmp/$t.gguf" --prompt "$prompt" --max-tokens 16 --temperature 0 --print-ids >/dev/null 2>"$tmp/$t.log" || { cat "$tmp/$t.log"; exit 1; }
    "$python" tests/fixtures/check_quantized_gguf.py "$tmp/$t.gguf" "$t" "$tmp/$t.log"
done
