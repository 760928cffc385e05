// The Cria demo: a chat (or plain completion) page over the `cria` package. It loads the bundled
// model at start, so it works offline; a URL or local files load other models.

import { Cria } from "../pkg/src/index.js";

const $ = (id) => document.getElementById(id);
const ui = {
  source: $("source"), url: $("url"), files: $("files"), load: $("load"), progress: $("progress"), status: $("status"),
  transcript: $("transcript"), ask: $("ask"), prompt: $("prompt"), send: $("send"), stop: $("stop"), clear: $("clear"),
  stats: $("stats"), adapter: $("adapter"), error: $("error"),
};

/** State the end-to-end test reads: the engine, the last generation's result and its chunk count. */
const demo = { cria: null, lastResult: null, chunks: 0, messages: [], phases: [], last: {}, notCached: [] };
window.demo = demo;

let controller = null;

function setState(state) {
  document.body.dataset.state = state;
  const busy = state === "loading" || state === "generating" || state === "starting";
  ui.send.disabled = busy || !demo.cria?.info;
  ui.load.disabled = state === "loading" || state === "generating";
  ui.stop.disabled = state !== "generating";
}

function showError(e) {
  ui.error.hidden = false;
  ui.error.textContent = e?.message ?? String(e);
}

function mib(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

function onProgress(p) {
  if (!demo.phases.includes(p.phase)) demo.phases.push(p.phase);
  demo.last[p.phase] = p;
  if (p.cached === false) demo.notCached.push(p);
  if (p.phase === "plan") {
    const m = p.memory;
    const weights = Object.entries(m.weights).map(([t, b]) => `${t} ${mib(b)}`).join(", ");
    ui.status.textContent = `needs ${mib(m.total)} of device memory: weights ${weights}, KV cache ${mib(m.kv_cache)} (${m.context} tokens, ${m.kv_cache_type}), activations ${mib(m.activations)}`;
    return;
  }
  const verb = { download: "downloading", cache: "reading from the browser's cache", upload: "loading the weights onto the device", compile: "warming up the kernels" }[p.phase];
  if (p.total) {
    ui.progress.value = p.loaded / p.total;
    ui.status.textContent = `${verb}: ${mib(p.loaded)} of ${mib(p.total)}`;
  } else {
    ui.progress.removeAttribute("value");
    ui.status.textContent = `${verb}: ${mib(p.loaded)}`;
  }
}

function chosenSource() {
  if (ui.source.value === "url") {
    if (!ui.url.value) throw new Error("Enter the URL of a model folder (config.json, tokenizer.json, model.safetensors) or of a .gguf file.");
    return ui.url.value;
  }
  if (ui.source.value === "files") {
    if (!ui.files.files.length) throw new Error("Choose the model's files: config.json, tokenizer.json and the .safetensors files (or one .gguf).");
    return [...ui.files.files];
  }
  return "bundled";
}

async function load() {
  ui.error.hidden = true;
  demo.phases = [];
  demo.last = {};
  demo.notCached = [];
  setState("loading");
  const started = performance.now();
  try {
    const source = chosenSource();
    if (!demo.cria) {
      // ?device=gpu|cpu|auto (default auto: WebGPU unless it is missing or only a software renderer).
      const device = new URLSearchParams(location.search).get("device") ?? "auto";
      demo.cria = await Cria.load(source, { onProgress, device });
      ui.adapter.textContent = demo.cria.adapter.split("\n").slice(0, demo.cria.device === "gpu" ? 2 : 1).join(" · ");
    } else {
      await demo.cria.load(source, { onProgress });
    }
    const info = demo.cria.info;
    ui.progress.value = 1;
    ui.status.textContent = `${info.name}: ${(info.parameters / 1e6).toFixed(1)} M parameters, ${info.weight_types}, context ${info.context}, ${info.device.toUpperCase()} memory ${mib(info.memory.total)} — ready in ${((performance.now() - started) / 1000).toFixed(1)} s`;
    if (demo.notCached.length) ui.status.textContent += ` (not cached, the next load downloads again: ${demo.notCached[0].reason})`;
    if (!info.chat_template) document.querySelector("input[value=complete]").checked = true;
    setState("ready");
  } catch (e) {
    showError(e);
    ui.status.textContent = "not loaded";
    setState(demo.cria?.info ? "ready" : "error");
  }
}

function turn(kind, text = "") {
  const div = document.createElement("div");
  div.className = `turn ${kind}`;
  div.textContent = text;
  ui.transcript.append(div);
  ui.transcript.scrollTop = ui.transcript.scrollHeight;
  return div;
}

function samplingOptions() {
  const num = (id) => Number($(id).value);
  return {
    maxTokens: num("max-tokens"), temperature: num("temperature"), topK: num("top-k"), topP: num("top-p"),
    minP: num("min-p"), repetitionPenalty: num("repetition-penalty"), seed: num("seed"),
  };
}

async function send(event) {
  event?.preventDefault();
  const text = ui.prompt.value;
  if (!text.trim() || !demo.cria?.info) return;
  ui.error.hidden = true;
  const mode = document.querySelector("input[name=mode]:checked").value;
  controller = new AbortController();
  const options = { ...samplingOptions(), signal: controller.signal };
  demo.chunks = 0;
  demo.lastResult = null;
  setState("generating");
  ui.stats.textContent = "…";
  let out;
  let generation;
  if (mode === "chat") {
    turn("user", text);
    out = turn("assistant");
    demo.messages.push({ role: "user", content: text });
    generation = streamChat(options);
  } else {
    out = turn("completion");
    const p = document.createElement("span");
    p.className = "prompt";
    p.textContent = text;
    out.append(p);
    generation = demo.cria.generate(text, options);
  }
  ui.prompt.value = "";
  const started = performance.now();
  let first = null;
  try {
    for await (const piece of generation) {
      first ??= performance.now();
      demo.chunks += 1;
      out.append(piece);
      ui.transcript.scrollTop = ui.transcript.scrollHeight;
    }
    const r = await generation.result;
    demo.lastResult = r;
    if (mode === "chat") demo.messages.push({ role: "assistant", content: r.text.trim() });
    ui.stats.textContent = `${r.tokens.length} tokens · ${r.decode_tokens_per_second.toFixed(1)} tokens/s · first token ${(r.time_to_first_token * 1000).toFixed(0)} ms`;
  } catch (e) {
    if (e.name === "AbortError") {
      out.classList.add("stopped");
      if (mode === "chat") demo.messages.pop();
      ui.stats.textContent = `stopped after ${first ? ((performance.now() - started) / 1000).toFixed(1) : 0} s`;
    } else {
      showError(e);
      if (mode === "chat") demo.messages.pop();
      ui.stats.textContent = "";
    }
  } finally {
    controller = null;
    setState("ready");
  }
}

/** Chat mode through the OpenAI-shaped API, as an app would use it. */
function streamChat(options) {
  const { maxTokens, temperature, topK, topP, minP, repetitionPenalty, seed, signal } = options;
  let resolveResult, rejectResult;
  const result = new Promise((res, rej) => ((resolveResult = res), (rejectResult = rej)));
  result.catch(() => {});
  async function* pieces() {
    try {
      const stream = await demo.cria.chat.completions.create({
        messages: demo.messages, stream: true, max_tokens: maxTokens, temperature, top_k: topK, top_p: topP,
        min_p: minP, repetition_penalty: repetitionPenalty, seed, signal,
      });
      let text = "";
      for await (const chunk of stream) {
        const piece = chunk.choices[0].delta.content;
        if (piece) {
          text += piece;
          yield piece;
        }
        if (chunk.usage) {
          resolveResult({ text, tokens: { length: chunk.usage.completion_tokens }, ...chunk.x_cria });
        }
      }
    } catch (e) {
      rejectResult(e);
      throw e;
    }
  }
  const it = pieces();
  return Object.assign(it, { result });
}

ui.source.addEventListener("change", () => {
  ui.url.hidden = ui.source.value !== "url";
  ui.files.hidden = ui.source.value !== "files";
});
ui.load.addEventListener("click", load);
ui.ask.addEventListener("submit", send);
ui.prompt.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) send(e);
});
ui.stop.addEventListener("click", () => controller?.abort());
ui.clear.addEventListener("click", () => {
  controller?.abort();
  demo.messages = [];
  ui.transcript.replaceChildren();
  ui.stats.textContent = "";
});
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => {
  e.preventDefault();
  if (!e.dataTransfer.files.length) return;
  ui.source.value = "files";
  ui.files.files = e.dataTransfer.files;
  ui.source.dispatchEvent(new Event("change"));
  load();
});

setState("starting");
load();
