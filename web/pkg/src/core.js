// The engine where the GPU work happens: in the package's Web Worker (the default) or on the
// page's own thread. It fetches and caches model files, verifies them, hands them to the wasm
// module tensor by tensor and runs generations. Nothing here touches the DOM.

import init, { Engine, Sha256 } from "../dist/cria_web.js";

export const BUNDLED_URL = new URL("../models/shakespeare/", import.meta.url).href;
export const BUNDLED_NAME = "shakespeare (bundled)";
const CACHE_NAME = "cria-models-v1";
// Downloads land here first and move to CACHE_NAME once verified (the Cache API ignores URL
// fragments, so a staging key cannot live in the same cache).
const STAGING_NAME = "cria-models-v1-partial";

/** An error with a message that says what went wrong and a hint; `code` names the kind. */
export class CriaError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "CriaError";
    this.code = code;
  }
}

export function noWebGpuError() {
  return new CriaError(
    "no-webgpu",
    "WebGPU is not available here (navigator.gpu is missing). Hint: use Chrome or Edge 113+, Safari 26+ " +
      "or Firefox 141+; on Linux start Chrome with --enable-unsafe-webgpu (or turn on " +
      "chrome://flags/#enable-unsafe-webgpu); the page must be served over https or from localhost.",
  );
}

let wasmReady;
let wasmMemory = null;
function initWasm() {
  wasmReady ??= init().then((exports) => (wasmMemory = exports.memory));
  return wasmReady;
}

/** Errors from the wasm module are plain `Error`s carrying the runtime's message. */
function classify(e) {
  if (e instanceof CriaError) return e;
  const message = e instanceof Error ? e.message : String(e);
  const code = /generation was cancelled/.test(message)
    ? "cancelled"
    : /device was lost/.test(message)
      ? "device-lost"
      : /does not fit this device|needs \d+ bytes in one storage binding/.test(message)
        ? "too-large"
        : /is not a valid (safetensors|GGUF) file|: field `|^tensor `|^tokenizer |shorter than its header|unknown architecture/.test(message)
          ? "bad-model"
          : "runtime";
  return new CriaError(code, message);
}

// ---- fetching, caching, verifying ----------------------------------------------------------

async function openCache(name = CACHE_NAME) {
  try {
    return typeof caches === "undefined" ? null : await caches.open(name);
  } catch {
    return null; // opaque origins and some private modes have no Cache API
  }
}

/**
 * One file of a model at `url`, from the Cache API when a verified copy is there, else
 * downloaded (streamed: counted, hashed, stored; never assembled in memory when the Cache API
 * is available). `expect`: { size, sha256 } from a manifest, when known. Resolves to a Blob,
 * or null for an optional file the server does not have (404).
 */
