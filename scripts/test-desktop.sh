#!/usr/bin/env bash
# Tests of the desktop app (crate cria-desktop): the egui_kittest UI tests on lavapipe, then a
# real window under Xvfb whose screenshot after one exchange is saved as an artifact.
#
#   bash scripts/test-desktop.sh [SCREENSHOT.png]    (default target/artifacts/desktop.png)
#
# Run as root on Debian/Ubuntu (installs lavapipe, Xvfb and X11 libraries if missing).
# GPU tests fail, never skip, without an adapter: CRIA_REQUIRE_GPU=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}
CACHE=${CRIA_CACHE:-$HOME/.cache/cria}
mkdir -p "$CACHE"

bash scripts/setup-lavapipe.sh "$CACHE/lavapipe"
# shellcheck disable=SC1091
source "$CACHE/lavapipe/env.sh"
export CRIA_REQUIRE_GPU=1

start=$(date +%s)
cargo test -p cria-desktop --no-run
echo "test-desktop: built in $(( $(date +%s) - start )) s"
# One test at a time: each starts its own model thread and GPU device on the CPU adapter.
cargo test -p cria-desktop -- --test-threads=1
bash scripts/desktop-screenshot.sh "${1:-target/artifacts/desktop.png}"
echo "test-desktop: passed in $(( $(date +%s) - start )) s"
