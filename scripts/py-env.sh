#!/usr/bin/env bash
# Create (or update) the project's Python venv at .venv with the pinned packages from
# scripts/py-requirements.txt. Idempotent: re-running only installs what is missing.
# Used by fixture generators (train-native/tests/fixtures/*.py, tests/) and export checks;
# scripts/test-web.sh runs it (CRIA_VENV under the test cache) to make the real-size browser model.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CRIA_VENV:-$root/.venv}"
req="$root/scripts/py-requirements.txt"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.cria-requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "py-env: $venv up to date"
    exit 0
fi
"$venv/bin/pip" install --quiet -r "$req"
echo "$want" > "$stamp"
echo "py-env: $venv ready ($("$venv/bin/python" -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
