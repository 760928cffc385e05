#!/usr/bin/env bash
# The demo page with one command: installs the build tools where missing, builds the npm
# package (wasm module + bundled model) and serves web/ at http://localhost:8080/demo/.
# Open it in a browser with WebGPU (Chrome/Edge 113+, Safari 26+, Firefox 141+; on Linux start
# Chrome with --enable-unsafe-webgpu). Works offline once built: the bundled model is local.
#
#   bash scripts/serve-demo.sh [--port 8080] [--host 0.0.0.0]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}
bash scripts/setup-web.sh --no-browser
bash scripts/build-web.sh
exec node web/serve.mjs "$@"
