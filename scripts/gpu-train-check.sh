#!/usr/bin/env bash
# GPU check of the CUDA trainer on a single NVIDIA H200 machine that reaches no package
# registry (the lent device machine): kernel parity tests, 50 training steps of a stories15M-
# sized and a TinyLlama-1.1B config (real shapes, random tokens) with tokens/s and MFU, the same
# configs in PyTorch (torch.compile + SDPA, bf16 autocast) for a side-by-side ratio, and the
# launcher through NCCL at world size = the machine's GPU count. One call, a few minutes.
#
# Here (a CPU machine with registry access), once:
#   bash scripts/gpu-train-check.sh prepare   # release cria-train + parity test binary into .gpu-train/
# There (device tool: carry [".gpu-train"]):
#   bash scripts/gpu-train-check.sh run       # writes $OUT/gpu-train.jsonl and $OUT/gpu-train.md
# Smoke test without a GPU: CRIA_GPU_TRAIN_STOP_AFTER_PARITY=1 bash scripts/gpu-train-check.sh run
# (the parity tests then skip with a message and the script stops before the training runs).
# Env: CRIA_GPU_TRAIN_STEPS (default 50), CRIA_GPU_TRAIN_MODELS (default "stories15m tinyllama-1.1b"),
#      CRIA_PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.gpu-train

