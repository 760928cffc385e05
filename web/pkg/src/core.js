// The engine where the model computes -- on WebGPU, or on the CPU kernels compiled to wasm32
// SIMD -- in the package's Web Worker (the default) or on the page's own thread. It fetches and caches model files, verifies them, hands them to the wasm
// module tensor by tensor and runs generations. Nothing here touches the DOM.

import init, { Engine, Sha256, modelFolderFiles, modelWeightFiles } from "../dist/cria_web.js";

export const BUNDLED_URL = new URL("../models/shakespeare/", import.meta.url).href;
export const BUNDLED_NAME = "shakespeare (bundled)";
const CACHE_NAME = "cria-models-v1";

/** An error with a message that says what went wrong and a hint; `code` names the kind. */
export class CriaError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "CriaError";
    this.code = code;
  }
}

export function noWebGpuError(what = "WebGPU is not available here (navigator.gpu is missing)") {
  return new CriaError(
    "no-webgpu",
    `${what}. Hint: load with { device: "cpu" } (or "auto"), or use Chrome or Edge 113+, Safari 26+ ` +
      "or Firefox 141+; on Linux start Chrome with --enable-unsafe-webgpu (or turn on " +
      "chrome://flags/#enable-unsafe-webgpu); the page must be served over https or from localhost.",
  );
}

const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|warp|basic render/i;

/**
 * The device a `device` option ("auto", "gpu" or "cpu") resolves to here, and why:
 * `{ device: "gpu" | "cpu", reason, adapter }`. "auto" takes the GPU unless the browser has no
 * WebGPU, offers no adapter, or only a software one (SwiftShader, llvmpipe, WARP: the CPU
 * kernels are faster than a rasteriser on the same cores). "gpu" without WebGPU rejects.
 */
