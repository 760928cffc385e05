// End-to-end test of the demo page and the `cria` package in a real browser: playwright-core
// drives Debian's Chromium (headless), on both devices: WebGPU on SwiftShader (device "gpu"),
// and the CPU kernels compiled to wasm32 SIMD in a second browser whose WebGPU is turned off
// (no --enable-unsafe-webgpu: navigator.gpu offers no adapter). Run by scripts/test-web.sh:
//
//   CRIA_NATIVE_TEXT_FILE=out.txt node web/tests/e2e.mjs
//
// CRIA_NATIVE_TEXT_FILE holds what the native CLI printed for the same model and prompt
// (`cria generate --prompt "ROMEO:" --max-tokens 32 --temperature 0`); CRIA_NATIVE_KQUANT_DIR,
// what it printed on the CPU device for each K-quant fixture (scripts/test-web.sh). Writes
// target/artifacts/web-demo.png and target/artifacts/web-e2e.json (timings for BENCHMARKS).

import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "../serve.mjs";
import { checks } from "./checks.mjs";

const web = fileURLToPath(new URL("..", import.meta.url));
const artifacts = fileURLToPath(new URL("../../target/artifacts/", import.meta.url));
mkdirSync(artifacts, { recursive: true });
// The CLI streams the generated text to stdout and ends it with one newline of its own.
const native = readFileSync(process.env.CRIA_NATIVE_TEXT_FILE ?? assert.fail("set CRIA_NATIVE_TEXT_FILE"), "utf8").replace(/\n$/, "");
assert.ok(native.length > 0, "the native CLI's text is empty");
// CRIA_NATIVE_KQUANT_DIR: `cria generate --device cpu` on each K-quant fixture (FILE.txt).
const nativeKquant = process.env.CRIA_NATIVE_KQUANT_DIR ?? assert.fail("set CRIA_NATIVE_KQUANT_DIR");
const PROMPT = "ROMEO:";
const GREEDY = { maxTokens: 32, temperature: 0 };
const bundled = `${web}pkg/models/shakespeare/`;
const fixtures = fileURLToPath(new URL("../../tests/fixtures/", import.meta.url));
/** transformers' greedy continuation of each fixture model (tests/fixtures/make_fixtures.py). */
const golden = (model) => {
  const g = JSON.parse(readFileSync(`${fixtures}models/${model}/golden.json`, "utf8"));
  return { prompt: g.prompt, ids: g.generated_ids };
};

/** A safetensors file split in two shards plus the index, as Hugging Face writes big checkpoints. */
function shards(file) {
  const n = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.subarray(8, 8 + n));
  const data = file.subarray(8 + n);
  const names = Object.keys(header).filter((k) => k !== "__metadata__").sort();
  const groups = [names.slice(0, names.length >> 1), names.slice(names.length >> 1)];
  const files = {};
  const weightMap = {};
  groups.forEach((group, i) => {
    const name = `model-0000${i + 1}-of-00002.safetensors`;
    const h = {};
    const parts = [];
    let offset = 0;
    for (const k of group) {
      const [s, e] = header[k].data_offsets;
      h[k] = { ...header[k], data_offsets: [offset, offset + e - s] };
      offset += e - s;
      parts.push(data.subarray(s, e));
      weightMap[k] = name;
    }
    let json = Buffer.from(JSON.stringify(h));
    json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    files[name] = Buffer.concat([len, json, ...parts]);
  });
  files["model.safetensors.index.json"] = Buffer.from(JSON.stringify({ metadata: { total_size: data.length }, weight_map: weightMap }));
  return files;
}
const sharded = shards(readFileSync(`${fixtures}models/litellama-mini/model.safetensors`));

/** A 47M-parameter f16 Llama (94 MB; zeros, norms one) with the bundled tokenizer: big enough that
 * holding it whole would show in the wasm heap. */
