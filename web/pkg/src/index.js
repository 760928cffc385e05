// Cria: run Llama-family models in the browser, on WebGPU or (without a usable GPU) on the CPU.
//
//   import { Cria } from "cria";
//   const cria = await Cria.load("bundled", { onProgress: (p) => console.log(p.phase, p.loaded, p.total) });
//   for await (const text of cria.generate("ROMEO:", { maxTokens: 64 })) output.append(text);
//   const reply = await cria.chat.completions.create({ messages: [{ role: "user", content: "Hi" }] });
//
// The engine runs in a dedicated Web Worker by default ({ worker: false } runs it on the page's
// thread). Calls are queued: a second generate() waits for the first, never interleaves.

import { BUNDLED_NAME, BUNDLED_URL, Core, CriaError, chooseDevice } from "./core.js";

export { CriaError };

function abortError(reason) {
  const err = new CriaError("cancelled", typeof reason?.message === "string" ? reason.message : "generation was cancelled");
  err.name = "AbortError";
  return err;
}

/** `source` as the engine takes it: "bundled" (default), a URL string or URL, Files, or { url, manifest, name }. */
function normalizeSource(source) {
  if (source === undefined || source === null || source === "bundled") return { kind: "url", url: BUNDLED_URL, name: BUNDLED_NAME, manifest: true };
  if (typeof source === "string" || source instanceof URL) return { kind: "url", url: new URL(String(source), globalThis.location?.href).href };
  if (typeof FileList !== "undefined" && source instanceof FileList) source = [...source];
  if (typeof File !== "undefined" && source instanceof File) source = [source];
  if (Array.isArray(source)) {
    if (!source.length || !source.every((f) => typeof File !== "undefined" && f instanceof File)) {
      throw new CriaError("bad-source", "Cria.load(files): expected File objects (from a file picker or a drop). Hint: pass input.files");
    }
    return { kind: "files", files: source };
  }
  if (typeof source === "object" && source.url) {
    return { kind: "url", url: new URL(String(source.url), globalThis.location?.href).href, name: source.name, manifest: source.manifest };
  }
  throw new CriaError("bad-source", `Cria.load(): cannot load from ${String(source)}. Hint: pass "bundled", a model folder URL, a .gguf URL, or File objects`);
}

/** The engine on this thread. */
class LocalBackend {
  #core;
  static async create(choice) {
    const b = new LocalBackend();
    b.#core = await Core.create(choice);
    return b;
  }
  describe() {
    return this.#core.describe();
  }
  load(source, options, onProgress) {
    return this.#core.load(source, options, onProgress);
  }
  run(kind, input, options, onChunk) {
    return this.#core.run(kind, input, options, onChunk);
  }
  cancel() {
    this.#core.cancel();
  }
  async destroyDevice() {
    this.#core.destroyDevice();
  }
  async info() {
    return this.#core.info();
  }
  async memory() {
    return this.#core.memory();
  }
  dispose() {
    this.#core.dispose();
  }
}

/** The engine in a dedicated worker. */
class WorkerBackend {
  #worker;
  #next = 1;
  #pending = new Map();
  #describe = "";

  static async create(choice) {
    if (typeof Worker === "undefined") throw new CriaError("no-worker", "this environment has no Web Workers. Hint: pass { worker: false }");
    const b = new WorkerBackend();
    b.#worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "cria" });
    b.#worker.onmessage = ({ data }) => b.#receive(data);
    b.#worker.onerror = (e) => {
      e.preventDefault?.();
      b.#failAll(new CriaError("worker", `the Cria worker failed: ${e.message || "it could not start"}. Hint: serve the package's files from one origin over http(s)`));
    };
    b.#describe = await b.#call({ op: "create", choice });
    return b;
  }

  #receive({ id, type, ...rest }) {
    const p = this.#pending.get(id);
    if (!p) return;
    if (type === "progress") p.onProgress?.(rest.progress);
    else if (type === "chunk") p.onChunk?.(rest.text);
    else {
      this.#pending.delete(id);
      if (type === "result") p.resolve(rest.value);
      else p.reject(Object.assign(new CriaError(rest.error.code ?? "runtime", rest.error.message), { name: rest.error.code === "cancelled" ? "AbortError" : "CriaError" }));
    }
  }

  #failAll(err) {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  #call(message, handlers = {}) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, ...handlers });
      this.#worker.postMessage({ id, ...message });
    });
  }

  describe() {
    return this.#describe;
  }
  load(source, options, onProgress) {
    return this.#call({ op: "load", source, options }, { onProgress });
  }
  run(kind, input, options, onChunk) {
    return this.#call({ op: "run", kind, input, options }, { onChunk });
  }
  cancel() {
    this.#worker.postMessage({ id: 0, op: "cancel" });
  }
  destroyDevice() {
    return this.#call({ op: "destroyDevice" });
  }
  info() {
    return this.#call({ op: "info" });
  }
  memory() {
    return this.#call({ op: "memory" });
  }
  dispose() {
    this.#worker.terminate();
    this.#failAll(new CriaError("disposed", "the engine was disposed"));
  }
}

