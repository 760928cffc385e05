#!/usr/bin/env bash
# Starts the desktop app in a virtual X display (Xvfb), drawing through wgpu on lavapipe, sends
# one message (--prompt), and saves a screenshot of the window after the reply (--screenshot:
# eframe's own screenshot of the frame it rendered). Fails if the reply or the PNG is missing.
#
#   bash scripts/desktop-screenshot.sh [OUT.png]     (default target/artifacts/desktop.png)
#
# Run as root on Debian/Ubuntu: installs Xvfb and the X11/Mesa runtime libraries if missing.
# Env: CARGO_TARGET_DIR (default ~/.cache/cria-target), CRIA_CACHE (default ~/.cache/cria),
#      CRIA_PROMPT (the message to send).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-target/artifacts/desktop.png}")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/cria-target}
CACHE=${CRIA_CACHE:-$HOME/.cache/cria}
PROMPT=${CRIA_PROMPT:-What say you of the king?}

# winit loads the X11 libraries at run time (dlopen); wgpu draws through Vulkan (lavapipe).
packages=(xvfb xauth libx11-xcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0 libegl1 libgl1-mesa-dri)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

bash scripts/setup-lavapipe.sh "$CACHE/lavapipe"
# shellcheck disable=SC1091
source "$CACHE/lavapipe/env.sh"

# The test build also builds the binary, with the features the UI tests unify into the egui
# crates; a plain `cargo build` would rebuild that chain with other features.
cargo test -q -p cria-desktop --no-run
app="$CARGO_TARGET_DIR/debug/cria-desktop"

# A free display number, from :99 up.
n=99
while [ -e "/tmp/.X$n-lock" ] || [ -e "/tmp/.X11-unix/X$n" ]; do n=$((n + 1)); done
Xvfb ":$n" -screen 0 1280x800x24 -nolisten tcp >/tmp/cria-xvfb-$n.log 2>&1 &
xvfb=$!
trap 'kill "$xvfb" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -e "/tmp/.X11-unix/X$n" ] && break; sleep 0.1; done
[ -e "/tmp/.X11-unix/X$n" ] || { echo "Xvfb :$n did not start:" >&2; cat "/tmp/cria-xvfb-$n.log" >&2; exit 1; }

rm -f "$OUT"
start=$(date +%s)
env -u WAYLAND_DISPLAY DISPLAY=":$n" timeout 300 "$app" --prompt "$PROMPT" --screenshot "$OUT"
[ -s "$OUT" ] || { echo "no screenshot at $OUT" >&2; exit 1; }
echo "desktop-screenshot: $OUT ($(( $(date +%s) - start )) s on display :$n)"
