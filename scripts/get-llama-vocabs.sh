#!/usr/bin/env bash
# Fetch llama.cpp's own tokenizer test vocabularies: vocab-only GGUF files written by llama.cpp's
# converter from the real Hugging Face tokenizers (Llama 2 SentencePiece, Llama 3, Qwen2, Qwen3.5,
# GPT-2, StarCoder), each with the test strings (`.inp`) and the ids the original tokenizer
# gives them (`.out`). They ship in PyPI's llama-cpp-python source archive (vendor/llama.cpp/models);
# only network use: `pip download` from PyPI, checked against a pinned sha256.
# Usage: scripts/get-llama-vocabs.sh DEST -> DEST/llama-vocabs/ggml-vocab-*.gguf{,.inp,.out}
# Idempotent: does nothing when DEST/llama-vocabs/.complete exists.
set -euo pipefail
dest="${1:?usage: scripts/get-llama-vocabs.sh DEST}"
out="$dest/llama-vocabs"
version=0.3.36
sha256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
vocabs="llama-spm llama-bpe qwen2 qwen35 gpt-2 starcoder"
if [ -f "$out/.complete" ]; then
    echo "get-llama-vocabs: $out already present"
    exit 0
fi
mkdir -p "$dest"
tmp="$(mktemp -d "$dest/.download.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
if python3 -m pip --version >/dev/null 2>&1; then
    pip=(python3 -m pip)
else
    python3 -m venv "$tmp/venv"
    pip=("$tmp/venv/bin/pip")
fi
# --no-binary for this package only: the source archive, not a wheel (no build happens).
"${pip[@]}" download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$version" -d "$tmp" >&2
archive="$tmp/llama_cpp_python-$version.tar.gz"
echo "$sha256  $archive" | sha256sum -c --quiet -
members=()
for v in $vocabs; do
    for ext in "" .inp .out; do
        members+=("llama_cpp_python-$version/vendor/llama.cpp/models/ggml-vocab-$v.gguf$ext")
    done
done
tar -xzf "$archive" -C "$tmp" "${members[@]}"
mkdir -p "$tmp/out"
mv "$tmp/llama_cpp_python-$version/vendor/llama.cpp/models/"ggml-vocab-* "$tmp/out/"
touch "$tmp/out/.complete"
rm -rf "$out"
mv "$tmp/out" "$out"
echo "get-llama-vocabs: $out ($vocabs)"
