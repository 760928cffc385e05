//! Cria in the browser: the wasm-bindgen core under the `cria` npm package (web/pkg), over the
//! `cria` runtime, which reaches WebGPU through wgpu's webgpu backend. The model never knows it
//! runs in a browser; this crate turns JS values into runtime calls and runtime errors into JS
//! `Error`s with the same message. Fetching, caching and the worker live in web/pkg/src (JS).
//!
//! ```js
//! const engine = await Engine.create("gpu"); // or "cpu": the same model code on wasm32 SIMD
//! // Each file is read on demand, one tensor at a time: the wasm heap never holds the model.
//! engine.load({ name, format: "folder", files: { "config.json": bytes, ... }, weights: [{ name, size, read }] }, onProgress, onPlan);
//! const result = await engine.generate("ROMEO:", JSON.stringify({ max_tokens: 64 }), (text) => out.append(text));
//! // result: { text, tokens, prompt_tokens, finish, time_to_first_token, decode_tokens_per_second }
//! ```
//!
//! Browser tests (`tests/`) run with `scripts/test-web.sh`.

use cria::generate::{FinishReason, GenerateOptions, Generation};
use cria::model::GenerationConfig;
use serde::{Deserialize, Serialize};

/// What `generate` accepts as its options JSON. Every field is optional: a given field wins,
/// then the model's generation_config.json, then greedy decoding (as the CLI's flags do).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionsJson {
    pub max_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
    #[serde(default)]
    pub stop: Vec<String>,
}

/// Turns `generate`'s options JSON (empty string: all defaults) into runtime options.
pub fn generate_options(json: &str, defaults: &GenerationConfig) -> cria::Result<GenerateOptions> {
    let o: OptionsJson = if json.trim().is_empty() {
        OptionsJson::default()
    } else {
        serde_json::from_str(json).map_err(|e| cria::Error::Config {
            path: "generate options".into(),
            field: "(options JSON)".into(),
            message: e.to_string(),
            hint: "fields: max_tokens, temperature, top_k, top_p, min_p, repetition_penalty, seed, stop (array of strings)".into(),
        })?
    };
    let d = &defaults.sampling;
    let base = GenerateOptions::default();
    Ok(GenerateOptions {
        max_tokens: o.max_tokens.unwrap_or(base.max_tokens),
        sampling: cria::sampling::SamplingOptions {
            temperature: o.temperature.unwrap_or(d.temperature),
            top_k: o.top_k.unwrap_or(d.top_k),
            top_p: o.top_p.unwrap_or(d.top_p),
            min_p: o.min_p.unwrap_or(d.min_p),
            repetition_penalty: o.repetition_penalty.unwrap_or(d.repetition_penalty),
            seed: o.seed.unwrap_or(0),
        },
        stop: o.stop,
        eos_ids: defaults.eos_token_ids.clone(),
        ..base
    })
}

/// What `generate` resolves to (as a plain JS object).
#[derive(Debug, Serialize)]
pub struct GenerationJson {
    pub text: String,
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    /// "length", "eos" or "stop".
    pub finish: &'static str,
    pub time_to_first_token: f64,
    pub decode_tokens_per_second: f64,
}

impl From<&Generation> for GenerationJson {
    fn from(g: &Generation) -> Self {
        GenerationJson {
            text: g.text.clone(),
            tokens: g.tokens.clone(),
            prompt_tokens: g.prompt_tokens,
            finish: match g.finish {
                FinishReason::Length => "length",
                FinishReason::Eos => "eos",
                FinishReason::Stop => "stop",
            },
            time_to_first_token: g.time_to_first_token,
            decode_tokens_per_second: g.decode_tokens_per_second(),
        }
    }
}

/// What `load` accepts as its options JSON: `{ "context": 512, "dtype": "q8_0", "kv_cache":
/// "f32" }`, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadOptionsJson {
    /// Tokens of context to allocate (default: 4096, or the model's maximum if smaller).
    pub context: Option<usize>,
    /// Convert the weights at load time: "f32", "f16", "bf16", "q8_0" or "q4_0" (default: each
    /// tensor keeps its file's type).
    pub dtype: Option<String>,
    /// Element type of the KV cache: "f16" (default) or "f32".
    pub kv_cache: Option<String>,
}

