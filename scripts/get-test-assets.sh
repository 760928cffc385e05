#!/usr/bin/env bash
# Fetch the tokenizer assets the runtime's tokenizer tests use (real Llama-2 and GPT-2
# vocabularies rebuilt from npm packages; llama.cpp's vocab-only GGUF test files from PyPI's
# llama-cpp-python source archive) and print the environment variables that point the tests at
# them. Idempotent; only network use is `npm pack` and `pip download`.
# Usage: scripts/get-test-assets.sh DEST
#   eval "$(scripts/get-test-assets.sh ~/.cache/cria/assets | grep '^export ')"
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:?usage: scripts/get-test-assets.sh DEST}"
mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
bash "$here/get-llama-tokenizer.sh" "$dest" >&2
bash "$here/get-gpt2-tokenizer.sh" "$dest" >&2
bash "$here/get-llama-vocabs.sh" "$dest" >&2
echo "export CRIA_LLAMA_TOKENIZER=$dest/llama2/tokenizer.json"
echo "export CRIA_GPT2_TOKENIZER=$dest/gpt2/tokenizer.json"
echo "export CRIA_LLAMA_VOCABS=$dest/llama-vocabs"
