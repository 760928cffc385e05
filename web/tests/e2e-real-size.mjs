// End-to-end test of the `cria` package with a real-size model in a real browser: a ~135M-
// parameter chat model saved by transformers 5 (BF16 model.safetensors of 270 MB, the chat
// template in chat_template.jinja; tests/fixtures/make_real_size.py makes it during the test
// run), loaded the ways a user loads one, in headless Chromium (WebGPU on SwiftShader).
// Run by scripts/test-web.sh:
//
//   CRIA_REAL_MODEL=DIR CRIA_NATIVE_CHAT_FILE=reply.txt node web/tests/e2e-real-size.mjs
//
// DIR is the model folder (DIR.expected.json beside it holds transformers' prompt and greedy
// reply); reply.txt is what native `cria chat --model DIR` answered to the same message,
// greedily. Checks, each with a fresh engine:
//   - a fresh non-persistent context (as a private window is), by URL and through the demo's
//     file picker: the reply equals the native CLI's and transformers' (so the chat template
//     came from chat_template.jinja), and the wasm heap stays under twice the largest tensor
//     plus a fixed amount;
//   - a persistent profile: the first load caches the files, the second reads them from the
//     cache (no download), same reply;
//   - a cache that refuses every write (the origin's quota set to 1 byte through the DevTools
//     protocol): the load completes uncached, progress says `cached: false` with the reason,
//     the reply is right, nothing is stored, and the next load (quota back) caches.
// Writes target/artifacts/web-real-size.json (figures for docs/BENCHMARKS.md).

import assert from "node:assert/strict";
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "../serve.mjs";
import { checks } from "./checks.mjs";

const web = fileURLToPath(new URL("..", import.meta.url));
const artifacts = fileURLToPath(new URL("../../target/artifacts/", import.meta.url));
mkdirSync(artifacts, { recursive: true });
const dir = process.env.CRIA_REAL_MODEL ?? assert.fail("set CRIA_REAL_MODEL to the model folder");
const expected = JSON.parse(readFileSync(`${dir}.expected.json`, "utf8"));
const native = readFileSync(process.env.CRIA_NATIVE_CHAT_FILE ?? assert.fail("set CRIA_NATIVE_CHAT_FILE"), "utf8").replace(/\n$/, "");
assert.ok(native.length > 0, "the native CLI's reply is empty");
const files = readdirSync(dir).sort();
assert.ok(files.includes("chat_template.jinja"), "the fixture keeps its chat template in chat_template.jinja");
const weightsBytes = statSync(join(dir, "model.safetensors")).size;
const REQUEST = { messages: expected.messages, max_tokens: expected.generated_ids.length, temperature: 0 };

/** The largest tensor of the safetensors file, in bytes (as stored). */
function largestTensor(path) {
  const file = readFileSync(path);
  const n = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + n));
  return Math.max(...Object.entries(header).filter(([k]) => k !== "__metadata__").map(([, t]) => t.data_offsets[1] - t.data_offsets[0]));
}
const largest = largestTensor(join(dir, "model.safetensors"));
/** The bound the package promises: about twice the largest tensor plus a fixed amount (the
 * module, the tokenizer, buffers), whatever the model's total size. */
const HEAP_FIXED = 64 << 20;
const heapBound = 2 * largest + HEAP_FIXED;

const requests = new Map();
const count = (path) => requests.get(path) ?? 0;
const MODEL_URL_PATH = "/real/model/";
const routes = (req, res, path) => {
  if (!path.startsWith(MODEL_URL_PATH)) return false;
  const name = path.slice(MODEL_URL_PATH.length);
  if (!files.includes(name)) {
    res.writeHead(404);
    res.end("not found");
    return true;
  }
  const file = join(dir, name);
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": statSync(file).size });
  createReadStream(file).pipe(res);
  return true;
};
const server = await serve({ root: web, routes, onRequest: (p) => requests.set(p, count(p) + 1) });
const modelUrl = `${server.url}${MODEL_URL_PATH}`;
const WEIGHTS = `${MODEL_URL_PATH}model.safetensors`;