pub fn model_options(json: &str) -> cria::Result<cria::model::ModelOptions> {
    let o: LoadOptionsJson = if json.trim().is_empty() {
        LoadOptionsJson::default()
    } else {
        serde_json::from_str(json).map_err(|e| cria::Error::Config {
            path: "load options".into(),
            field: "(options JSON)".into(),
            message: e.to_string(),
            hint: "fields: context (tokens), dtype (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k), kv_cache (f16, f32)".into(),
        })?
    };
    let weight_dtype = o.dtype.as_deref().map(cria::ops::WeightDType::parse).transpose()?;
    let kv_cache = o.kv_cache.as_deref().map(cria::ops::attention::KvDType::parse).transpose()?.unwrap_or_default();
    Ok(cria::model::ModelOptions { context: o.context, weight_dtype, kv_cache })
}

/// One chat message as OpenAI's API writes it: `content` is a string or a list of
/// `{ "type": "text", "text": ... }` parts.
#[derive(Debug, Deserialize)]
struct MessageJson {
    role: String,
    content: ContentJson,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ContentJson {
    Text(String),
    Parts(Vec<PartJson>),
}

#[derive(Debug, Deserialize)]
struct PartJson {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

/// Parses a chat-completions `messages` array.
pub fn chat_messages(json: &str) -> cria::Result<Vec<cria::tokenizer::ChatMessage>> {
    let bad = |message: String| cria::Error::Config {
        path: "chat messages".into(),
        field: "messages".into(),
        message,
        hint: "pass [{ role: \"system\" | \"user\" | \"assistant\", content: \"...\" }, ...]".into(),
    };
    let messages: Vec<MessageJson> = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    if messages.is_empty() {
        return Err(bad("is empty".into()));
    }
    messages
        .into_iter()
        .map(|m| {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(bad(format!("has a message with role `{}`", m.role)));
            }
            let content = match m.content {
                ContentJson::Text(t) => t,
                ContentJson::Parts(parts) => parts
                    .into_iter()
                    .map(|p| match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => Ok(t),
                        (kind, _) => Err(bad(format!("has a content part of type `{kind}`; only text parts are supported"))),
                    })
                    .collect::<cria::Result<Vec<_>>>()?
                    .join(""),
            };
            Ok(cria::tokenizer::ChatMessage { role: m.role, content })
        })
        .collect()
}

