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
#   4. a real-size model (web/tests/e2e-real-size.mjs): ~135M parameters saved by transformers 5
#      during the run (tests/fixtures/make_real_size.py, in the venv of scripts/py-env.sh), by
#      URL and file picker in a fresh context, cached in a persistent profile, and with a cache
#      that refuses every write; each reply == native `cria chat` == transformers;
#   5. the package as a user installs it (scripts/test-npm-package.sh).
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
native_kquant=$(mktemp -d)
trap 'rm -rf "$native" "$native_kquant"' EXIT
cargo run -q -p cria-cli -- generate --prompt "ROMEO:" --max-tokens 32 --temperature 0 > "$native"
# The K-quant files on the native CPU device: its decode quantizes activations to 8 bits as
# llama.cpp's does, so the browser's CPU path must match it, not transformers' f32 ids. The
# portable kernel: the wasm32 build's arithmetic (AVX2 sums the same products in another order,
# and these random fixtures have greedy margins below that rounding).
kquant_prompt=$(node -e 'console.log(JSON.parse(require("fs").readFileSync("tests/fixtures/kquant/golden.json", "utf8")).prompt)')
for f in tests/fixtures/kquant/*.gguf; do
  CRIA_CPU_KERNEL=portable cargo run -q -p cria-cli -- generate --model "$f" --device cpu --prompt "$kquant_prompt" --max-tokens 32 --temperature 0 --repetition-penalty 1 > "$native_kquant/$(basename "$f").txt"
done
CRIA_NATIVE_TEXT_FILE="$native" CRIA_NATIVE_KQUANT_DIR="$native_kquant" node web/tests/e2e.mjs

step "a real-size model in the browser: 135M parameters saved by transformers 5 (BF16, chat_template.jinja), by URL and file picker, cached, uncached"
# transformers makes the model (tests/fixtures/make_real_size.py, in the venv of
# scripts/py-requirements.txt); it is kept under $CACHE while the script, the pins and the
# vocabulary are unchanged, and never committed.
CRIA_VENV="$CACHE/venv" bash scripts/py-env.sh
if [ -z "${CRIA_GPT2_TOKENIZER:-}" ]; then
  eval "$(bash scripts/get-test-assets.sh "$CACHE/assets" | grep '^export ')"
fi
key=$(cat tests/fixtures/make_real_size.py scripts/py-requirements.txt "$CRIA_GPT2_TOKENIZER" | sha256sum | cut -c1-16)
real="$CACHE/real-size/$key/smollm2-shape"
if [ ! -f "$real.expected.json" ]; then
  rm -rf "$CACHE/real-size"
  "$CACHE/venv/bin/python" tests/fixtures/make_real_size.py "$real" --tokenizer "$CRIA_GPT2_TOKENIZER"
fi
# The native CLI's greedy reply to the same message is what the browser must answer.
max_tokens=$("$CACHE/venv/bin/python" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["generated_ids"]))' "$real.expected.json")
question=$("$CACHE/venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["messages"][0]["content"])' "$real.expected.json")
native_chat=$(mktemp)
trap 'rm -f "$native" "$native_chat"' EXIT
mkdir -p target/artifacts
start=$(date +%s)
printf '%s\n' "$question" | cargo run -q -p cria-cli -- chat --model "$real" --max-tokens "$max_tokens" --temperature 0 > "$native_chat" 2> target/artifacts/native-real-size.txt
echo "native cria chat (debug build, lavapipe): $(grep -o '\[.*\]' target/artifacts/native-real-size.txt), $(( $(date +%s) - start )) s in all (build, load, reply)" | tee -a target/artifacts/native-real-size.txt
CRIA_REAL_MODEL="$real" CRIA_NATIVE_CHAT_FILE="$native_chat" node web/tests/e2e-real-size.mjs

step "the npm package installed from its tarball"
bash scripts/test-npm-package.sh
