#!/usr/bin/env bash
# The browser side, all of it, in real Chromium (headless, WebGPU on SwiftShader: no
# shader-f16, no subgroups -- the portability floor). A browser without a WebGPU adapter fails
# the tests, never skips them.
#   1. cria-web's wasm-bindgen tests: every kernel check of the runtime against its CPU
#      reference, and the bundled model's greedy ids == the native CLI's;
#   2. the npm package built for real (scripts/build-web.sh: release, wasm-bindgen, wasm-opt);
#   3. the end-to-end test (web/tests/e2e.mjs, playwright-core): the demo page served, the
#      bundled model's 32 greedy tokens == native `cria generate`, streaming, abort, queueing,
#      the chat-completions shape, the download cache, bad input; screenshot in target/artifacts;
#   4. the package as a user installs it (scripts/test-npm-package.sh).
#
#   bash scripts/test-web.sh [extra cargo test args for step 1, e.g. --test kernels]
#
# Run as root on Debian/Ubuntu: scripts/setup-web.sh installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}
export PATH="$HOME/.cargo/bin:$PATH"
CACHE=${CRIA_CACHE:-$HOME/.cache/cria}
step() { printf '\n==> %s\n' "$*"; }

bash scripts/setup-web.sh

step "browser tests (cria-web, wasm32, headless Chromium + WebGPU)"
# webdriver.json (Chromium's flags, --enable-unsafe-webgpu above all) is read from the working
# directory the runner starts in: the crate directory.
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
# The runner's default (20 s for the whole page) is far too short for SwiftShader.
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-900}
start=$(date +%s)
cargo test -p cria-web --target wasm32-unknown-unknown --no-run
echo "test-web: built in $(( $(date +%s) - start )) s"
start=$(date +%s)
cargo test -p cria-web --target wasm32-unknown-unknown "$@"
echo "test-web: browser tests passed in $(( $(date +%s) - start )) s"

step "the npm package: release module (wasm-bindgen --target web, wasm-opt -Oz), bundled model, sizes"
bash scripts/build-web.sh

step "end to end: the demo page in Chromium (playwright-core) against the native CLI"
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  bash scripts/setup-lavapipe.sh "$CACHE/lavapipe"
  # shellcheck disable=SC1091
  source "$CACHE/lavapipe/env.sh"
fi
native=$(mktemp)
trap 'rm -f "$native"' EXIT
cargo run -q -p cria-cli -- generate --prompt "ROMEO:" --max-tokens 32 --temperature 0 > "$native"
CRIA_NATIVE_TEXT_FILE="$native" node web/tests/e2e.mjs

step "the npm package installed from its tarball"
bash scripts/test-npm-package.sh
