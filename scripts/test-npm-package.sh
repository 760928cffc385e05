#!/usr/bin/env bash
# The npm package as a user gets it: `npm pack` web/pkg, install the tarball into a scratch
# project, import it in Node (no WebGPU and no Web Workers: device "gpu" must reject saying
# so, and the default "auto", which picks the CPU, must ask for { worker: false }), check the
# tarball carries the module, the worker, the types and the bundled model, and type-check a
# TypeScript user of the package with `tsc --strict`. Needs `bash scripts/build-web.sh` first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
[ -f web/pkg/dist/cria_web_bg.wasm ] || { echo "web/pkg/dist is not built: run bash scripts/build-web.sh" >&2; exit 1; }
[ -x web/node_modules/.bin/tsc ] || (cd web && npm ci --no-audit --no-fund --silent)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

tarball=$(cd web/pkg && npm pack --silent --pack-destination "$scratch")
echo "npm pack: $tarball ($(stat -c %s "$scratch/$tarball") bytes)"
listing=$(tar -tzf "$scratch/$tarball")
for f in package/package.json package/src/index.js package/src/index.d.ts package/src/core.js package/src/worker.js \
         package/dist/cria_web.js package/dist/cria_web_bg.wasm package/models/shakespeare/model.safetensors \
         package/models/shakespeare/manifest.json package/models/shakespeare/tokenizer.json; do
  grep -qx "$f" <<<"$listing" || { echo "the tarball lacks $f" >&2; exit 1; }
done
if grep -q "node_modules\|\.rs$" <<<"$listing"; then echo "the tarball carries build leftovers" >&2; exit 1; fi

mkdir "$scratch/app"
cd "$scratch/app"
npm init -y >/dev/null
npm pkg set type=module >/dev/null
npm install --no-audit --no-fund --silent "$scratch/$tarball"
node --input-type=module -e "
import { Cria, CriaError } from 'cria';
import assert from 'node:assert/strict';
assert.equal(typeof Cria.load, 'function');
await assert.rejects(Cria.load('bundled', { device: 'gpu' }), (e) => e instanceof CriaError && e.code === 'no-webgpu' && /WebGPU is not available here/.test(e.message));
await assert.rejects(Cria.load(), (e) => e instanceof CriaError && e.code === 'no-worker' && /pass \{ worker: false \}/.test(e.message));
const manifest = (await import('cria/package.json', { with: { type: 'json' } })).default;
assert.equal(manifest.name, 'cria');
console.log('npm package: imports in Node; device gpu rejects with code no-webgpu; auto picks the CPU and asks for a worker-less engine');
"
cat > use.ts <<'TS'
import { Cria, type ChatCompletion, type GenerationResult, type LoadProgress } from "cria";

export async function demo(files: FileList): Promise<string> {
  const cria = await Cria.load("bundled", { onProgress: (p: LoadProgress) => console.log(p.phase, p.loaded, p.total) });
  await cria.load(files, { dtype: "q8_0", context: 512 });
  const controller = new AbortController();
  const g = cria.generate("ROMEO:", { maxTokens: 32, temperature: 0, stop: ["\n\n"], signal: controller.signal });
  let text = "";
  for await (const piece of g) text += piece;
  const r: GenerationResult = await g.result;
  const reply: ChatCompletion = await cria.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], max_tokens: 16 });
  for await (const chunk of await cria.chat.completions.create({ messages: [{ role: "user", content: "Hi" }], stream: true })) {
    text += chunk.choices[0].delta.content ?? "";
  }
  return text + r.finish + reply.choices[0].message.content + String(cria.info?.context);
}

// The types must also refuse wrong uses (tsc fails if an expected error does not occur).
export async function misuse(cria: Cria) {
  // @ts-expect-error maxTokens is a number
  cria.generate("x", { maxTokens: "32" });
  // @ts-expect-error not a type Cria converts to (q3_k files load as they are)
  await cria.load("bundled", { dtype: "q3_k" });
  // @ts-expect-error messages have a role
  await cria.chat.completions.create({ messages: [{ content: "Hi" }] });
}
TS
"$root/web/node_modules/.bin/tsc" --strict --noEmit --target es2022 --module nodenext --moduleResolution nodenext --lib es2022,dom,dom.iterable use.ts
echo "npm package: a TypeScript user type-checks with tsc --strict"
