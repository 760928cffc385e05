#!/usr/bin/env bash
# Builds the browser module: cargo (wasm32, release) -> wasm-bindgen --target web -> wasm-opt -Oz
# from npm `binaryen` (Debian's wasm-opt 108 silently breaks the module; wasm-pack cannot run
# here, it downloads its tools). Output: web/pkg/dist/{cria_web.js, cria_web_bg.wasm, *.d.ts}.
# Prints the module's size raw and gzipped.
#
#   bash scripts/build-web.sh
#
# Needs the wasm32 target and wasm-bindgen-cli at the Cargo.lock version (scripts/test-web.sh
# installs both) and npm (the binaryen package is installed under web/pkg/node_modules).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}
export PATH="$HOME/.cargo/bin:$PATH"
BINARYEN=132.0.0

cargo build -q --release -p cria-web --target wasm32-unknown-unknown
out=web/pkg/dist
rm -rf "$out"
mkdir -p "$out"
wasm-bindgen --target web --out-dir "$out" "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/cria_web.wasm"
if [ ! -x web/pkg/node_modules/.bin/wasm-opt ]; then
  (cd web/pkg && npm install --no-save --no-audit --no-fund --silent "binaryen@$BINARYEN")
fi
raw=$(stat -c %s "$out/cria_web_bg.wasm")
web/pkg/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals "$out/cria_web_bg.wasm" -o "$out/cria_web_bg.opt.wasm"
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