function bigModel() {
  const h = 1024, inter = 2816, layers = 4, heads = 16, kvHeads = 4, headDim = 64, vocab = 2048;
  const config = { ...JSON.parse(bundledFile("config.json")), hidden_size: h, intermediate_size: inter, num_hidden_layers: layers,
    num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: headDim, vocab_size: vocab, torch_dtype: "float16", dtype: "float16" };
  const tensors = [["model.embed_tokens.weight", [vocab, h]], ["model.norm.weight", [h]]];
  for (let i = 0; i < layers; i++) {
    const p = `model.layers.${i}`;
    tensors.push([`${p}.input_layernorm.weight`, [h]], [`${p}.post_attention_layernorm.weight`, [h]],
      [`${p}.self_attn.q_proj.weight`, [heads * headDim, h]], [`${p}.self_attn.k_proj.weight`, [kvHeads * headDim, h]],
      [`${p}.self_attn.v_proj.weight`, [kvHeads * headDim, h]], [`${p}.self_attn.o_proj.weight`, [h, heads * headDim]],
      [`${p}.mlp.gate_proj.weight`, [inter, h]], [`${p}.mlp.up_proj.weight`, [inter, h]], [`${p}.mlp.down_proj.weight`, [h, inter]]);
  }
  const header = {};
  let offset = 0;
  for (const [name, shape] of tensors) {
    const bytes = shape.reduce((a, b) => a * b, 2);
    header[name] = { dtype: "F16", shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const file = Buffer.alloc(8 + json.length + offset);
  file.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(file, 8);
  for (const [name, shape] of tensors) {
    if (shape.length !== 1) continue;
    const [s] = header[name].data_offsets;
    for (let i = 0; i < shape[0]; i++) file.writeUInt16LE(0x3c00, 8 + json.length + s + 2 * i); // 1.0
  }
  return { "config.json": Buffer.from(JSON.stringify(config)), "model.safetensors": file };
}
let big;

// ---- a server with the demo, the package and some broken model folders ----
const requests = new Map();
const count = (path) => requests.get(path) ?? 0;
const WEIGHTS = "/pkg/models/shakespeare/model.safetensors";
const bundledFile = (name) => readFileSync(bundled + name);
const send = (res, body) => {
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
  res.end(body);
  return true;
};
const routes = (req, res, path) => {
  // The transformers fixtures: plain folders (no manifest) and GGUF files.
  const f = path.match(/^\/fixtures\/(models\/[a-z0-9-]+|gguf|kquant)\/([\w.-]+)$/);
  if (f) {
    try {
      return send(res, readFileSync(`${fixtures}${f[1]}/${f[2]}`));
    } catch {
      res.writeHead(404);
      res.end("not found");
      return true;
    }
  }
  const b = path.match(/^\/fixtures\/big\/([\w.-]+)$/);
  if (b) {
    if (big[b[1]]) return send(res, big[b[1]]);
    return routes(req, res, `/fixtures/bundled/${b[1]}`);
  }
  const bf = path.match(/^\/fixtures\/bundled\/([\w.-]+)$/);
  if (bf) {
    try {
      return send(res, bundledFile(bf[1]));
    } catch {
      res.writeHead(404);
      res.end("not found");
      return true;
    }
  }
  const sh = path.match(/^\/fixtures\/sharded\/litellama-mini\/([\w.-]+)$/);
  if (sh) {
    if (sharded[sh[1]]) return send(res, sharded[sh[1]]);
    if (sh[1] !== "model.safetensors") return routes(req, res, `/fixtures/models/litellama-mini/${sh[1]}`);
  }
  const m = path.match(/^\/faults\/([a-z-]+)\/(.*)$/);
  if (!m) return false;
  const [, kind, name] = m;
  if (kind === "missing" || !["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors"].includes(name)) {
    res.writeHead(404);
    res.end("not found");
    return true;
  }
  let body = bundledFile(name);
  if (kind === "huge-context" && name === "config.json") {
    const config = JSON.parse(body);
    config.max_position_embeddings = 1 << 28;
    body = Buffer.from(JSON.stringify(config));
  }
  if (name === "model.safetensors" && kind === "truncated") {
    // Announces the whole file, sends half, then drops the connection.
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
    res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.socket.destroy(), 50));
    return true;
  }
  if (name === "model.safetensors" && kind === "short") body = body.subarray(0, body.length >> 1); // a complete but cut file
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
  res.end(body);
  return true;
};
big = bigModel();
const server = await serve({ root: web, routes, onRequest: (p) => requests.set(p, count(p) + 1) });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--enable-unsafe-webgpu", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update"],
});
const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
const page = await context.newPage();
const consoleLines = [];
page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));

const { check, results } = checks();
const timings = {};
const ready = () => page.waitForSelector("body[data-state=ready]", { timeout: 180_000 });
/** Runs `fn` in a page (the main one unless `on`) with the engine its demo created; errors come
 * back as { error: { name, code, message } }. `fn` may call `timerGaps()`: it starts the page's
 * own 10 ms timer and returns a function that stops it and gives the longest gap between ticks
 * (the engine runs in a worker: the page's thread must stay free meanwhile). */
