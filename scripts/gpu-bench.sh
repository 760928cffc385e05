#!/usr/bin/env bash
# GPU check for a single NVIDIA H200 machine that reaches no package registry (the lent device
# machine): Cria's decode/prefill bench through Vulkan on synthetic models with real shapes, in
# f16, q8_0 and q4_0 (converted at load) and q4_k and q6_k (random K-quant blocks, as a GGUF
# file holds them), each against the copy ceiling measured in the same run, and PyTorch
# transformers on CUDA with the very same weights for a side-by-side ratio. One call, a few
# minutes.
#
# Here (a CPU machine with registry access), once:
#   bash scripts/gpu-bench.sh prepare     # release binary into .gpu/, Vulkan loader debs into .gl/
# There (device tool: carry [".gpu", ".gl"]):
#   bash scripts/gpu-bench.sh run         # writes $OUT/gpu-bench.jsonl and $OUT/gpu-bench.md
# A smoke test anywhere: CRIA_GPU_BENCH_MODELS=stories15m CRIA_GPU_BENCH_LEN=8
#   CRIA_PEER_DEVICE=cpu CRIA_PYTHON=.venv/bin/python bash scripts/gpu-bench.sh run
set -euo pipefail
cd "$(dirname "$0")/.."

prepare() {
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}
  cargo build -q --release -p cria-cli
  mkdir -p .gpu .gl
  cp "$CARGO_TARGET_DIR/release/cria" .gpu/cria
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >> .git/info/exclude
  if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    mkdir -p /tmp/amd64/partial
    o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
    # shellcheck disable=SC2086
    apt-get $o update -qq
    # shellcheck disable=SC2086
    (cd .gl && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  fi
  du -sh .gpu .gl
}

run() {
  out=${OUT:-/tmp/gpu-bench-out}
  mkdir -p "$out"
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  export WGPU_BACKEND=vulkan
  [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv,noheader || true
  .gpu/cria info | head -5
  : > "$out/gpu-bench.jsonl"
  len=${CRIA_GPU_BENCH_LEN:-128}
  for model in ${CRIA_GPU_BENCH_MODELS:-tinyllama-1.1b litellama-460m stories15m}; do
    dir=/tmp/synth-$model
    .gpu/cria quantize --synthetic "$model" --to f16 --out "$dir" 2>/dev/null
    for q in f16 q8_0 q4_0; do
      .gpu/cria bench --device gpu --model "$dir" --quant "$q" --prompt-len "$len" --gen-len "$len" --json | tee -a "$out/gpu-bench.jsonl"
    done
    for q in ${CRIA_GPU_BENCH_KQUANTS:-q4_k q6_k}; do
      .gpu/cria bench --device gpu --synthetic "$model" --dtype "$q" --prompt-len "$len" --gen-len "$len" --json | tee -a "$out/gpu-bench.jsonl"
    done
    PYTHONUNBUFFERED=1 ${CRIA_PYTHON:-python3} scripts/bench-peer.py "$dir" --device "${CRIA_PEER_DEVICE:-cuda}" --dtype float16 \
      --prompt-len "$len" --gen-len "$len" | tee -a "$out/gpu-bench.jsonl"
    rm -rf "$dir"
  done
  python3 - "$out/gpu-bench.jsonl" > "$out/gpu-bench.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("| model | runtime | weights | prefill tok/s | decode tok/s | achieved GB/s | copy GB/s | ratio to copy | dispatches/token | decode vs peer |")
print("|---|---|---|---|---|---|---|---|---|---|")
# Rows name the model by its directory (/tmp/synth-NAME) or as "synthetic NAME (TYPE checkpoint)".
name = lambda r: r["model"].split("synth-")[-1] if "synth-" in r["model"] else r["model"].split()[1]
peer = {name(r): r for r in rows if "peer" in r}
for r in rows:
    if "peer" in r:
        print(f"| {r['model']} | {r['peer']} | f16 | {r['prefill_tokens_per_s']:.0f} | {r['decode_tokens_per_s']:.1f} | | | | | 1.00 |")
        continue
    p = peer.get(name(r))
    ratio = f"{r['decode_tokens_per_s'] / p['decode_tokens_per_s']:.2f}" if p else ""
    print(f"| {r['model']} | Cria on {r['adapter']} | {r['weights']} | {r['prefill_tokens_per_s']:.0f} | {r['decode_tokens_per_s']:.1f} | "
          f"{r['achieved_gb_per_s']:.0f} | {r['copy_gb_per_s']:.0f} | {100 * r['ratio_to_copy']:.1f}% | {r['dispatches_per_token']} | {ratio} |")
PY
  cat "$out/gpu-bench.md"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash scripts/gpu-bench.sh prepare|run" >&2; exit 2 ;;
esac
