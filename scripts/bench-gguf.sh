#!/usr/bin/env bash
# Cria and llama.cpp side by side on the very same GGUF files: a synthetic model with real
# shapes (default TinyLlama-1.1B, random weights) converted to an F16 GGUF by llama.cpp's own
# convert_hf_to_gguf.py (with the real Llama-2 tokenizer of scripts/get-test-assets.sh), then
# requantized by `cria quantize` into each FILE_TYPE (the files llama-quantize would write), and
# each file run by `cria bench` (with the adapter's copy bandwidth, or on the CPU device the
# memory read rate, measured in the same run) and by llama.cpp's `llama-bench` (CPU, all cores),
# at each prompt length; then transformers (PyTorch, f32 on the CPU, same thread count) on the
# F16 checkpoint the GGUFs were made from. Prints Markdown tables for docs/BENCHMARKS.md.
#
#   CRIA_LLAMA_CPP=DIR [CRIA_DEVICE=gpu|cpu] bash scripts/bench-gguf.sh [MODEL] [PROMPT_LENS] [GEN_LEN] [FILE_TYPES]
#
# PROMPT_LENS: one length or several ("32 128"). Cria and transformers decode GEN_LEN tokens
# after the prompt; llama-bench's decode test (-n) starts from an empty context.
#
# DIR: a llama.cpp tree with build/bin/llama-bench (PyPI's llama-cpp-python source archive,
# built as RECIPES section 8 says; never in CI). FILE_TYPES default "f16 q8_0 q4_0 q4_k_m q6_k".
# Needs a GPU adapter (lavapipe: scripts/setup-lavapipe.sh), the venv of scripts/py-env.sh
# (CRIA_VENV, default .venv) and CRIA_LLAMA_TOKENIZER (scripts/get-test-assets.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-tinyllama-1.1b}
prompt_lens=${2:-32}
gen_len=${3:-8}
types=${4:-f16 q8_0 q4_0 q4_k_m q6_k}
device=${CRIA_DEVICE:-gpu}
llama=${CRIA_LLAMA_CPP:?set CRIA_LLAMA_CPP to a llama.cpp tree with build/bin/llama-bench}
tokenizer=${CRIA_LLAMA_TOKENIZER:?run eval "\$(scripts/get-test-assets.sh DEST)"}
venv=${CRIA_VENV:-.venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}
cargo build -q --release -p cria-cli
cria="$CARGO_TARGET_DIR/release/cria"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cria" quantize --synthetic "$model" --to f16 --out "$work/hf" 2>/dev/null
cp "$tokenizer" "$(dirname "$tokenizer")/tokenizer_config.json" "$work/hf/"
# The converter's Llama path wants sentencepiece's tokenizer.model first; without it (and
# without the package) it reads tokenizer.json, as for any HF Llama with only that file.
cat > "$work/convert.py" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import convert_hf_to_gguf as c
import conversion.base
def no_sentencepiece_model(self):
    raise FileNotFoundError("tokenizer.model")
conversion.base.TextModel._set_vocab_sentencepiece = no_sentencepiece_model
sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[2:]
c.main()
PY
PYTHONPATH="$llama/gguf-py" "$venv/bin/python" "$work/convert.py" "$llama" "$work/hf" --outtype f16 --outfile "$work/f16.gguf" >/dev/null 2>&1
for t in $types; do
  if [ "$t" != f16 ]; then "$cria" quantize --model "$work/f16.gguf" --to "$t" --out "$work/$t.gguf" 2>/dev/null; fi
done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "command: CRIA_LLAMA_CPP=... CRIA_DEVICE=$device bash scripts/bench-gguf.sh $model \"$prompt_lens\" $gen_len \"$types\" (commit $(git rev-parse --short HEAD))"
for prompt_len in $prompt_lens; do
echo
echo "prompt $prompt_len, $gen_len generated:"
echo
echo "| file type | file | Cria prefill tok/s | Cria decode tok/s | achieved GB/s | ceiling GB/s (same run) | ratio to ceiling | llama.cpp prefill tok/s | llama.cpp decode tok/s | Cria / llama.cpp prefill | Cria / llama.cpp decode |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for t in $types; do
  file="$work/f16.gguf"
  if [ "$t" != f16 ]; then file="$work/$t.gguf"; fi
  cria_json=$("$cria" bench --device "$device" --model "$file" --prompt-len "$prompt_len" --gen-len "$gen_len" --json)
  peer_json=$("$llama/build/bin/llama-bench" -m "$file" -t "$(nproc)" -p "$prompt_len" -n "$gen_len" -r 1 -o json 2>/dev/null)
  python3 - "$t" "$(stat -c %s "$file")" "$cria_json" "$peer_json" <<'PY'
import json, sys
t, size, r, peer = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
pp = next(x["avg_ts"] for x in peer if x["n_prompt"] > 0)
tg = next(x["avg_ts"] for x in peer if x["n_gen"] > 0)
print(f"| {t} | {size / 2**20:.0f} MiB | {r['prefill_tokens_per_s']:.2f} | {r['decode_tokens_per_s']:.3f} | {r['achieved_gb_per_s']:.3f} | "
      f"{r['copy_gb_per_s']:.2f} | {100 * r['ratio_to_copy']:.1f}% | {pp:.2f} | {tg:.2f} | {r['prefill_tokens_per_s'] / pp:.3f} | {r['decode_tokens_per_s'] / tg:.3f} |")
PY
done
# transformers on the F16 checkpoint, in f32 (PyTorch's CPU kernels have no fast f16 matmul).
peer=$("$venv/bin/python" scripts/bench-peer.py "$work/hf" --prompt-len "$prompt_len" --gen-len "$gen_len" --threads "$(nproc)" --dtype float32 2>/dev/null)
python3 - "$peer" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"| transformers (f32) | | {r['prefill_tokens_per_s']:.2f} | {r['decode_tokens_per_s']:.3f} | | | | | | | |")
PY
done
echo
echo "Cria: $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["adapter"])' "$cria_json"); llama.cpp: CPU backend, $(nproc) threads, llama-bench -r 1; $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["peer"])' "$peer")."