export async function chooseDevice(requested = "auto") {
  if (!["auto", "gpu", "cpu"].includes(requested)) {
    throw new CriaError("bad-request", `device must be "auto", "gpu" or "cpu", not ${JSON.stringify(requested)}`);
  }
  if (requested === "cpu") return { device: "cpu", reason: 'device "cpu" was asked for', adapter: "" };
  if (!globalThis.navigator?.gpu) {
    if (requested === "gpu") throw noWebGpuError();
    return { device: "cpu", reason: "WebGPU is not available here (navigator.gpu is missing)", adapter: "" };
  }
  const adapter = await navigator.gpu.requestAdapter().catch(() => null);
  const info = adapter?.info;
  const name = info ? [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(" ") : "";
  if (requested === "gpu") {
    if (!adapter) throw noWebGpuError("the browser offers no WebGPU adapter (WebGPU is turned off or blocked here)");
    return { device: "gpu", reason: 'device "gpu" was asked for', adapter: name };
  }
  if (!adapter) return { device: "cpu", reason: "the browser offers no WebGPU adapter (WebGPU is turned off or blocked here)", adapter: "" };
  if (info?.isFallbackAdapter || SOFTWARE_ADAPTER.test(name)) {
    return { device: "cpu", reason: `the only WebGPU adapter is a software renderer (${name || "a fallback adapter"}): the CPU computes faster`, adapter: name };
  }
  return { device: "gpu", reason: "a WebGPU adapter was found", adapter: name };
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

async function openCache() {
  try {
    return typeof caches === "undefined" ? null : await caches.open(CACHE_NAME);
  } catch {
    return null; // opaque origins and some private modes have no Cache API
  }
}

/** Download chunks are gathered into Blobs of this size: the browser keeps Blob bytes out of
 * the page's heap (and pages big ones to disk), so a download never sits in JS memory whole. */
const BLOB_PART_BYTES = 8 << 20;

/**
 * One file of a model at `url`, from the Cache API when a verified copy is there, else
 * downloaded: streamed, counted and hashed into a Blob, verified (size; sha256 when `expect`
 * has one), and only then offered to the Cache API. A cache that refuses (quota, private
 * mode, an internal error) never fails the load: the verified Blob is used uncached and the
 * next load tries again. `expect`: { size, sha256 } from a manifest, when known.
 * `onBytes(phase, url, n, total)` reports bytes; `onCached(url, cached, reason)` reports the
 * outcome of a download. Resolves to a Blob, or null for an optional file the server does not
 * have (404).
 */
async function cachedFile(url, expect, { optional = false, onBytes = () => {}, onCached = () => {} } = {}) {
  const cache = await openCache();
  const hit = cache && (await cache.match(url).catch(() => null));
  if (hit) {
    const blob = await hit.blob();
    const sameHash = !expect?.sha256 || hit.headers.get("x-cria-sha256") === expect.sha256;
    if (!expect || (blob.size === expect.size && sameHash)) {
      onBytes("cache", url, blob.size, blob.size);
      return blob;
    }
    await cache.delete(url).catch(() => {}); // a stale or damaged copy: fetch again
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
  const parts = [];
  let pending = [];
  let pendingBytes = 0;
  const flush = () => {
    if (pending.length) parts.push(new Blob(pending));
    pending = [];
    pendingBytes = 0;
  };
  const reader = response.body.getReader();
  let received = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.byteLength;
      hasher?.update(value);
      pending.push(value);
      pendingBytes += value.byteLength;
      if (pendingBytes >= BLOB_PART_BYTES) flush();
      onBytes("download", url, value.byteLength, total);
    }
  } catch (e) {
    throw new CriaError(
      "truncated",
      `the download of ${url} broke off after ${received}${total !== undefined ? ` of ${total}` : ""} bytes (${e.message}). Hint: load again; nothing partial was kept`,
    );
  }
  flush();
  if (total !== undefined && received !== total) {
    throw new CriaError("truncated", `the download of ${url} is ${received} bytes, but ${expect ? "the manifest says" : "the server announced"} ${total}. Hint: the file is truncated or changed; load again`);
  }
  let sha256 = null;
  if (hasher) {
    sha256 = hasher.hexDigest();
    if (sha256 !== expect.sha256) throw new CriaError("checksum", `sha256 of ${url} is ${sha256}, but the manifest says ${expect.sha256}. Hint: the file is corrupt or not the one the manifest describes`);
  }
  const blob = new Blob(parts, { type: response.headers.get("content-type") ?? "" });
  if (!cache) {
    onCached(url, false, "the Cache API is not available here (an opaque origin, or a private mode without it)");
    return blob;
  }
  // The verified hash travels with the cached copy: a later manifest with another hash refetches.
  const headers = new Headers({ "content-length": String(blob.size) });
  if (sha256) headers.set("x-cria-sha256", sha256);
  try {
    await cache.put(url, new Response(blob, { headers }));
    const stored = await cache.match(url);
    if (!stored) throw new Error("the cache kept no copy");
    onCached(url, true);
    // The cached copy lives on disk; the downloaded Blob can go.
    return await stored.blob();
  } catch (e) {
    await cache.delete(url).catch(() => {});
    onCached(url, false, `the browser's cache refused ${url}: ${e?.name ? `${e.name}: ` : ""}${e?.message ?? e}`);
    return blob;
  }
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
    await cache?.put(url, new Response(text, { headers: { "content-type": "application/json" } })).catch(() => {}); // a refusing cache only costs offline use
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
  return new Uint8Array(await blob.arrayBuffer());
}

/** The small files of a model folder, as the runtime reads them (one table for every way in). */
function folderFiles() {
  return JSON.parse(modelFolderFiles());
}

/** The weights files of a folder: the shards its index lists, else model.safetensors. */
function weightFiles(files, where) {
  const index = files["model.safetensors.index.json"];
  try {
    return modelWeightFiles(index ? new TextDecoder().decode(index) : undefined);
  } catch (e) {
    throw new CriaError("bad-model", `${where}: ${e.message}`);
  }
}

/**
 * A model folder at a URL (a Hugging Face `resolve/main/` folder, the bundled model, any static
 * folder with config.json, tokenizer.json and safetensors weights), or one `.gguf` file.
 * `manifest`: { files: { NAME: { size, sha256 } } } when known; it then lists every file the
 * folder has, and no other is asked for.
 */
async function fromUrl(url, manifest, progress) {
  const opts = (optional) => ({ optional, onBytes: progress.bytes, onCached: progress.cached });
  if (/\.gguf([?#].*)?$/i.test(url)) {
    const blob = await cachedFile(url, manifest?.files?.[url.split("/").pop()], opts(false));
    return { format: "gguf", weights: [await reader(url, blob)] };
  }
  const base = url.endsWith("/") ? url : `${url}/`;
  const listed = manifest?.files;
  const get = (name, optional) => cachedFile(base + name, listed?.[name], opts(optional));
  const wanted = folderFiles().filter((f) => f.required || !listed || f.name in listed);
  const blobs = await Promise.all(wanted.map((f) => get(f.name, !f.required)));
  const files = {};
  for (const [i, f] of wanted.entries()) if (blobs[i]) files[f.name] = await bytesOf(blobs[i]);
  const weights = [];
  for (const name of weightFiles(files, `${base}model.safetensors.index.json`)) {
    const indexed = "model.safetensors.index.json" in files;
    const blob = await get(name, !indexed);
    if (!blob) {
      throw new CriaError("http", `${base} has neither model.safetensors nor model.safetensors.index.json (HTTP 404). Hint: point at a folder with safetensors weights, or at a .gguf file`);
    }
    weights.push(await reader(name, blob));
  }
  return { format: "folder", base, files, weights };
}

/** A model from the user's own files (a file picker or a drop): a .gguf, or a folder's files. */
async function fromFiles(chosen) {
  const byName = new Map(chosen.map((f) => [f.name, f]));
  const gguf = chosen.find((f) => /\.gguf$/i.test(f.name));
  if (gguf) return { format: "gguf", weights: [await reader(gguf.name, gguf)] };
  const files = {};
  for (const f of folderFiles()) {
    if (byName.has(f.name)) files[f.name] = await bytesOf(byName.get(f.name));
    else if (f.required) {
      throw new CriaError("bad-model", `the chosen files have no ${f.name}. Hint: pick all the files of one model folder together (config.json, tokenizer.json, the .safetensors weights, and chat_template.jinja, tokenizer_config.json, generation_config.json where it has them), or one .gguf file`);
    }
  }
  const weights = [];
  for (const name of weightFiles(files, "model.safetensors.index.json")) {
    if (!byName.has(name)) {
      const shards = !("model.safetensors.index.json" in files) && chosen.some((f) => f.name.endsWith(".safetensors"));
      throw new CriaError("bad-model", `the chosen files have no ${name}. Hint: ${shards ? "a sharded checkpoint needs its model.safetensors.index.json too" : "pick the model's .safetensors weights (every shard its index lists) as well"}`);
    }
    weights.push(await reader(name, byName.get(name)));
  }
  return { format: "folder", base: "", files, weights };
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
  #choice = null;

  /** `choice`: what `chooseDevice` resolved (on the page: a worker sees another navigator). */
  static async create(choice) {
    if (choice?.device !== "gpu" && choice?.device !== "cpu") throw new CriaError("bad-request", "Core.create: no device chosen");
    if (choice.device === "gpu" && !globalThis.navigator?.gpu) throw noWebGpuError();
    await initWasm();
    const core = new Core();
    core.#choice = choice;
    await core.#device();
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
        this.#engine = await Engine.create(this.#choice.device);
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

  /** "gpu" or "cpu". */
  get device() {
    return this.#choice.device;
  }

  /** Which device and why; for a GPU, the adapter as the browser names it (wgpu does not see
   * it), then the device's features and limits. */
  describe() {
    const { device, reason, adapter } = this.#choice;
    const head = `device: ${device} — ${reason}`;
    if (device === "cpu") return `${head}\n${this.#engine?.describe() ?? ""}`;
    return `${head}\nWebGPU adapter: ${adapter || "(the browser gives no name)"}\n${this.#engine?.describe() ?? ""}`;
  }

  /**
   * source: { kind: "url", url, name?, manifest? } | { kind: "files", files: File[] }.
   * onProgress({ phase: "download" | "cache" | "upload" | "compile", loaded, total, file? }), and
   * once, between the files and the upload, { phase: "plan", memory } (the device memory the
   * model will take; a model that does not fit is refused right after, before any upload).
   */
  async load(source, options = {}, onProgress = () => {}) {
    const engine = await this.#device(); // a lost device is replaced here: the engine stays usable
    // Bytes over all files of the model, per phase; a file's size counts once it is known (the
    // manifest or the server says it), so `total` can grow while files start downloading.
    const loaded = { download: 0, cache: 0 };
    const sizes = { download: new Map(), cache: new Map() };
    const total = (phase) => {
      const known = [...sizes[phase].values()].reduce((a, b) => a + b, 0);
      return known >= loaded[phase] ? known : undefined;
    };
    const progress = {
      bytes: (phase, url, n, size) => {
        loaded[phase] += n;
        if (size !== undefined) sizes[phase].set(url, size);
        onProgress({ phase, file: url, loaded: loaded[phase], total: total(phase) });
      },
      // A download's last event says whether the verified file went into the browser's cache.
      cached: (url, cached, reason) => onProgress({ phase: "download", file: url, loaded: loaded.download, total: total("download"), cached, ...(reason ? { reason } : {}) }),
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
    const loadOptions = JSON.stringify({ context: options.context, dtype: options.dtype, kv_cache: options.kvCache });
    try {
      engine.load(
        { ...model, name, options: loadOptions },
        (tensor, loaded, total) => onProgress({ phase: "upload", loaded, total, file: tensor }),
        (plan) => {
          const memory = JSON.parse(plan);
          onProgress({ phase: "plan", loaded: 0, total: memory.total, memory });
        },
      );
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