const inPage = (fn, arg, on = page) =>
  on.evaluate(
    async ([src, arg]) => {
      const timerGaps = () => {
        let last = performance.now();
        let worst = 0;
        const timer = setInterval(() => {
          const now = performance.now();
          worst = Math.max(worst, now - last);
          last = now;
        }, 10);
        return () => {
          clearInterval(timer);
          return worst;
        };
      };
      const f = new Function("timerGaps", `return (${src})`)(timerGaps);
      try {
        return await f(window.demo.cria, arg);
      } catch (e) {
        return { error: { name: e.name, code: e.code, message: e.message } };
      }
    },
    [fn.toString(), arg],
  );

/** In the page: a generation aborted once `abortAt` chunks arrived, then a whole greedy one;
 * also the longest gap between the page's own 10 ms timer ticks meanwhile. */
const abortThenRegenerate = async (cria, { prompt, opts, maxTokens, abortAt }) => {
  const stopTimer = timerGaps();
  const controller = new AbortController();
  const s = cria.generate(prompt, { maxTokens, temperature: 0, signal: controller.signal });
  let received = 0;
  let caught = null;
  try {
    for await (const _ of s) if (++received === abortAt) controller.abort();
  } catch (e) {
    caught = { name: e.name, code: e.code };
  }
  const again = cria.generate(prompt, opts);
  let text = "";
  for await (const t of again) text += t;
  const worstGap = stopTimer();
  return { received, caught, text, finish: (await again.result).finish, worstGap };
};

/** In `on`: a fresh engine of the package loads `source` with `options`; what it rejects with. */
const loadRejects = (on, source, options = {}) =>
  on.evaluate(async ([source, options]) => {
    const { Cria } = await import("/pkg/src/index.js");
    try {
      await Cria.load(source, options);
      return { resolved: true };
    } catch (e) {
      return { name: e.name, code: e.code, message: e.message };
    }
  }, [source, options]);

/** In `on`: the bundled model's greedy text from an engine on the page's own thread. */
const mainThreadText = (on, device) =>
  on.evaluate(async ({ prompt, opts, device }) => {
    const { Cria } = await import("/pkg/src/index.js");
    const cria = await Cria.load("bundled", { worker: false, device });
    let text = "";
    for await (const t of cria.generate(prompt, opts)) text += t;
    cria.dispose();
    return { text, device: cria.device };
  }, { prompt: PROMPT, opts: GREEDY, device });

