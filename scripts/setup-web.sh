#!/usr/bin/env bash
# Installs what building and testing the browser side needs, where missing: Chromium and its
# driver (apt), the wasm32 target, wasm-bindgen-cli at exactly the wasm-bindgen version of
# Cargo.lock (~11 min cold), and the npm tools of web/package.json (binaryen's wasm-opt,
# playwright-core, typescript) into web/node_modules. Run as root on Debian/Ubuntu.
#
#   bash scripts/setup-web.sh [--no-browser]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
step() { printf '\n==> %s\n' "$*"; }

if [ "${1:-}" != "--no-browser" ]; then
  step "Chromium and chromedriver"
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  fi
  chromium --version
fi

step "wasm32 target"
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown

step "wasm-bindgen-cli at the Cargo.lock version"
# The CLI (and the test runner) must be the same version as the wasm-bindgen crate, exactly.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[ -n "$want" ] || { echo "no wasm-bindgen in Cargo.lock" >&2; exit 1; }
have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
if [ "$have" != "$want" ] || ! command -v wasm-bindgen-test-runner >/dev/null; then
  # No --locked: the registry here lacks one crate version wasm-bindgen-cli's lockfile pins.
  cargo install wasm-bindgen-cli --version "=$want"
fi
wasm-bindgen --version

step "npm tools (web/package-lock.json)"
if ! command -v npm >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
(cd web && npm ci --no-audit --no-fund --silent)
echo "node $(node --version), npm $(npm --version)"