prepare() {
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target-cuda}
  cargo build -q --release -p cria-train --bin cria-train
  # The parity tests as a standalone binary (cargo prints its path in the JSON messages).
  test_bin=$(cargo test -q --release -p cria-train --test cuda_parity --no-run --message-format=json \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "cuda_parity" and m.get("executable"):
        print(m["executable"])' | tail -1)
  mkdir -p "$dir"
  cp "$CARGO_TARGET_DIR/release/cria-train" "$dir/cria-train"
  cp "$test_bin" "$dir/cuda_parity"
  du -sh "$dir"/*
}

# name vocab hidden intermediate layers heads kv_heads tie batch seq
shape() {
  case "$1" in
    stories15m) echo "stories15m 32000 288 768 6 6 6 tie 32 256" ;;
    tinyllama-1.1b) echo "tinyllama-1.1b 32000 2048 5632 22 32 4 untied 8 2048" ;;
    *) echo "unknown model $1" >&2; exit 2 ;;
  esac
}

run() {
  out=${OUT:-/tmp/gpu-train-out}
  mkdir -p "$out"
  log="$out/gpu-train.jsonl"
  : > "$log"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"
  # The machine's own NVRTC (CUDA toolkit), cuBLAS and NCCL: PyTorch's wheels ship them too.
  py=${CRIA_PYTHON:-python3}
  extra=$($py - <<'PY' 2>/dev/null || true
import glob, os, site
dirs = set()
for sp in site.getsitepackages():
    for pat in ("nvidia/*/lib", "torch/lib"):
        dirs.update(glob.glob(os.path.join(sp, pat)))
print(":".join(sorted(dirs)))
PY
)
  export LD_LIBRARY_PATH="/usr/local/cuda/lib64${extra:+:$extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # cudarc dlopens "libnccl.so" (and .so.1/.10/.11/.12), never "libnccl.so.2", the only name
  # PyTorch's nvidia-nccl-cu12 wheel ships: without this link, world size > 1 reports NCCL missing.
  nccl_shim=/tmp/cria-nccl-shim
  for d in ${LD_LIBRARY_PATH//:/ }; do
    if [ -e "$d/libnccl.so" ]; then break; fi
    if [ -e "$d/libnccl.so.2" ]; then
      mkdir -p "$nccl_shim" && ln -sf "$d/libnccl.so.2" "$nccl_shim/libnccl.so"
      export LD_LIBRARY_PATH="$nccl_shim:$LD_LIBRARY_PATH"
      break
    fi
  done
  echo "== kernel parity (--include-ignored)"
  # On the GPU machine a missing GPU is a failure; the no-GPU smoke test lets the tests skip.
  require=1
  [ "${CRIA_GPU_TRAIN_STOP_AFTER_PARITY:-0}" = 1 ] && require=0
  CRIA_REQUIRE_CUDA=$require CRIA_TEST_SEED=${CRIA_TEST_SEED:-1234} "$dir/cuda_parity" --include-ignored --nocapture --test-threads 1 2>&1 | tee "$out/parity.log"
  if [ "${CRIA_GPU_TRAIN_STOP_AFTER_PARITY:-0}" = 1 ]; then
    echo "gpu-train-check: stopping after the parity tests (CRIA_GPU_TRAIN_STOP_AFTER_PARITY=1)"
    return 0
  fi
  steps=${CRIA_GPU_TRAIN_STEPS:-50}
  for m in ${CRIA_GPU_TRAIN_MODELS:-stories15m tinyllama-1.1b}; do
    read -r name vocab c i l h kvh tie b t <<< "$(shape "$m")"
    echo "== cria-train $name ($b x $t tokens/step, $steps steps)"
    "$dir/cria-train" train --device cuda --synthetic-vocab "$vocab" --out "/tmp/gpu-train-$name" \
      --hidden-size "$c" --intermediate-size "$i" --layers "$l" --heads "$h" --kv-heads "$kvh" \
      --tie-embeddings "$([ "$tie" = tie ] && echo true || echo false)" --max-position-embeddings "$t" \
      --batch-size "$b" --seq-len "$t" --steps "$steps" --val-every 0 --val-batches 1 --checkpoint-every 0 \
      --lr 3e-4 --warmup-steps 5 2>&1 | tee "$out/cria-$name.log"
    grep '^{' "$out/cria-$name.log" | tail -1 | $py -c "import json,sys; r=json.load(sys.stdin); r['model']='$name'; r['runtime']='cria-train'; print(json.dumps(r))" >> "$log"
    rm -rf "/tmp/gpu-train-$name"
    echo "== pytorch $name"
    $py scripts/torch-train-peer.py --name "$name" --vocab "$vocab" --hidden "$c" --intermediate "$i" --layers "$l" \
      --heads "$h" --kv-heads "$kvh" $([ "$tie" = tie ] && echo --tie) --batch "$b" --seq "$t" --steps "$steps" | tee -a "$log"
  done
  ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
  echo "== launcher through NCCL at world size $ngpu"
  read -r name vocab c i l h kvh tie b t <<< "$(shape stories15m)"
  "$dir/cria-train" launch --nproc "$ngpu" -- train --device cuda --synthetic-vocab "$vocab" --out /tmp/gpu-train-dp \
    --hidden-size "$c" --intermediate-size "$i" --layers "$l" --heads "$h" --kv-heads "$kvh" --tie-embeddings true \
    --max-position-embeddings "$t" --batch-size "$b" --seq-len "$t" --steps 20 --val-every 0 --val-batches 1 \
    --checkpoint-every 0 --lr 3e-4 --warmup-steps 5 2>&1 | tee "$out/launch.log"
  grep '\[rank 0\] {' "$out/launch.log" | tail -1 | sed 's/^\[rank 0\] //' \
    | $py -c "import json,sys; r=json.load(sys.stdin); r['model']='stories15m'; r['runtime']='cria-train launch x$ngpu'; print(json.dumps(r))" >> "$log"
  $py - "$log" > "$out/gpu-train.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
peer = {r["model"]: r for r in rows if "peer" in r}
print("| model | runtime | device | GPUs | tokens/s | MFU | vs PyTorch |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    if "peer" in r:
        print(f"| {r['model']} | {r['peer']} | {r['device']} | 1 | {r['tokens_per_s']:.0f} | | 1.00 |")
        continue
    p = peer.get(r["model"])
    ratio = f"{r['tokens_per_s'] / p['tokens_per_s']:.2f}" if p and r["world_size"] == 1 else ""
    mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else ""
    print(f"| {r['model']} | {r['runtime']} | {r['device']} | {r['world_size']} | {r['tokens_per_s']:.0f} | {mfu} | {ratio} |")
PY
  cat "$out/gpu-train.md"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash scripts/gpu-train-check.sh prepare|run" >&2; exit 2 ;;
esac
