#!/usr/bin/env bash
# The CPU device on aarch64 (NEON, and the Armv8.2 byte dot product where the CPU has it), run
# under qemu's user-mode emulator (its default CPU offers FEAT_DotProd): every CPU kernel check
# (matvec for every weight type and kernel, pointwise ops, attention) against the plain-Rust
# references, then the bundled model's and the K-quant fixtures' greedy text, which must equal
# the x86-64 build's, both on the portable kernel (`CRIA_CPU_KERNEL=portable`: the same code,
# the same sums; the dot-product kernel sums in another order, and the kernel checks cover it).
# Correctness only: emulated speed means nothing.
#
#   bash scripts/check-aarch64.sh
#
# Run as root on Debian/Ubuntu the first time (apt-get installs qemu-user and the aarch64 cross
# linker; rustup adds the target).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}
target=aarch64-unknown-linux-gnu

if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-gcc >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null
fi
rustup target add "$target" >/dev/null 2>&1 || rustup target add "$target"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"

echo "CPU kernel checks on $target (qemu):"
cargo test -q --release -p cria --lib --target "$target" cpu::

cargo build -q --release -p cria-cli --target "$target"
cargo build -q --release -p cria-cli
arm="$CARGO_TARGET_DIR/$target/release/cria"
kernel=$(qemu-aarch64 -L /usr/aarch64-linux-gnu "$arm" bench --device cpu --prompt-len 4 --gen-len 2 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["adapter"])')
echo "bench on $target reports: $kernel"
case "$kernel" in *neon+dotprod*) ;; *) echo "expected the dot-product kernel under qemu, got: $kernel" >&2; exit 1 ;; esac
# The bundled model (f32 weights), then the K-quant fixtures (the 8-bit integer paths, decode
# and prefill), both builds on their portable kernel.
same_text() {
  local what=$1
  shift
  local got want
  got=$(CRIA_CPU_KERNEL=portable qemu-aarch64 -L /usr/aarch64-linux-gnu "$arm" generate --device cpu --max-tokens 32 --temperature 0 "$@" 2>/dev/null)
  want=$(CRIA_CPU_KERNEL=portable "$CARGO_TARGET_DIR/release/cria" generate --device cpu --max-tokens 32 --temperature 0 "$@" 2>/dev/null)
  if [ "$got" != "$want" ]; then
    printf '%s: aarch64 text differs from x86-64:\n--- aarch64\n%s\n--- x86-64\n%s\n' "$what" "$got" "$want" >&2
    exit 1
  fi
  echo "$what on $target: the x86-64 build's greedy text (${#got} characters)"
}
same_text "bundled model" --prompt "ROMEO:"
prompt=$(python3 -c 'import json; print(json.load(open("tests/fixtures/kquant/golden.json"))["prompt"])')
for f in tests/fixtures/kquant/*.gguf; do
  same_text "$(basename "$f")" --model "$f" --prompt "$prompt" --repetition-penalty 1
done