#[cfg(target_arch = "wasm32")]
pub use wasm::{model_folder_files, model_weight_files, Engine, Sha256};

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::{chat_messages, generate_options, model_options, GenerationJson};
    use cria::generate::{ChatPrompt, GenerateOptions};
    use cria::model::folder::{self, Folder};
    use cria::model::safetensors::ByteSource;
    use cria::cpu::Pool;
    use cria::model::{Device, GenerationConfig, GgufModel, Llama, LoadProgress, ModelFiles};
    use cria::tokenizer::Tokenizer;
    use cria::{Gpu, GpuOptions};
    use sha2::Digest;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use wasm_bindgen::prelude::*;

    fn js_error(e: impl std::fmt::Display) -> JsValue {
        JsError::new(&e.to_string()).into()
    }

    fn field(obj: &JsValue, key: &str) -> JsValue {
        js_sys::Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    }

    fn spec_error(what: &str) -> JsValue {
        js_error(format!("load(): {what}. Hint: the spec is {{ name, format: \"folder\" | \"gguf\", base, files: {{ NAME: Uint8Array }}, weights: [{{ name, size, read(offset, length) }}] }}"))
    }

    /// A model folder as the page fetched it: the small files of [`folder::FOLDER_FILES`] it
    /// has (bytes by name) and its weights files (read on demand). `base` prefixes names in
    /// messages (the folder's URL).
    struct JsFolder {
        base: String,
        files: JsValue,
        weights: Vec<JsSource>,
    }

    impl Folder for JsFolder {
        type Weights = JsSource;
        fn path(&self, name: &str) -> String {
            format!("{}{name}", self.base)
        }
        fn read(&mut self, name: &str) -> cria::Result<Option<Vec<u8>>> {
            let value = field(&self.files, name);
            if value.is_undefined() || value.is_null() {
                return Ok(None);
            }
            let bytes: js_sys::Uint8Array = value.dyn_into().map_err(|_| cria::Error::Io { path: self.path(name), message: "was not handed over as a Uint8Array".into() })?;
            Ok(Some(bytes.to_vec()))
        }
        fn open(&mut self, name: &str) -> cria::Result<JsSource> {
            let i = self.weights.iter().position(|w| w.name == name).ok_or_else(|| cria::Error::Io {
                path: self.path(name),
                message: "is missing from the model's files. Hint: choose every weights file the model has (model.safetensors, or each shard model.safetensors.index.json lists)".into(),
            })?;
            let mut source = self.weights.swap_remove(i);
            source.name = self.path(name);
            Ok(source)
        }
    }

    /// The small files a model folder may have (`[{ name, required, holds }]`, JSON), in the
    /// order the runtime reads them: the package fetches exactly these.
    #[wasm_bindgen(js_name = modelFolderFiles)]
    pub fn model_folder_files() -> String {
        serde_json::to_string(folder::FOLDER_FILES).unwrap_or_default()
    }

    /// The weights files of a model folder: the shards `index` (model.safetensors.index.json
    /// text) lists, or model.safetensors.
    #[wasm_bindgen(js_name = modelWeightFiles)]
    pub fn model_weight_files(index: Option<String>) -> Result<Vec<String>, JsValue> {
        folder::weight_files(folder::WEIGHTS_INDEX, index.as_deref()).map_err(js_error)
    }

    /// A file the page holds (a cached download, a dropped `File`): `read(offset, length)`
    /// returns a `Uint8Array` of exactly `length` bytes. Only the tensor being uploaded is copied
    /// into the wasm heap.
    struct JsSource {
        name: String,
        size: u64,
        read: js_sys::Function,
    }

    impl ByteSource for JsSource {
        fn size(&self) -> u64 {
            self.size
        }
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> cria::Result<()> {
            let io = |message: String| cria::Error::Io { path: self.name.clone(), message };
            let got = self
                .read
                .call2(&JsValue::NULL, &JsValue::from_f64(offset as f64), &JsValue::from_f64(buf.len() as f64))
                .map_err(|e| io(format!("reading {} bytes at offset {offset}: {}", buf.len(), describe(&e))))?;
            let bytes: js_sys::Uint8Array = got.dyn_into().map_err(|_| io("read() did not return a Uint8Array".into()))?;
            if bytes.length() as usize != buf.len() {
                return Err(io(format!("asked for {} bytes at offset {offset}, got {}: the file is shorter than its header says", buf.len(), bytes.length())));
            }
            bytes.copy_to(buf);
            Ok(())
        }
    }

    fn describe(e: &JsValue) -> String {
        e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| e.as_string()).unwrap_or_else(|| format!("{e:?}"))
    }

    fn sources(spec: &JsValue) -> Result<Vec<JsSource>, JsValue> {
        let files = field(spec, "weights");
        if !js_sys::Array::is_array(&files) {
            return Err(spec_error("`weights` must be an array"));
        }
        js_sys::Array::from(&files)
            .iter()
            .map(|f| {
                let name = field(&f, "name").as_string().ok_or_else(|| spec_error("a file has no `name`"))?;
                let size = field(&f, "size").as_f64().filter(|s| *s >= 0.0).ok_or_else(|| spec_error(&format!("{name} has no `size`")))?;
                let read = field(&f, "read").dyn_into::<js_sys::Function>().map_err(|_| spec_error(&format!("{name} has no `read` function")))?;
                Ok(JsSource { name, size: size as u64, read })
            })
            .collect()
    }

    fn text(spec: &JsValue, key: &str) -> Option<String> {
        field(spec, key).as_string()
    }

    struct Loaded {
        name: String,
        llama: Llama,
        tokenizer: Tokenizer,
        defaults: GenerationConfig,
        parameters: usize,
        weight_bytes: u64,
    }

    /// A device (WebGPU, or the CPU of the worker's thread) and at most one loaded model.
    #[wasm_bindgen]
    pub struct Engine {
        device: Device,
        /// Shared with a running `generate`, which holds it mutably until it ends.
        model: Rc<RefCell<Option<Loaded>>>,
        cancel: Rc<AtomicBool>,
    }

    #[wasm_bindgen]
    impl Engine {
        /// `device`: "gpu" (the default) requests a WebGPU adapter and device, and rejects with
        /// the runtime's message (and how to enable WebGPU) when the browser offers none; "cpu"
        /// computes on this thread with the CPU kernels (wasm32 SIMD), which need nothing of
        /// the browser. Choosing between them (`auto`) is the package's job: it sees the
        /// adapter's name, which wgpu does not.
        pub async fn create(device: Option<String>) -> Result<Engine, JsValue> {
            let device = match device.as_deref().unwrap_or("gpu") {
                // The runtime's models hold an Arc<Gpu>; in the browser everything stays on one thread.
                #[allow(clippy::arc_with_non_send_sync)]
                "gpu" => Device::Gpu(Arc::new(Gpu::new(GpuOptions::default()).await.map_err(js_error)?)),
                // One thread: a worker's threads need shared memory (cross-origin isolation).
                "cpu" => Device::Cpu(Arc::new(Pool::new(1))),
                other => return Err(js_error(format!("Engine.create: device {other:?} is neither \"gpu\" nor \"cpu\""))),
            };
            Ok(Engine { device, model: Rc::new(RefCell::new(None)), cancel: Rc::new(AtomicBool::new(false)) })
        }

        /// "gpu" or "cpu".
        pub fn device(&self) -> String {
            match self.device {
                Device::Gpu(_) => "gpu".into(),
                Device::Cpu(_) => "cpu".into(),
            }
        }

        /// The device: a GPU's adapter, features and limits, one per line; or the CPU's threads
        /// and instruction set.
        pub fn describe(&self) -> String {
            self.device.describe()
        }

        /// Loads a model, replacing any loaded one. A file that fails to parse (config, tokenizer,
        /// weight headers) leaves the loaded model in place; once the upload starts the old
        /// weights are freed first, so a failure there leaves no model. `spec`:
        /// `{ name, format: "folder" | "gguf", base? (the folder's URL, for messages), files:
        /// { NAME: Uint8Array } (the small files of `modelFolderFiles()` the folder has),
        /// weights: [{ name, size, read(offset, length) => Uint8Array }], options? (JSON:
        /// context, dtype, kv_cache) }`; a GGUF model is one weights file that carries its own
        /// config and tokenizer. `on_plan(json)` is called once the headers are read, before any
        /// upload, with the GPU memory the model will take (`MemoryPlan::to_json`); a model
        /// that does not fit the device is refused right after. `on_progress(tensor,
        /// bytes_done, bytes_total)` is called after each tensor reaches the GPU.
        pub fn load(&self, spec: JsValue, on_progress: js_sys::Function, on_plan: js_sys::Function) -> Result<(), JsValue> {
            let mut slot = self.model.try_borrow_mut().map_err(|_| js_error("cannot load a model while a generation is running"))?;
            let name = text(&spec, "name").unwrap_or_else(|| "model".into());
            let options = model_options(&text(&spec, "options").unwrap_or_default()).map_err(js_error)?;
            let mut sources = sources(&spec)?;
            let mut files = match text(&spec, "format").as_deref() {
                Some("gguf") => {
                    if sources.len() != 1 {
                        return Err(spec_error("a GGUF model is one file"));
                    }
                    let file = sources.remove(0);
                    let path = file.name.clone();
                    let gguf = GgufModel::read(&path, file).map_err(js_error)?;
                    ModelFiles::new(gguf.config, gguf.tokenizer, gguf.generation, Box::new(gguf.weights))
                }
                Some("folder") => {
                    let base = text(&spec, "base").unwrap_or_default();
                    ModelFiles::from_folder(&mut JsFolder { base, files: field(&spec, "files"), weights: sources }).map_err(js_error)?
                }
                other => return Err(spec_error(&format!("`format` is {other:?}, not \"folder\" or \"gguf\""))),
            };
            let tokenizer = files.take_tokenizer().map_err(js_error)?;
            let plan = files.memory_plan(&options).map_err(js_error)?;
            on_plan.call1(&JsValue::NULL, &JsValue::from_str(&plan.to_json().to_string()))?;
            // Checked here too, not only in `load`: a refused model leaves the loaded one in place.
            self.device.check(&plan).map_err(js_error)?;
            let total = files.weight_bytes();
            let mut done = 0u64;
            let mut thrown: Option<JsValue> = None;
            let mut progress = |p: LoadProgress| report(&on_progress, &mut thrown, &mut done, total, p);
            *slot = None; // files parsed: free the old weights before uploading the new ones
            let llama = files.load(self.device.clone(), &options, &mut progress).map_err(js_error)?;
            if let Some(e) = thrown {
                return Err(e);
            }
            let defaults = files.generation;
            let config = files.config;
            *slot = Some(Loaded { name, llama, tokenizer, defaults, parameters: config.parameter_count(), weight_bytes: total });
            Ok(())
        }

        /// Compiles the loaded model's kernels by running each once ([`Llama::warm_up`]): call
        /// after `load` so the first reply's time to first token is not shader compilation.
        #[wasm_bindgen(js_name = warmUp)]
        pub fn warm_up(&self) -> js_sys::Promise {
            let model = self.model.clone();
            // Held across the GPU round trips like a generation, for the same reason.
            #[allow(clippy::await_holding_refcell_ref)]
            wasm_bindgen_futures::future_to_promise(async move {
                let mut slot = model.try_borrow_mut().map_err(|_| js_error("a generation is running on this engine"))?;
                let loaded = slot.as_mut().ok_or_else(|| js_error("no model loaded: call load() first"))?;
                loaded.llama.warm_up().await.map_err(js_error)?;
                Ok(JsValue::UNDEFINED)
            })
        }

        /// `{ name, device ("gpu" or "cpu"), parameters, weight_bytes, weight_types, context,
        /// memory (the device memory it holds: see `on_plan` of `load`), vocab_size,
        /// chat_template }`
        /// of the loaded model (JSON), or undefined.
        #[wasm_bindgen(js_name = modelInfo)]
        pub fn model_info(&self) -> Option<String> {
            let slot = self.model.try_borrow().ok()?;
            let m = slot.as_ref()?;
            Some(
                serde_json::json!({
                    "name": m.name,
                    "device": self.device(),
                    "parameters": m.parameters,
                    "weight_bytes": m.weight_bytes,
                    "weight_types": m.llama.weight_types(),
                    "context": m.llama.context,
                    "memory": m.llama.memory.to_json(),
                    "vocab_size": m.llama.config.vocab_size,
                    "chat_template": m.tokenizer.has_chat_template(),
                })
                .to_string(),
            )
        }

        /// Generates from `prompt`; `on_chunk(text)` receives each new piece of text as it
        /// completes (never broken UTF-8). `options_json`: see [`super::OptionsJson`] ("" for
        /// the model's defaults). Resolves to `{ text, tokens, prompt_tokens, finish,
        /// time_to_first_token, decode_tokens_per_second }`; rejects with an `Error` carrying
        /// the runtime's message. An exception thrown by `on_chunk` stops the generation and
        /// becomes the rejection.
        pub fn generate(&self, prompt: String, options_json: String, on_chunk: js_sys::Function) -> js_sys::Promise {
            self.run(Prompt::Text(prompt), options_json, on_chunk)
        }

        /// As `generate`, for a conversation: `messages_json` is an OpenAI-style `messages`
        /// array, rendered with the model's chat template (or a plain transcript without one).
        pub fn chat(&self, messages_json: String, options_json: String, on_chunk: js_sys::Function) -> js_sys::Promise {
            self.run(Prompt::Chat(messages_json), options_json, on_chunk)
        }

        /// Stops a running generation before its next token; it rejects with "cancelled".
        pub fn cancel(&self) {
            self.cancel.store(true, Ordering::Relaxed);
        }

        /// Destroys the WebGPU device, as a driver reset would: every later call rejects with
        /// "the GPU device was lost". For tests of that path, and to free GPU memory at once.
        /// Nothing on the CPU device.
        #[wasm_bindgen(js_name = destroyDevice)]
        pub fn destroy_device(&self) {
            if let Device::Gpu(gpu) = &self.device {
                gpu.destroy();
            }
        }
    }

    enum Prompt {
        Text(String),
        Chat(String),
    }

    impl Engine {
        fn run(&self, prompt: Prompt, options_json: String, on_chunk: js_sys::Function) -> js_sys::Promise {
            let model = self.model.clone();
            let cancel = self.cancel.clone();
            // The model stays borrowed for the whole generation on purpose: a second generate()
            // or load() meanwhile fails with a clear error instead of interleaving (the npm
            // package queues calls, so users never see it).
            #[allow(clippy::await_holding_refcell_ref)]
            wasm_bindgen_futures::future_to_promise(async move {
                let mut slot = model.try_borrow_mut().map_err(|_| js_error("a generation is already running on this engine"))?;
                let loaded = slot.as_mut().ok_or_else(|| js_error("no model loaded: call load() first"))?;
                let options = generate_options(&options_json, &loaded.defaults).map_err(js_error)?;
                let (prompt, options): (String, GenerateOptions) = match prompt {
                    Prompt::Text(p) => (p, options),
                    Prompt::Chat(json) => {
                        let messages = chat_messages(&json).map_err(js_error)?;
                        let p = ChatPrompt::new(&loaded.tokenizer, &messages).map_err(js_error)?;
                        let options = p.options(&options);
                        (p.text, options)
                    }
                };
                cancel.store(false, Ordering::Relaxed);
                let mut thrown: Option<JsValue> = None;
                let mut on_text = |text: &str| {
                    if thrown.is_some() {
                        return;
                    }
                    if let Err(e) = on_chunk.call1(&JsValue::NULL, &JsValue::from_str(text)) {
                        thrown = Some(e);
                        cancel.store(true, Ordering::Relaxed);
                    }
                };
                let result = cria::generate::generate(&mut loaded.llama, &loaded.tokenizer, &prompt, &options, &cancel, &mut on_text).await;
                if let Some(e) = thrown {
                    return Err(e);
                }
                let generation = result.map_err(js_error)?;
                let json = serde_json::to_string(&GenerationJson::from(&generation)).map_err(js_error)?;
                js_sys::JSON::parse(&json)
            })
        }
    }

    fn report(on_progress: &js_sys::Function, thrown: &mut Option<JsValue>, done: &mut u64, total: u64, p: LoadProgress) {
        *done += p.bytes;
        if thrown.is_none()
            && let Err(e) = on_progress.call3(&JsValue::NULL, &JsValue::from_str(&p.tensor), &JsValue::from_f64(*done as f64), &JsValue::from_f64(total as f64))
        {
            *thrown = Some(e);
        }
    }

    /// Incremental SHA-256 for verifying downloads as they stream in (WebCrypto has no
    /// streaming digest, and the whole file must never sit in memory at once).
    #[wasm_bindgen]
    #[derive(Default)]
    pub struct Sha256(sha2::Sha256);

    #[wasm_bindgen]
    impl Sha256 {
        #[wasm_bindgen(constructor)]
        pub fn new() -> Sha256 {
            Sha256::default()
        }
        pub fn update(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        /// Lower-case hex digest; the hasher starts over.
        #[wasm_bindgen(js_name = hexDigest)]
        pub fn hex_digest(&mut self) -> String {
            self.0.finalize_reset().iter().map(|b| format!("{b:02x}")).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> GenerationConfig {
        GenerationConfig::from_json("generation_config.json", include_str!("../../models/shakespeare/generation_config.json")).unwrap()
    }

    #[test]
    fn empty_options_take_the_model_defaults() {
        let o = generate_options("", &defaults()).unwrap();
        assert_eq!(o.sampling, defaults().sampling);
        assert_eq!(o.eos_ids, defaults().eos_token_ids);
    }

    #[test]
    fn given_options_win() {
        let o = generate_options(r#"{"max_tokens": 32, "temperature": 0, "stop": ["\n\n"]}"#, &defaults()).unwrap();
        assert_eq!(o.max_tokens, 32);
        assert!(o.sampling.is_plain_greedy());
        assert_eq!(o.stop, vec!["\n\n".to_string()]);
    }

    #[test]
    fn unknown_or_mistyped_options_are_errors_that_list_the_fields() {
        for bad in [r#"{"max_new_tokens": 5}"#, r#"{"temperature": "hot"}"#, "not json"] {
            let err = generate_options(bad, &defaults()).unwrap_err().to_string();
            assert!(err.contains("max_tokens, temperature"), "{bad}: {err}");
        }
    }

    #[test]
    fn load_options_parse_and_reject_unknown_types() {
        let o = model_options(r#"{"context": 256, "dtype": "q4_0"}"#).unwrap();
        assert_eq!(o.context, Some(256));
        assert_eq!(o.weight_dtype, Some(cria::ops::WeightDType::Q4_0));
        assert!(model_options("").unwrap().weight_dtype.is_none());
        let err = model_options(r#"{"dtype": "q5_k"}"#).unwrap_err().to_string();
        assert!(err.contains("q5_k") && err.contains("q4_0"), "{err}");
        let err = model_options(r#"{"ctx": 5}"#).unwrap_err().to_string();
        assert!(err.contains("context (tokens)"), "{err}");
    }

    #[test]
    fn chat_messages_take_openai_shapes_and_reject_others() {
        let m = chat_messages(r#"[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi "},{"type":"text","text":"there"}]}]"#).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[1].role.as_str(), m[1].content.as_str()), ("user", "Hi there"));
        for (bad, says) in [
            ("[]", "is empty"),
            (r#"[{"role":"tool","content":"x"}]"#, "role `tool`"),
            (r#"[{"role":"user","content":[{"type":"image_url"}]}]"#, "type `image_url`"),
            (r#"[{"role":"user"}]"#, "missing field"),
        ] {
            let err = chat_messages(bad).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("role"), "{bad}: {err}");
        }
    }
}