async function cachedFile(url, expect, { optional = false, onBytes = () => {} } = {}) {
  const cache = await openCache();
  const hit = cache && (await cache.match(url));
  if (hit) {
    const blob = await hit.blob();
    const sameHash = !expect?.sha256 || hit.headers.get("x-cria-sha256") === expect.sha256;
    if (!expect || (blob.size === expect.size && sameHash)) {
      onBytes("cache", url, blob.size, blob.size);
      return blob;
    }
    await cache.delete(url); // a stale or damaged copy: fetch again
  }
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new CriaError("network", `cannot fetch ${url}: ${e.message}. Hint: check the address and the connection (and CORS, for another origin)`);
  }
  if (!response.ok) {
    if (optional && response.status === 404) return null;
    throw new CriaError(
      "http",
      `HTTP ${response.status} ${response.statusText} fetching ${url}. Hint: ${response.status === 404 ? "the model folder has no such file; check the URL (a Hugging Face folder is https://huggingface.co/ORG/NAME/resolve/main/)" : "the server refused the download"}`,
    );
  }
  const encoded = response.headers.get("content-encoding");
  const declared = !encoded && response.headers.get("content-length") !== null ? Number(response.headers.get("content-length")) : undefined;
  const total = expect?.size ?? declared;
  const hasher = expect?.sha256 ? new Sha256() : null;
  const staging = cache && (await openCache(STAGING_NAME));
  let body = response.body;
  let storing = null;
  if (staging) {
    const [forCache, forCheck] = body.tee();
    storing = staging.put(url, new Response(forCache)).catch((e) => e);
    body = forCheck;
  }
  const chunks = staging ? null : [];
  const reader = body.getReader();
  let received = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.byteLength;
      hasher?.update(value);
      chunks?.push(value);
      onBytes("download", url, value.byteLength, total);
    }
  } catch (e) {
    await storing;
    await staging?.delete(url);
    throw new CriaError(
      "truncated",
      `the download of ${url} broke off after ${received}${total !== undefined ? ` of ${total}` : ""} bytes (${e.message}). Hint: load again; nothing partial was kept`,
    );
  }
  const stored = await storing;
  const fail = async (code, message) => {
    await staging?.delete(url);
    throw new CriaError(code, message);
  };
  if (stored instanceof Error) await fail("cache", `cannot store ${url} in the browser's cache: ${stored.message}. Hint: free disk space or allow site storage`);
  if (total !== undefined && received !== total) {
    await fail("truncated", `the download of ${url} is ${received} bytes, but ${expect ? "the manifest says" : "the server announced"} ${total}. Hint: the file is truncated or changed; load again`);
  }
  let sha256 = null;
  if (hasher) {
    sha256 = hasher.hexDigest();
    if (sha256 !== expect.sha256) await fail("checksum", `sha256 of ${url} is ${sha256}, but the manifest says ${expect.sha256}. Hint: the file is corrupt or not the one the manifest describes`);
  }
  if (!staging) return new Blob(chunks);
  const staged = await staging.match(url);
  // The verified hash travels with the cached copy: a later manifest with another hash refetches.
  const headers = new Headers(staged.headers);
  if (sha256) headers.set("x-cria-sha256", sha256);
  const blob = await staged.blob();
  await cache.put(url, new Response(blob, { headers }));
  await staging.delete(url);
  return (await cache.match(url)).blob();
}

/** A model's manifest: fresh from the network (it is small, and says whether cached files are
 * still current), else the cached copy (offline). */
async function fetchManifest(url) {
  let text;
  try {
    const response = await fetch(url, { cache: "no-cache" });
    if (!response.ok) throw new CriaError("http", `HTTP ${response.status} ${response.statusText} fetching ${url}. Hint: the model folder has no manifest.json`);
    text = await response.text();
    const cache = await openCache();
    await cache?.put(url, new Response(text, { headers: { "content-type": "application/json" } }));
  } catch (e) {
    const hit = await (await openCache())?.match(url);
    if (!hit) throw e instanceof CriaError ? e : new CriaError("network", `cannot fetch ${url}: ${e.message}. Hint: check the connection`);
    text = await hit.text();
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CriaError("bad-model", `${url} is not valid JSON (${e.message})`);
  }
}

/** Synchronous random access to a Blob: FileReaderSync in a worker, memory on the page. */
async function reader(name, blob) {
  if (typeof FileReaderSync !== "undefined") {
    const fr = new FileReaderSync();
    return { name, size: blob.size, read: (offset, length) => new Uint8Array(fr.readAsArrayBuffer(blob.slice(offset, offset + length))) };
  }
  const bytes = new Uint8Array(await blob.arrayBuffer());
  return { name, size: blob.size, read: (offset, length) => bytes.slice(offset, offset + length) };
}

async function bytesOf(blob) {
  return blob ? new Uint8Array(await blob.arrayBuffer()) : undefined;
}

function weightShards(indexText, url) {
  let index;
  try {
    index = JSON.parse(indexText);
  } catch (e) {
    throw new CriaError("bad-model", `${url} is not valid JSON (${e.message}). Hint: the sharded checkpoint index is corrupt`);
  }
  const shards = [...new Set(Object.values(index.weight_map ?? {}))];
  if (!shards.length || shards.some((s) => typeof s !== "string" || s.includes("/"))) {
    throw new CriaError("bad-model", `${url} lists no usable shards in weight_map. Hint: the sharded checkpoint index is corrupt`);
  }
  return shards;
}

/**
 * The files of a model folder at a URL (a Hugging Face `resolve/main/` folder, the bundled
 * model, any static folder with config.json, tokenizer.json and safetensors weights), or one
 * `.gguf` file. `manifest`: { files: { NAME: { size, sha256 } } } when known.
 */