const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const args = ["--enable-unsafe-webgpu", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const browser = await chromium.launch({ executablePath, headless: true, args });
const consoleLines = [];
const watch = (page) => {
  page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
  return page;
};

const { check, results } = checks();
const figures = { model_parameters: expected.parameters, model_bytes: weightsBytes, largest_tensor_bytes: largest, heap_bound_bytes: heapBound };

/**
 * In `page`: loads `source` (a URL) with a fresh engine, asks the chat question greedily, and
 * returns the reply, the progress events that carry a cache outcome, the phases seen, the
 * heap, and timings. The engine is disposed.
 */
async function loadAndChat(page, source, device = "gpu") {
  await page.goto(`${server.url}/pkg/package.json`); // any page of the origin: the package is imported below
  const r = await page.evaluate(async ([source, request, device]) => {
    const { Cria } = await import("/pkg/src/index.js");
    const phases = [];
    const outcomes = [];
    let plan = null;
    let uploadedBeforePlan = false;
    const t0 = performance.now();
    try {
      const cria = await Cria.load(source, {
        device,
        onProgress: (p) => {
          if (!phases.includes(p.phase)) phases.push(p.phase);
          if (p.cached !== undefined) outcomes.push({ file: p.file, cached: p.cached, reason: p.reason });
          if (p.phase === "plan") plan = p.memory;
          if (p.phase === "upload" && !plan) uploadedBeforePlan = true;
        },
      });
      const loadSeconds = (performance.now() - t0) / 1000;
      const reply = await cria.chat.completions.create(request);
      const out = { device: cria.device, info: cria.info, reply, phases, outcomes, loadSeconds, plan, uploadedBeforePlan, memory: await cria.memory() };
      cria.dispose();
      return out;
    } catch (e) {
      return { error: { name: e.name, code: e.code, message: e.message }, phases, outcomes };
    }
  }, [source, REQUEST, device]);
  assert.ok(!r.error, `load or chat failed: ${JSON.stringify(r.error)}`);
  return r;
}

/** The reply is the native CLI's and transformers' greedy reply, through the model's own template. */
function assertReply(r, what) {
  const choice = r.reply.choices[0];
  assert.equal(r.reply.usage.prompt_tokens, expected.prompt_ids.length, `${what}: the prompt is not the chat_template.jinja one (transformers builds ${expected.prompt_ids.length} tokens)`);
  assert.equal(choice.message.content, native, `${what}: the reply differs from native \`cria chat\``);
  assert.equal(choice.message.content, expected.generated_text, `${what}: the reply differs from transformers' greedy reply`);
  assert.equal(r.reply.usage.completion_tokens, expected.generated_ids.length);
  assert.equal(r.info.parameters, expected.parameters);
  // The BF16 checkpoint stays BF16 on the GPU: its matrices take their file size, not twice it.
  assert.equal(r.info.weight_types, "bf16", `${what}: weights stored as ${r.info.weight_types}`);
  const bf16 = r.info.memory.weights.bf16;
  assert.ok(bf16 <= weightsBytes && bf16 > 0.99 * weightsBytes, `${what}: ${bf16} bytes of bf16 matrices for a ${weightsBytes}-byte checkpoint`);
  if (r.plan !== undefined) {
    assert.ok(r.plan && !r.uploadedBeforePlan, `${what}: the memory plan must be reported before the upload`);
    assert.deepEqual(r.plan, r.info.memory, `${what}: the plan is what the loaded model reports`);
  }
}

function assertHeap(r, what) {
  const heap = r.memory.wasm_heap_bytes;
  assert.ok(heap < heapBound, `${what}: wasm heap ${heap} bytes, over 2 x the largest tensor (${largest}) + ${HEAP_FIXED}`);
}

try {
  await check("a fresh non-persistent context: the model by URL gives the native CLI's and transformers' chat reply; heap bounded by the largest tensor", async () => {
    const context = await browser.newContext();
    const page = watch(await context.newPage());
    const before = count(WEIGHTS);
    const r = await loadAndChat(page, modelUrl);
    await context.close();
    assertReply(r, "URL, fresh context");
    assertHeap(r, "URL, fresh context");
    assert.equal(count(WEIGHTS), before + 1, "the weights are downloaded once");
    const weights = r.outcomes.find((o) => o.file.endsWith("/model.safetensors"));
    assert.ok(weights, `no cache outcome reported for the weights: ${JSON.stringify(r.outcomes)}`);
    figures.fresh_context_cached = weights.cached;
    figures.fresh_context_cache_reason = weights.reason ?? null;
    figures.first_load_seconds = r.loadSeconds;
    figures.time_to_first_token_seconds = r.reply.x_cria.time_to_first_token;
    figures.decode_tokens_per_second = r.reply.x_cria.decode_tokens_per_second;
    figures.wasm_heap_bytes = r.memory.wasm_heap_bytes;
    figures.gpu_memory_bytes = r.info.memory.total;
    figures.gpu_weight_bytes = r.info.memory.weights.bf16 + r.info.memory.norms;
  });

  await check("the CPU device (\"auto\" on SwiftShader: wasm32 SIMD in the worker) gives the same reply", async () => {
    const context = await browser.newContext();
    const page = watch(await context.newPage());
    const r = await loadAndChat(page, modelUrl, "auto");
    await context.close();
    assert.equal(r.device, "cpu");
    assertReply(r, "CPU device");
    // The model lives in the wasm heap on the CPU: the heap holds its plan (weights once, KV
    // cache, activations) plus what loading passes through, as on the GPU.
    assert.ok(r.memory.wasm_heap_bytes < r.info.memory.total + heapBound, `wasm heap ${r.memory.wasm_heap_bytes} bytes for a ${r.info.memory.total}-byte plan`);
    figures.cpu_load_seconds = r.loadSeconds;
    figures.cpu_time_to_first_token_seconds = r.reply.x_cria.time_to_first_token;
    figures.cpu_decode_tokens_per_second = r.reply.x_cria.decode_tokens_per_second;
    figures.cpu_wasm_heap_bytes = r.memory.wasm_heap_bytes;
  });

  await check("a fresh non-persistent context: the folder's files through the demo's file picker give the same reply", async () => {
    const context = await browser.newContext();
    const page = watch(await context.newPage());
    await page.goto(`${server.url}/demo/?device=gpu`);
    await page.waitForSelector("body[data-state=ready]", { timeout: 180_000 });
    await page.selectOption("#source", "files");
    await page.setInputFiles("#files", files.map((f) => join(dir, f)));
    await page.click("#load");
    await page.waitForFunction(() => window.demo.cria?.info?.name === "local files", null, { timeout: 300_000 });
    await page.waitForSelector("body[data-state=ready]", { timeout: 60_000 });
    const r = await page.evaluate(async (request) => {
      const cria = window.demo.cria;
      return { info: cria.info, reply: await cria.chat.completions.create(request), memory: await cria.memory() };
    }, REQUEST);
    await context.close();
    assertReply(r, "file picker");
    assertHeap(r, "file picker");
  });

  await check("a persistent profile: the first load caches every file, the second reads them from the cache; same reply", async () => {
    const profile = mkdtempSync(join(tmpdir(), "cria-profile-"));
    try {
      const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args });
      const page = watch(context.pages()[0] ?? (await context.newPage()));
      const before = count(WEIGHTS);
      const first = await loadAndChat(page, modelUrl);
      assertReply(first, "persistent, first load");
      assert.ok(first.outcomes.length >= 5 && first.outcomes.every((o) => o.cached), `every download is cached: ${JSON.stringify(first.outcomes)}`);
      const second = await loadAndChat(page, modelUrl);
      await context.close();
      assertReply(second, "persistent, second load");
      assertHeap(second, "persistent, second load");
      assert.equal(count(WEIGHTS), before + 1, "the second load downloaded the weights again");
      assert.deepEqual(second.phases, ["cache", "plan", "upload", "compile"], "progress phases of a cached load");
      figures.cached_load_seconds = second.loadSeconds;
      figures.persistent_first_load_seconds = first.loadSeconds;
    } finally {
      rmSync(profile, { recursive: true, force: true });
    }
  });

  await check("a cache that refuses every write: the load completes uncached and says why; the reply is right; the next load caches", async () => {
    // A persistent profile, where the cache would otherwise take the whole model.
    const profile = mkdtempSync(join(tmpdir(), "cria-profile-"));
    try {
      const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args });
      const page = watch(context.pages()[0] ?? (await context.newPage()));
      await page.goto(`${server.url}/pkg/package.json`);
      const cdp = await context.newCDPSession(page);
      // One byte: every write exceeds it (Chromium ignores a quota of 0).
      await cdp.send("Storage.overrideQuotaForOrigin", { origin: server.url, quotaSize: 1 });
      const before = count(WEIGHTS);
      const refused = await loadAndChat(page, modelUrl);
      assertReply(refused, "refusing cache");
      assert.ok(refused.outcomes.length >= 5, JSON.stringify(refused.outcomes));
      for (const o of refused.outcomes) {
        assert.equal(o.cached, false, `${o.file} was cached with a quota of 1 byte`);
        assert.match(o.reason, /cache refused .*Quota/, o.reason);
      }
      const stored = await page.evaluate(async () => {
        const urls = [];
        for (const n of await caches.keys()) for (const r of await (await caches.open(n)).keys()) urls.push(r.url);
        return urls;
      });
      assert.deepEqual(stored, [], "nothing is stored while the cache refuses");
      figures.refused_cache_reason = refused.outcomes.find((o) => o.file.endsWith("/model.safetensors")).reason;
      await cdp.send("Storage.overrideQuotaForOrigin", { origin: server.url }); // the default quota again
      const retried = await loadAndChat(page, modelUrl);
      await context.close();
      assertReply(retried, "after the refusal");
      assert.ok(retried.outcomes.length >= 5 && retried.outcomes.every((o) => o.cached), `the next load caches: ${JSON.stringify(retried.outcomes)}`);
      assert.equal(count(WEIGHTS), before + 2, "each load that could not use the cache downloads");
    } finally {
      rmSync(profile, { recursive: true, force: true });
    }
  });
} finally {
  writeFileSync(`${artifacts}web-real-size.json`, JSON.stringify({ model: basename(dir), ...figures }, null, 2));
  await browser.close();
  await server.close();
}

const failed = results.filter((r) => !r.ok);
console.log(`\ne2e real-size: ${results.length - failed.length} passed, ${failed.length} failed; figures ${JSON.stringify(figures)}`);
if (failed.length) {
  console.log(`browser console:\n${consoleLines.slice(-40).join("\n")}`);
  process.exit(1);
}