/** Text chunks as they arrive, for `for await`; `result` resolves to the final object. */
class Channel {
  #items = [];
  #waiting = null;
  #done = false;
  #error = null;
  constructor(onReturn) {
    this.onReturn = onReturn;
  }
  push(item) {
    if (this.#waiting) {
      this.#waiting.resolve({ value: item, done: false });
      this.#waiting = null;
    } else this.#items.push(item);
  }
  end(error) {
    this.#done = true;
    this.#error = error ?? null;
    if (this.#waiting) {
      if (error) this.#waiting.reject(error);
      else this.#waiting.resolve({ value: undefined, done: true });
      this.#waiting = null;
    }
  }
  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this.#items.length) return Promise.resolve({ value: this.#items.shift(), done: false });
        if (this.#done) return this.#error ? Promise.reject(this.#error) : Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
      },
      return: () => {
        // Leaving a `for await` early stops the generation.
        if (!this.#done) this.onReturn();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

let completionCounter = 0;

export class Cria {
  #backend;
  #device;
  #queue = Promise.resolve();
  #running = null;
  /** The loaded model: { name, parameters, weight_bytes, weight_types, context, vocab_size, chat_template }. */
  info = null;

  constructor(backend, device) {
    this.#backend = backend;
    this.#device = device;
    this.chat = { completions: { create: (request) => this.#chatCompletion(request) } };
  }

  /**
   * Creates an engine and loads a model. `source`: "bundled" (the default model shipped in this
   * package), the URL of a Hugging Face model folder (https://huggingface.co/ORG/NAME/resolve/main/)
   * or of a .gguf file, File objects (a model folder's files, or one .gguf), or { url, manifest }.
   * options: { onProgress({ phase, loaded, total, file, memory }), worker = true, device =
   * "auto" ("gpu", "cpu"), context, dtype, kvCache }.
   */
  static async load(source = "bundled", options = {}) {
    const { worker = true, device = "auto" } = options;
    const normalized = normalizeSource(source);
    // Chosen here, on the page: the worker's navigator may differ from the one the page sees.
    const choice = await chooseDevice(device);
    const backend = worker ? await WorkerBackend.create(choice) : await LocalBackend.create(choice);
    const cria = new Cria(backend, choice.device);
    try {
      await cria.#loadNormalized(normalized, options);
    } catch (e) {
      backend.dispose();
      throw e;
    }
    return cria;
  }

  /** The device the engine computes on: "gpu" (WebGPU) or "cpu" (the CPU kernels, wasm32 SIMD). */
  get device() {
    return this.#device;
  }

  /** Which device and why it was chosen; for a GPU, the WebGPU adapter, its features and limits. */
  get adapter() {
    return this.#backend.describe();
  }

  /** Replaces the loaded model (queued after running generations). If it fails, `info` says
   * what is loaded: the previous model when the new files never reached the GPU, else none. */
  load(source = "bundled", options = {}) {
    const normalized = normalizeSource(source);
    return this.#loadNormalized(normalized, options);
  }

  #loadNormalized(source, options) {
    const { onProgress, context, dtype, kvCache } = options;
    return this.#enqueue(async () => {
      try {
        this.info = await this.#backend.load(source, { context, dtype, kvCache }, onProgress ?? (() => {}));
        return this.info;
      } catch (e) {
        // A failed download or a file that does not parse keeps the loaded model; a failure
        // during the upload leaves none.
        this.info = await this.#backend.info().catch(() => null);
        throw e;
      }
    });
  }

  #enqueue(job) {
    const run = this.#queue.then(job, job);
    this.#queue = run.catch(() => {});
    return run;
  }

  /**
   * Streams generated text: `for await (const text of cria.generate(prompt, options))`.
   * options: { maxTokens, temperature, topK, topP, minP, repetitionPenalty, seed, stop, signal }.
   * The returned object's `result` resolves to { text, tokens, prompt_tokens, finish,
   * time_to_first_token, decode_tokens_per_second }; an abort rejects both with an AbortError.
   */
  generate(prompt, options = {}) {
    return this.#stream("generate", prompt, options);
  }

  #stream(kind, input, options) {
    const { signal, ...rest } = options;
    let cancelled = false;
    let started = false;
    const cancel = () => {
      cancelled = true;
      if (started) this.#backend.cancel();
    };
    const channel = new Channel(cancel);
    if (signal?.aborted) cancelled = true;
    signal?.addEventListener("abort", cancel, { once: true });
    const result = this.#enqueue(async () => {
      if (cancelled) throw abortError(signal?.reason);
      started = true;
      try {
        return await this.#backend.run(kind, input, rest, (text) => channel.push(text));
      } catch (e) {
        throw e?.code === "cancelled" ? abortError(signal?.reason) : e;
      } finally {
        signal?.removeEventListener("abort", cancel);
      }
    });
    result.then(
      () => channel.end(),
      (e) => channel.end(e),
    );
    // The iterator reports the error; `result` must not also be an unhandled rejection.
    result.catch(() => {});
    return Object.assign(channel, { result });
  }

  async #chatCompletion(request) {
    const { messages, stream = false, signal, n, tools, model: _model, stream_options: _so, ...sampling } = request ?? {};
    if (n !== undefined && n !== 1) throw new CriaError("unsupported", "n > 1 is not supported. Hint: call create() once per completion");
    if (tools?.length) throw new CriaError("unsupported", "tools are not supported by this engine");
    if (!Array.isArray(messages)) throw new CriaError("bad-request", "messages must be an array of { role, content }");
    const id = `chatcmpl-cria-${Date.now().toString(36)}-${++completionCounter}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.info?.name ?? "cria";
    const finishReason = (finish) => (finish === "length" ? "length" : "stop");
    const usage = (r) => ({ prompt_tokens: r.prompt_tokens, completion_tokens: r.tokens.length, total_tokens: r.prompt_tokens + r.tokens.length });
    // Not in OpenAI's shape: timings, as other local engines add them (x_ prefix).
    const timings = (r) => ({ x_cria: { time_to_first_token: r.time_to_first_token, decode_tokens_per_second: r.decode_tokens_per_second, finish: r.finish } });
    const s = this.#stream("chat", messages, { ...sampling, signal });
    if (!stream) {
      const r = await s.result;
      return {
        id,
        object: "chat.completion",
        created,
        model,
        choices: [{ index: 0, message: { role: "assistant", content: r.text }, finish_reason: finishReason(r.finish), logprobs: null }],
        usage: usage(r),
        ...timings(r),
      };
    }
    const chunk = (delta, finish_reason = null, extra = {}) => ({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta, finish_reason, logprobs: null }], ...extra });
    async function* chunks() {
      yield chunk({ role: "assistant", content: "" });
      for await (const text of s) yield chunk({ content: text });
      const r = await s.result;
      yield chunk({}, finishReason(r.finish), { usage: usage(r), ...timings(r) });
    }
    return chunks();
  }

  /** Memory of the wasm heap: `{ wasm_heap_bytes }` (its high-water mark). On a GPU the weights
   * stream through it one tensor at a time; on the CPU they live in it. */
  memory() {
    return this.#backend.memory();
  }

  /** Destroys the GPU device as a driver reset would (for tests); later calls reject until load(). */
  destroyDevice() {
    return this.#enqueue(() => this.#backend.destroyDevice());
  }

  /** Ends the engine: the worker stops and GPU memory is freed. */
  dispose() {
    this.#backend.dispose();
  }
}