async function fromUrl(url, manifest, progress) {
  const bytes = progress.bytes;
  if (/\.gguf([?#].*)?$/i.test(url)) {
    const blob = await cachedFile(url, manifest?.files?.[url.split("/").pop()], { onBytes: bytes });
    return { format: "gguf", files: [await reader(url, blob)] };
  }
  const base = url.endsWith("/") ? url : `${url}/`;
  const get = (name, optional = false) => cachedFile(base + name, manifest?.files?.[name], { optional, onBytes: bytes });
  const [config, tokenizer, tokenizerConfig, generationConfig] = await Promise.all([
    get("config.json"),
    get("tokenizer.json"),
    get("tokenizer_config.json", true),
    get("generation_config.json", true),
  ]);
  const listed = manifest?.files ? Object.keys(manifest.files).filter((n) => n.endsWith(".safetensors")) : null;
  let shards = listed?.length ? listed : null;
  if (!shards) {
    const single = await get("model.safetensors", true);
    if (single) {
      return spec(config, tokenizer, tokenizerConfig, generationConfig, [await reader(`${base}model.safetensors`, single)]);
    }
    const index = await get("model.safetensors.index.json", true);
    if (!index) {
      throw new CriaError("http", `${base} has neither model.safetensors nor model.safetensors.index.json (HTTP 404). Hint: point at a folder with safetensors weights, or at a .gguf file`);
    }
    shards = weightShards(await index.text(), `${base}model.safetensors.index.json`);
  }
  const files = [];
  for (const name of shards) files.push(await reader(base + name, await get(name)));
  return spec(config, tokenizer, tokenizerConfig, generationConfig, files);
}

async function spec(config, tokenizer, tokenizerConfig, generationConfig, files) {
  return {
    format: "safetensors",
    config: await config.text(),
    tokenizer: await bytesOf(tokenizer),
    tokenizerConfig: await bytesOf(tokenizerConfig),
    generationConfig: generationConfig ? await generationConfig.text() : undefined,
    files,
  };
}

/** A model from the user's own files (a file picker or a drop): a .gguf, or a folder's files. */
async function fromFiles(files) {
  const byName = new Map(files.map((f) => [f.name, f]));
  const gguf = files.find((f) => /\.gguf$/i.test(f.name));
  if (gguf) return { format: "gguf", files: [await reader(gguf.name, gguf)] };
  for (const need of ["config.json", "tokenizer.json"]) {
    if (!byName.has(need)) {
      throw new CriaError("bad-model", `the chosen files have no ${need}. Hint: pick config.json, tokenizer.json and the .safetensors files of one model together (or one .gguf file)`);
    }
  }
  const weights = files.filter((f) => f.name.endsWith(".safetensors")).sort((a, b) => a.name.localeCompare(b.name));
  if (!weights.length) throw new CriaError("bad-model", "the chosen files have no .safetensors weights. Hint: pick model.safetensors (or every shard) as well");
  const readers = [];
  for (const w of weights) readers.push(await reader(w.name, w));
  return spec(byName.get("config.json"), byName.get("tokenizer.json"), byName.get("tokenizer_config.json"), byName.get("generation_config.json"), readers);
}

// ---- the engine ----------------------------------------------------------------------------

function optionsJson(o = {}) {
  const out = {
    max_tokens: o.maxTokens ?? o.max_tokens ?? o.max_completion_tokens,
    temperature: o.temperature,
    top_k: o.topK ?? o.top_k,
    top_p: o.topP ?? o.top_p,
    min_p: o.minP ?? o.min_p,
    repetition_penalty: o.repetitionPenalty ?? o.repetition_penalty,
    seed: o.seed,
    stop: o.stop === undefined || o.stop === null ? undefined : Array.isArray(o.stop) ? o.stop : [o.stop],
  };
  return JSON.stringify(out, (_, v) => (v === null ? undefined : v));
}

export class Core {
  #engine = null;
  #lost = false;
  #adapter = "";

  static async create() {
    if (!globalThis.navigator?.gpu) throw noWebGpuError();
    await initWasm();
    const core = new Core();
    await core.#device();
    // wgpu does not see the browser's adapter details; WebGPU's own GPUAdapterInfo has them.
    const info = (await navigator.gpu.requestAdapter().catch(() => null))?.info;
    core.#adapter = info ? [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") : "";
    return core;
  }

  async #device() {
    if (!this.#engine || this.#lost) {
      try {
        this.#engine?.free();
      } catch {
        /* a lost device's engine may refuse; it is dropped either way */
      }
      this.#engine = null;
      try {
        this.#engine = await Engine.create();
      } catch (e) {
        throw classify(e);
      }
      this.#lost = false;
    }
    return this.#engine;
  }

  #failed(e) {
    const err = classify(e);
    if (err.code === "device-lost") this.#lost = true;
    return err;
  }

  /** The adapter as the browser names it, then the device's features and limits. */
  describe() {
    return `WebGPU adapter: ${this.#adapter || "(the browser gives no name)"}\n${this.#engine?.describe() ?? ""}`;
  }

  /**
   * source: { kind: "url", url, name?, manifest? } | { kind: "files", files: File[] }.
   * onProgress({ phase: "download" | "cache" | "upload" | "compile", loaded, total, file? }).
   */
  async load(source, options = {}, onProgress = () => {}) {
    const engine = await this.#device(); // a lost device is replaced here: the engine stays usable
    // Bytes over all files of the model, per phase; a file's size counts once it is known (the
    // manifest or the server says it), so `total` can grow while files start downloading.
    const loaded = { download: 0, cache: 0 };
    const sizes = { download: new Map(), cache: new Map() };
    const progress = {
      bytes: (phase, url, n, size) => {
        loaded[phase] += n;
        if (size !== undefined) sizes[phase].set(url, size);
        const known = [...sizes[phase].values()].reduce((a, b) => a + b, 0);
        onProgress({ phase, file: url, loaded: loaded[phase], total: known >= loaded[phase] ? known : undefined });
      },
    };
    let model;
    if (source.kind === "files") {
      model = await fromFiles(source.files);
    } else {
      let manifest = source.manifest;
      const base = source.url.endsWith("/") || /\.gguf/i.test(source.url) ? source.url : `${source.url}/`;
      if (manifest === true) manifest = await fetchManifest(`${base}manifest.json`);
      model = await fromUrl(source.url, manifest, progress);
    }
    const name = source.name ?? (source.kind === "files" ? source.files.map((f) => f.name).find((n) => /\.gguf$/i.test(n)) ?? "local files" : source.url);
    const loadOptions = JSON.stringify({ context: options.context, dtype: options.dtype });
    try {
      engine.load({ ...model, name, options: loadOptions }, (tensor, loaded, total) => onProgress({ phase: "upload", loaded, total, file: tensor }));
      // Shader compilation now rather than in the first reply's time to first token.
      onProgress({ phase: "compile", loaded: 0, total: 1 });
      await engine.warmUp();
      onProgress({ phase: "compile", loaded: 1, total: 1 });
    } catch (e) {
      throw this.#failed(e);
    }
    return JSON.parse(engine.modelInfo());
  }

  /** Bytes of the wasm heap (it only grows: this is its high-water mark). */
  memory() {
    return { wasm_heap_bytes: wasmMemory?.buffer.byteLength ?? 0 };
  }

  /** The loaded model's info, or null. */
  info() {
    const json = this.#engine?.modelInfo();
    return json ? JSON.parse(json) : null;
  }

  async run(kind, input, options, onChunk) {
    if (!this.#engine) throw new CriaError("no-model", "no model loaded. Hint: call Cria.load() first");
    if (this.#lost) throw new CriaError("device-lost", "the GPU device was lost. Hint: load the model again (a new device is created) or reload the page");
    try {
      return kind === "chat"
        ? await this.#engine.chat(JSON.stringify(input), optionsJson(options), onChunk)
        : await this.#engine.generate(String(input), optionsJson(options), onChunk);
    } catch (e) {
      throw this.#failed(e);
    }
  }

  cancel() {
    this.#engine?.cancel();
  }

  destroyDevice() {
    this.#engine?.destroyDevice();
  }

  dispose() {
    try {
      this.#engine?.free();
    } finally {
      this.#engine = null;
    }
  }
}
