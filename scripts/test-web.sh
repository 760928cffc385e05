#!/usr/bin/env bash
# Browser tests of crate cria-web: every kernel check of the runtime (and later the bundled
# model) compiled to wasm32 and run by wasm-bindgen-test in headless Chromium through WebGPU.
# Chromium's WebGPU adapter here is SwiftShader (no shader-f16, no subgroups): the
# portability floor. A browser without a WebGPU adapter fails the tests, never skips them.
#
#   bash scripts/test-web.sh [extra cargo test args, e.g. --test kernels]
#
# Run as root on Debian/Ubuntu: installs what is missing (Chromium and its driver, the wasm32
# target, wasm-bindgen-cli at the exact wasm-bindgen version of Cargo.lock, ~11 min cold).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}

step() { printf '\n==> %s\n' "$*"; }

step "Chromium and chromedriver"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
chromium --version

step "wasm32 target"
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown

step "wasm-bindgen-cli (test runner) at the Cargo.lock version"
# The runner must be the same version as the wasm-bindgen crate the tests link, exactly.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$want" ] || { echo "no wasm-bindgen in Cargo.lock" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ] || ! command -v wasm-bindgen-test-runner >/dev/null; then
  # No --locked: the registry here lacks one crate version wasm-bindgen-cli's lockfile pins.
  cargo install wasm-bindgen-cli --version "=$want"
fi
wasm-bindgen --version

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

step "release module: wasm-bindgen --target web, wasm-opt -Oz (npm binaryen), sizes"
bash scripts/build-web.sh