try {
  await check("the demo page loads the bundled model (download, verify, upload)", async () => {
    const t0 = Date.now();
    // SwiftShader is a software adapter: "auto" would take the CPU; these checks are the GPU's.
    await page.goto(`${server.url}/demo/?device=gpu`);
    await ready();
    assert.equal(await page.evaluate(() => window.demo.cria.device), "gpu");
    assert.match(await page.textContent("#adapter"), /^device: gpu — device "gpu" was asked for · WebGPU adapter: google swiftshader/);
    timings.first_load_seconds = (Date.now() - t0) / 1000;
    assert.equal(count(WEIGHTS), 1, "the weights are downloaded once");
    assert.deepEqual(await page.evaluate(() => window.demo.phases), ["download", "plan", "upload", "compile"], "progress phases of a first load");
    const last = await page.evaluate(() => window.demo.last);
    const manifest = JSON.parse(readFileSync(`${bundled}manifest.json`, "utf8"));
    const files = Object.values(manifest.files).reduce((a, f) => a + f.size, 0);
    assert.equal(last.download.loaded, files, "download progress ends at the sum of the files");
    assert.equal(last.download.total, files);
    assert.ok(last.upload.loaded === last.upload.total && last.upload.total > 7_800_000, JSON.stringify(last.upload));
    assert.match(await page.textContent("#status"), /ready/);
    timings.adapter = await page.textContent("#adapter");
  });

  await check("32 greedy tokens in the demo equal the native `cria generate` text", async () => {
    await page.check("input[value=complete]");
    await page.fill("#max-tokens", "32");
    await page.fill("#temperature", "0");
    await page.fill("#repetition-penalty", "1");
    await page.fill("#prompt", PROMPT);
    await page.click("#send");
    await page.waitForFunction(() => window.demo.lastResult !== null, null, { timeout: 120_000 });
    await ready();
    const { lastResult, chunks } = await page.evaluate(() => ({ lastResult: window.demo.lastResult, chunks: window.demo.chunks }));
    assert.equal(lastResult.text, native, "browser text differs from the native CLI's");
    assert.equal(lastResult.tokens.length, 32);
    assert.ok(chunks >= 4, `text must stream in several chunks, got ${chunks}`);
    assert.equal(await page.textContent(".turn.completion"), PROMPT + native);
    assert.match(await page.textContent("#stats"), /32 tokens · [\d.]+ tokens\/s · first token \d+ ms/);
    timings.time_to_first_token_ms = lastResult.time_to_first_token * 1000;
    timings.decode_tokens_per_second = lastResult.decode_tokens_per_second;
    await page.screenshot({ path: `${artifacts}web-demo.png`, fullPage: true });
  });

  await check("generate() streams through `for await`, chunks add up to the result; the page stays responsive", async () => {
    const r = await inPage(async (cria, { prompt, opts }) => {
      // The engine runs in a worker: the page's own timers must keep firing meanwhile.
      const stopTimer = timerGaps();
      const s = cria.generate(prompt, opts);
      const chunks = [];
      for await (const text of s) chunks.push(text);
      const worstGap = stopTimer();
      return { chunks, result: await s.result, worstGap };
    }, { prompt: PROMPT, opts: GREEDY });
    assert.ok(!r.error, JSON.stringify(r.error));
    assert.ok(r.worstGap < 250, `the page's thread was blocked for ${r.worstGap.toFixed(0)} ms during a generation`);
    timings.worst_page_timer_gap_ms = r.worstGap;
    assert.ok(r.chunks.length >= 4, `${r.chunks.length} chunks`);
    assert.equal(r.chunks.join(""), r.result.text);
    assert.equal(r.result.text, native);
    timings.warm_time_to_first_token_ms = r.result.time_to_first_token * 1000;
    timings.warm_decode_tokens_per_second = r.result.decode_tokens_per_second;
  });

  await check("the demo's Stop button stops a reply mid-way; the page stays usable", async () => {
    await page.fill("#max-tokens", "200");
    await page.fill("#prompt", PROMPT);
    await page.click("#send");
    await page.waitForFunction(() => window.demo.chunks >= 3, null, { timeout: 60_000 });
    await page.click("#stop");
    await ready();
    assert.equal(await page.locator(".turn.completion.stopped").count(), 1);
    assert.match(await page.textContent("#stats"), /stopped after/);
    const chunks = await page.evaluate(() => window.demo.chunks);
    assert.ok(chunks < 150, `stopped after ${chunks} chunks`);
    await page.fill("#max-tokens", "32");
  });

  await check("an AbortSignal stops a generation mid-way; the next one runs to the end", async () => {
    const r = await inPage(abortThenRegenerate, { prompt: PROMPT, opts: GREEDY, maxTokens: 200, abortAt: 3 });
    assert.ok(!r.error, JSON.stringify(r.error));
    assert.deepEqual(r.caught, { name: "AbortError", code: "cancelled" });
    assert.ok(r.received >= 3 && r.received < 60, `aborted after ${r.received} chunks`);
    assert.equal(r.text, native);
  });

  await check("two concurrent generate() calls are queued, neither corrupted", async () => {
    const r = await inPage(async (cria, { prompt, opts }) => {
      const drain = async (s) => {
        let t = "";
        for await (const x of s) t += x;
        return t;
      };
      return Promise.all([drain(cria.generate(prompt, opts)), drain(cria.generate(prompt, { ...opts, maxTokens: 16 })), drain(cria.generate(prompt, opts))]);
    }, { prompt: PROMPT, opts: GREEDY });
    assert.ok(!r.error, JSON.stringify(r.error));
    assert.equal(r[0], native);
    assert.ok(native.startsWith(r[1]) && r[1].length < native.length, `16-token run: ${JSON.stringify(r[1])}`);
    assert.equal(r[2], native);
  });

  await check("chat.completions.create: OpenAI shapes, streamed and whole agree", async () => {
    const r = await inPage(async (cria) => {
      const messages = [{ role: "user", content: "Who art thou?" }];
      const whole = await cria.chat.completions.create({ messages, max_tokens: 24, temperature: 0 });
      const chunks = [];
      for await (const c of await cria.chat.completions.create({ messages, max_tokens: 24, temperature: 0, stream: true })) chunks.push(c);
      return { whole, chunks };
    });
    assert.ok(!r.error, JSON.stringify(r.error));
    const { whole, chunks } = r;
    assert.equal(whole.object, "chat.completion");
    assert.match(whole.id, /^chatcmpl-/);
    assert.equal(whole.model, "shakespeare (bundled)");
    assert.equal(whole.choices.length, 1);
    assert.equal(whole.choices[0].message.role, "assistant");
    assert.ok(whole.choices[0].message.content.length > 0);
    assert.ok(["stop", "length"].includes(whole.choices[0].finish_reason));
    const u = whole.usage;
    assert.ok(u.prompt_tokens > 3 && u.completion_tokens > 0 && u.completion_tokens <= 24 && u.total_tokens === u.prompt_tokens + u.completion_tokens, JSON.stringify(u));
    assert.ok(chunks.length >= 4);
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id && c.choices[0].index === 0));
    assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
    const last = chunks.at(-1);
    assert.equal(last.choices[0].finish_reason, whole.choices[0].finish_reason);
    assert.deepEqual(last.usage, whole.usage);
    assert.equal(chunks.map((c) => c.choices[0].delta.content ?? "").join(""), whole.choices[0].message.content);
  });

  await check("main-thread mode ({ worker: false }) gives the same greedy text", async () => {
    const r = await mainThreadText(page, "gpu");
    assert.equal(r.text, native);
  });

  // ---- bad input: each a rejected promise with a clear message; the engine stays usable ----
  const loadFails = (path) => loadRejects(page, `${server.url}${path}`);

  await check("a URL that 404s rejects naming the file and the status", async () => {
    const e = await loadFails("/faults/missing/");
    assert.equal(e.code, "http", JSON.stringify(e));
    assert.match(e.message, /HTTP 404 .*\/faults\/missing\/config\.json\. Hint:/);
  });

  await check("a download cut off mid-way rejects, and nothing partial is cached", async () => {
    const e = await loadFails("/faults/truncated/");
    assert.equal(e.code, "truncated", JSON.stringify(e));
    assert.match(e.message, /broke off after \d+ of 7875280 bytes/);
    const cached = await page.evaluate(async () => {
      const urls = [];
      for (const name of await caches.keys()) for (const r of await (await caches.open(name)).keys()) urls.push(`${name}: ${r.url}`);
      return urls.filter((u) => u.includes("/faults/truncated/model"));
    });
    assert.deepEqual(cached, []);
  });

  await check("a file whose sha256 differs from the manifest's rejects, and is not cached", async () => {
    const manifest = JSON.parse(readFileSync(`${bundled}manifest.json`, "utf8"));
    manifest.files["model.safetensors"].sha256 = "0".repeat(64);
    const e = await page.evaluate(async (source) => {
      const { Cria } = await import("/pkg/src/index.js");
      try {
        await Cria.load(source);
        return { resolved: true };
      } catch (e) {
        const cached = await (await caches.open("cria-models-v1")).match(`${source.url}model.safetensors`);
        return { code: e.code, message: e.message, cached: Boolean(cached) };
      }
    }, { url: `${server.url}/faults/plain/`, manifest });
    assert.equal(e.code, "checksum", JSON.stringify(e));
    assert.match(e.message, /sha256 of .*model\.safetensors is [0-9a-f]{64}, but the manifest says 0{64}/);
    assert.equal(e.cached, false);
  });

  await check("a truncated weights file (complete download) rejects as not valid safetensors", async () => {
    const e = await loadFails("/faults/short/");
    assert.equal(e.code, "bad-model", JSON.stringify(e));
    assert.match(e.message, /model\.safetensors.*(not a valid safetensors file|shorter than its header)/);
  });

  await check("a failed load keeps the loaded model when the new files never reached the GPU", async () => {
    const r = await inPage(async (cria, urls) => {
      const errors = [];
      for (const url of urls) {
        try {
          await cria.load(url);
        } catch (e) {
          errors.push(e.code);
        }
      }
      let text = "";
      for await (const t of cria.generate("ROMEO:", { maxTokens: 32, temperature: 0 })) text += t;
      return { errors, name: cria.info?.name, text };
    }, [`${server.url}/faults/missing/`, `${server.url}/faults/truncated/`, `${server.url}/faults/short/`]);
    assert.deepEqual(r.errors, ["http", "truncated", "bad-model"], JSON.stringify(r));
    assert.equal(r.name, "shakespeare (bundled)");
    assert.equal(r.text, native);
  });

  await check("a context too large for the device's buffers rejects; the engine loads another after", async () => {
    const r = await inPage(async (cria, url) => {
      let error = null;
      try {
        await cria.load(url, { context: 1 << 28 });
      } catch (e) {
        error = { code: e.code, message: e.message };
      }
      await cria.load("bundled");
      let text = "";
      for await (const t of cria.generate("ROMEO:", { maxTokens: 32, temperature: 0 })) text += t;
      return { error, text };
    }, `${server.url}/faults/huge-context/`);
    assert.ok(!r.error?.name, JSON.stringify(r));
    assert.equal(r.error.code, "too-large", JSON.stringify(r.error));
    assert.match(r.error.message, /does not fit this device: the KV cache .* Hint: load it with a shorter context/);
    assert.equal(r.text, native);
  });

  await check("a lost GPU device rejects the next call; loading again gives a working engine", async () => {
    const r = await inPage(async (cria) => {
      await cria.destroyDevice();
      let error = null;
      try {
        for await (const _ of cria.generate("ROMEO:", { maxTokens: 8 }));
      } catch (e) {
        error = { code: e.code, message: e.message };
      }
      await cria.load("bundled");
      let text = "";
      for await (const t of cria.generate("ROMEO:", { maxTokens: 32, temperature: 0 })) text += t;
      return { error, text };
    });
    assert.equal(r.error?.code, "device-lost", JSON.stringify(r));
    assert.match(r.error.message, /device was lost/);
    assert.equal(r.text, native);
  });

  // ---- other sources, each checked against transformers' greedy ids for that model ----
  const greedy = (source, model, prompt = golden(model).prompt, on = page, device = "gpu") =>
    on.evaluate(async ({ source, prompt, device }) => {
      const { Cria } = await import("/pkg/src/index.js");
      const cria = await Cria.load(source, { device });
      if (cria.device !== device) throw new Error(`asked for ${device}, got ${cria.device}`);
      const s = cria.generate(prompt, { maxTokens: 32, temperature: 0, repetitionPenalty: 1 });
      for await (const _ of s);
      const r = await s.result;
      cria.dispose();
      return { tokens: r.tokens, text: r.text };
    }, { source, prompt, device });
  const greedyIds = async (...args) => (await greedy(...args)).tokens;

  await check("a Hugging Face-style folder URL (no manifest) gives transformers' greedy ids", async () => {
    assert.deepEqual(await greedyIds(`${server.url}/fixtures/models/tinyllama-mini/`, "tinyllama-mini"), golden("tinyllama-mini").ids);
  });

  await check("a sharded checkpoint (model.safetensors.index.json + 2 shards) gives transformers' greedy ids", async () => {
    assert.deepEqual(await greedyIds(`${server.url}/fixtures/sharded/litellama-mini/`, "litellama-mini"), golden("litellama-mini").ids);
    assert.equal(count("/fixtures/sharded/litellama-mini/model-00002-of-00002.safetensors"), 1);
  });

  await check("one fixture of each family (Qwen2, Qwen3, Gemma 3: folder URLs and llama.cpp-converted GGUFs) gives transformers' greedy ids", async () => {
    for (const model of ["qwen2-mini", "qwen3-mini", "gemma3-mini"]) {
      assert.deepEqual(await greedyIds(`${server.url}/fixtures/models/${model}/`, model), golden(model).ids, model);
      const gguf = `${model}-${model === "qwen2-mini" ? "f16" : "bf16"}.gguf`;
      assert.deepEqual(await greedyIds(`${server.url}/fixtures/gguf/${gguf}`, model), golden(model).ids, gguf);
    }
  });

  await check("a .gguf URL gives transformers' greedy ids", async () => {
    assert.deepEqual(await greedyIds(`${server.url}/fixtures/gguf/tinyllama-mini-f32.gguf`, "tinyllama-mini"), golden("tinyllama-mini").ids);
  });

  await check("K-quant GGUFs as llama.cpp writes them (Q4_K_M; every other type mixed) give transformers' greedy ids", async () => {
    const k = JSON.parse(readFileSync(`${fixtures}kquant/golden.json`, "utf8"));
    for (const file of ["kquant-mini-q4_k_m.gguf", "kquant-mini-mix.gguf"]) {
      assert.deepEqual(await greedyIds(`${server.url}/fixtures/kquant/${file}`, null, k.prompt), k.files[file].generated_ids, file);
    }
  });

  await check("the user's own files through the demo's file picker give transformers' greedy ids", async () => {
    const dir = `${fixtures}models/smollm-mini/`;
    await page.selectOption("#source", "files");
    await page.setInputFiles("#files", ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"].map((f) => dir + f));
    await page.click("#load");
    await page.waitForFunction(() => window.demo.cria?.info?.name === "local files", null, { timeout: 120_000 });
    await ready();
    const r = await inPage(async (cria, prompt) => {
      const s = cria.generate(prompt, { maxTokens: 32, temperature: 0, repetitionPenalty: 1 });
      for await (const _ of s);
      return (await s.result).tokens;
    }, golden("smollm-mini").prompt);
    assert.deepEqual(r, golden("smollm-mini").ids);
    await page.selectOption("#source", "bundled");
  });

  await check("a 94 MB model streams to the GPU tensor by tensor: the wasm heap stays far below its size", async () => {
    const r = await page.evaluate(async (url) => {
      const { Cria } = await import("/pkg/src/index.js");
      const before = performance.now();
      const cria = await Cria.load(url, { device: "gpu" });
      const seconds = (performance.now() - before) / 1000;
      const s = cria.generate("ROMEO:", { maxTokens: 4, temperature: 0 });
      for await (const _ of s);
      const result = await s.result;
      const out = { info: cria.info, memory: await cria.memory(), tokens: result.tokens.length, seconds };
      cria.dispose();
      return out;
    }, `${server.url}/fixtures/big/`);
    const fileBytes = big["model.safetensors"].length;
    assert.equal(r.info.weight_bytes, fileBytes - 8 - Number(big["model.safetensors"].readBigUInt64LE(0)));
    assert.ok(r.info.parameters > 47e6, JSON.stringify(r.info));
    assert.equal(r.tokens, 4);
    assert.ok(r.memory.wasm_heap_bytes < fileBytes / 2, `wasm heap ${r.memory.wasm_heap_bytes} bytes for a ${fileBytes}-byte model`);
    timings.big_model_bytes = fileBytes;
    timings.big_model_wasm_heap_bytes = r.memory.wasm_heap_bytes;
    timings.big_model_load_seconds = r.seconds;
  });

  await check("without navigator.gpu the demo runs on the CPU and says why; device \"gpu\" rejects saying how to enable WebGPU", async () => {
    const p = await context.newPage();
    await p.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
    await p.goto(`${server.url}/demo/`);
    await p.waitForSelector("body[data-state=ready]", { timeout: 60_000 });
    assert.match(await p.textContent("#adapter"), /^device: cpu — WebGPU is not available here \(navigator\.gpu is missing\)$/);
    const e = await loadRejects(p, "bundled", { device: "gpu" });
    await p.close();
    assert.equal(e.code, "no-webgpu", JSON.stringify(e));
    assert.match(e.message, /WebGPU is not available here .*enable-unsafe-webgpu/s);
  });

  await check("\"auto\" on a software adapter (SwiftShader) takes the CPU and says why", async () => {
    const r = await page.evaluate(async () => {
      const { Cria } = await import("/pkg/src/index.js");
      const cria = await Cria.load("bundled");
      const out = { device: cria.device, adapter: cria.adapter, info: cria.info.device };
      cria.dispose();
      return out;
    });
    assert.equal(r.device, "cpu", JSON.stringify(r));
    assert.equal(r.info, "cpu");
    assert.match(r.adapter, /^device: cpu — the only WebGPU adapter is a software renderer \(google swiftshader\): the CPU computes faster\nCPU \(1 thread, wasm simd128\)$/);
  });

  await check("a reload reads the weights from the browser's cache, not the network", async () => {
    const before = count(WEIGHTS);
    await page.reload();
    await ready();
    assert.equal(count(WEIGHTS), before, "the weights were downloaded again");
    assert.deepEqual(await page.evaluate(() => window.demo.phases), ["cache", "plan", "upload", "compile"], "progress phases of a cached load");
    assert.match(await page.textContent("#status"), /ready/);
    const t0 = Date.now();
    await page.reload();
    await ready();
    timings.cached_load_seconds = (Date.now() - t0) / 1000;
  });

  // ---- the CPU device: a browser whose WebGPU offers no adapter (the flag left off) ----
  const cpuBrowser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update"],
  });
  try {
    const cpuPage = await (await cpuBrowser.newContext({ viewport: { width: 1100, height: 900 } })).newPage();
    cpuPage.on("console", (m) => consoleLines.push(`[cpu ${m.type()}] ${m.text()}`));
    cpuPage.on("pageerror", (e) => consoleLines.push(`[cpu pageerror] ${e.message}`));

    await check("WebGPU turned off: the demo picks the CPU (wasm32 SIMD in the worker), says why, and its 32 greedy tokens equal the native text", async () => {
      const t0 = Date.now();
      await cpuPage.goto(`${server.url}/demo/`);
      await cpuPage.waitForSelector("body[data-state=ready]", { timeout: 180_000 });
      timings.cpu_first_load_seconds = (Date.now() - t0) / 1000;
      assert.equal(await cpuPage.evaluate(() => window.demo.cria.device), "cpu");
      assert.match(await cpuPage.textContent("#adapter"), /^device: cpu — the browser offers no WebGPU adapter/);
      assert.match(await cpuPage.textContent("#status"), /CPU memory [\d.]+ MiB — ready/);
      await cpuPage.check("input[value=complete]");
      await cpuPage.fill("#max-tokens", "32");
      await cpuPage.fill("#temperature", "0");
      await cpuPage.fill("#repetition-penalty", "1");
      await cpuPage.fill("#prompt", PROMPT);
      await cpuPage.click("#send");
      await cpuPage.waitForFunction(() => window.demo.lastResult !== null, null, { timeout: 120_000 });
      await cpuPage.waitForSelector("body[data-state=ready]");
      const { lastResult, chunks } = await cpuPage.evaluate(() => ({ lastResult: window.demo.lastResult, chunks: window.demo.chunks }));
      assert.equal(lastResult.text, native, "the browser's CPU text differs from the native CLI's");
      assert.ok(chunks >= 4, `text must stream in several chunks, got ${chunks}`);
      timings.cpu_time_to_first_token_ms = lastResult.time_to_first_token * 1000;
      timings.cpu_decode_tokens_per_second = lastResult.decode_tokens_per_second;
      await cpuPage.screenshot({ path: `${artifacts}web-demo-cpu.png`, fullPage: true });
    });

    // The bundled model decodes hundreds of tokens a second here: the abort comes at the first
    // chunk, and without a yield between tokens the worker would finish all 250 first.
    await check("on the CPU, an AbortSignal ends a reply mid-way (the worker yields between tokens); the page stays responsive", async () => {
      const r = await inPage(abortThenRegenerate, { prompt: PROMPT, opts: GREEDY, maxTokens: 250, abortAt: 1 }, cpuPage);
      assert.deepEqual(r.caught, { name: "AbortError", code: "cancelled" }, `received ${r.received} chunks`);
      assert.ok(r.received >= 1 && r.received < 150, `aborted after ${r.received} chunks`);
      assert.equal(r.text, native);
      assert.ok(r.worstGap < 250, `the page's thread was blocked for ${r.worstGap.toFixed(0)} ms`);
    });

    await check("on the CPU, main-thread mode ({ worker: false }) gives the same greedy text", async () => {
      assert.deepEqual(await mainThreadText(cpuPage, "auto"), { text: native, device: "cpu" });
    });

    await check("on the CPU, every family (folders and llama.cpp GGUFs) gives transformers' greedy ids; the K-quant mixes (8-bit activations) the native CPU's text", async () => {
      for (const model of ["tinyllama-mini", "qwen2-mini", "qwen3-mini", "gemma3-mini"]) {
        assert.deepEqual(await greedyIds(`${server.url}/fixtures/models/${model}/`, model, undefined, cpuPage, "cpu"), golden(model).ids, model);
      }
      for (const [file, model] of [["qwen2-mini-f16.gguf", "qwen2-mini"], ["qwen3-mini-bf16.gguf", "qwen3-mini"], ["gemma3-mini-bf16.gguf", "gemma3-mini"], ["tinyllama-mini-f32.gguf", "tinyllama-mini"]]) {
        assert.deepEqual(await greedyIds(`${server.url}/fixtures/gguf/${file}`, model, undefined, cpuPage, "cpu"), golden(model).ids, file);
      }
      const k = JSON.parse(readFileSync(`${fixtures}kquant/golden.json`, "utf8"));
      for (const file of ["kquant-mini-q4_k_m.gguf", "kquant-mini-mix.gguf"]) {
        const want = readFileSync(`${nativeKquant}/${file}.txt`, "utf8").replace(/\n$/, "");
        assert.equal((await greedy(`${server.url}/fixtures/kquant/${file}`, null, k.prompt, cpuPage, "cpu")).text, want, file);
      }
    });

    await check("on the CPU, device \"gpu\" rejects: the browser offers no adapter", async () => {
      const e = await loadRejects(cpuPage, "bundled", { device: "gpu" });
      assert.equal(e.code, "no-webgpu", JSON.stringify(e));
      assert.match(e.message, /^the browser offers no WebGPU adapter .*Hint: load with \{ device: "cpu" \}/s);
    });
  } finally {
    await cpuBrowser.close();
  }
} finally {
  writeFileSync(`${artifacts}web-e2e.json`, JSON.stringify({ ...timings, weights_requests: count(WEIGHTS) }, null, 2));
  await browser.close();
  await server.close();
}

const failed = results.filter((r) => !r.ok);
console.log(`\ne2e: ${results.length - failed.length} passed, ${failed.length} failed; screenshot ${artifacts}web-demo.png; timings ${JSON.stringify(timings)}`);
if (failed.length) {
  console.log(`browser console:\n${consoleLines.slice(-40).join("\n")}`);
  process.exit(1);
}
