#!/usr/bin/env bash
# Builds the npm package `cria` in web/pkg: cargo (wasm32, release) -> wasm-bindgen --target web
# -> wasm-opt -Oz from npm `binaryen` (Debian's wasm-opt 108 silently breaks the module;
# wasm-pack cannot run here, it downloads its tools) into web/pkg/dist/, and the bundled model
# (models/shakespeare) with a manifest of sizes and sha256 into web/pkg/models/shakespeare/.
# Prints the module's size raw and gzipped. The package's JS (web/pkg/src) is written by hand.
#
#   bash scripts/build-web.sh
#
# Needs the wasm32 target and wasm-bindgen-cli at the Cargo.lock version (scripts/test-web.sh
# installs both) and npm (web/package.json's tools are installed under web/node_modules).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}
export PATH="$HOME/.cargo/bin:$PATH"

cargo build -q --release -p cria-web --target wasm32-unknown-unknown
out=web/pkg/dist
rm -rf "$out"
mkdir -p "$out"
wasm-bindgen --target web --out-dir "$out" "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/cria_web.wasm"
if [ ! -x web/node_modules/.bin/wasm-opt ]; then
  (cd web && npm ci --no-audit --no-fund --silent)
fi
raw=$(stat -c %s "$out/cria_web_bg.wasm")
web/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-simd "$out/cria_web_bg.wasm" -o "$out/cria_web_bg.opt.wasm"
mv "$out/cria_web_bg.opt.wasm" "$out/cria_web_bg.wasm"
opt=$(stat -c %s "$out/cria_web_bg.wasm")
gz=$(gzip -9 -c "$out/cria_web_bg.wasm" | wc -c)
echo "build-web: $out/cria_web_bg.wasm: after wasm-bindgen $raw bytes; after wasm-opt -Oz $opt bytes; gzipped $gz bytes"
# The optimized module must still validate and instantiate (Debian's wasm-opt 108 broke
# instantiation: "WebAssembly.Table.set(): Argument 1 is invalid").
node --input-type=module -e "
import { readFileSync } from 'node:fs';
const dir = process.cwd() + '/$out/';
const mod = await import(dir + 'cria_web.js');
const bytes = readFileSync(dir + 'cria_web_bg.wasm');
if (!WebAssembly.validate(bytes)) throw new Error('cria_web_bg.wasm does not validate');
mod.initSync({ module: bytes });
if (typeof mod.Engine !== 'function') throw new Error('no Engine export');
console.log('build-web: the optimized module instantiates (Node ' + process.version + ')');
"

# The bundled model, served next to the module; the manifest lets the loader verify downloads.
models=web/pkg/models/shakespeare
rm -rf web/pkg/models
mkdir -p "$models"
files=(config.json generation_config.json tokenizer.json tokenizer_config.json model.safetensors)
entries=()
for f in "${files[@]}"; do
  cp "models/shakespeare/$f" "$models/$f"
  entries+=("\"$f\": { \"size\": $(stat -c %s "$models/$f"), \"sha256\": \"$(sha256sum "$models/$f" | cut -d' ' -f1)\" }")
done
{
  echo '{ "name": "shakespeare (bundled)", "files": {'
  for i in "${!entries[@]}"; do
    sep=,; [ "$i" -eq $(( ${#entries[@]} - 1 )) ] && sep=
    echo "  ${entries[$i]}$sep"
  done
  echo '} }'
} > "$models/manifest.json"
node -e "JSON.parse(require('fs').readFileSync('$models/manifest.json', 'utf8'))"
echo "build-web: bundled model and manifest in $models ($(du -sb "$models" | cut -f1) bytes)"
