//! Cria in the browser: the wasm-bindgen API over the `cria` runtime, which reaches WebGPU
//! through wgpu's webgpu backend. The model never knows it runs in a browser; this crate only
//! turns JS values into runtime calls and runtime errors into JS `Error`s with the same message.
//!
//! ```js
//! const engine = await Engine.create();
//! engine.loadBundled();
//! const result = await engine.generate("ROMEO:", JSON.stringify({ max_tokens: 64 }), (text) => out.append(text));
//! // result: { text, tokens, prompt_tokens, finish, time_to_first_token, decode_tokens_per_second }
//! ```
//!
//! Browser tests (`tests/`) run with `scripts/test-web.sh`.

use cria::generate::{FinishReason, GenerateOptions, Generation};
use cria::model::GenerationConfig;
use serde::{Deserialize, Serialize};

/// The default model, compiled into the module: the Shakespeare model cria-train trained
/// (models/shakespeare/, see its TRAINING.md), the same files the CLI bundles.
pub mod bundled {
    pub const NAME: &str = "shakespeare (bundled)";
    pub const CONFIG: &str = include_str!("../../models/shakespeare/config.json");
    pub const GENERATION_CONFIG: &str = include_str!("../../models/shakespeare/generation_config.json");
    pub const TOKENIZER: &[u8] = include_bytes!("../../models/shakespeare/tokenizer.json");
    pub const TOKENIZER_CONFIG: &[u8] = include_bytes!("../../models/shakespeare/tokenizer_config.json");
    pub const WEIGHTS: &[u8] = include_bytes!("../../models/shakespeare/model.safetensors");
}

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

#[cfg(target_arch = "wasm32")]
pub use wasm::Engine;

#[cfg(target_arch = "wasm32")]
mod wasm {
    use super::{bundled, generate_options, GenerationJson};
    use cria::model::{GenerationConfig, Llama, ModelOptions};
    use cria::tokenizer::Tokenizer;
    use cria::{Gpu, GpuOptions};
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use wasm_bindgen::prelude::*;

    fn js_error(e: impl std::fmt::Display) -> JsValue {
        JsError::new(&e.to_string()).into()
    }

    struct Loaded {
        name: String,
        llama: Llama,
        tokenizer: Tokenizer,
        defaults: GenerationConfig,
    }

    /// A WebGPU device and at most one loaded model.
    #[wasm_bindgen]
    pub struct Engine {
        gpu: Arc<Gpu>,
        /// Shared with a running `generate`, which holds it mutably until it ends.
        model: Rc<RefCell<Option<Loaded>>>,
        cancel: Rc<AtomicBool>,
    }

    #[wasm_bindgen]
    impl Engine {
        /// Requests a WebGPU adapter and device. Rejects with the runtime's message (and how to
        /// enable WebGPU) when the browser offers none.
        pub async fn create() -> Result<Engine, JsValue> {
            let gpu = Gpu::new(GpuOptions::default()).await.map_err(js_error)?;
            // The runtime's models hold an Arc<Gpu>; in the browser everything stays on one thread.
            #[allow(clippy::arc_with_non_send_sync)]
            Ok(Engine { gpu: Arc::new(gpu), model: Rc::new(RefCell::new(None)), cancel: Rc::new(AtomicBool::new(false)) })
        }

        /// Adapter, features and limits, one per line.
        pub fn describe(&self) -> String {
            self.gpu.describe()
        }

        /// Loads the model compiled into this module, replacing any loaded model.
        #[wasm_bindgen(js_name = loadBundled)]
        pub fn load_bundled(&self) -> Result<(), JsValue> {
            let mut slot = self.model.try_borrow_mut().map_err(|_| js_error("cannot load a model while a generation is running"))?;
            *slot = None; // free the old weights before uploading the new ones
            let tokenizer = Tokenizer::from_bytes(bundled::TOKENIZER, Some(bundled::TOKENIZER_CONFIG)).map_err(js_error)?;
            let defaults = GenerationConfig::from_json("generation_config.json", bundled::GENERATION_CONFIG).map_err(js_error)?;
            let llama = cria::model::load_llama_from_bytes(self.gpu.clone(), bundled::CONFIG, bundled::WEIGHTS.to_vec(), &ModelOptions::default(), &mut |_| {})
                .map_err(js_error)?;
            *slot = Some(Loaded { name: bundled::NAME.to_string(), llama, tokenizer, defaults });
            Ok(())
        }

        /// Name of the loaded model, or undefined.
        #[wasm_bindgen(getter, js_name = modelName)]
        pub fn model_name(&self) -> Option<String> {
            self.model.try_borrow().ok()?.as_ref().map(|m| m.name.clone())
        }

        /// Generates from `prompt`; `on_chunk(text)` receives each new piece of text as it
        /// completes (never broken UTF-8). `options_json`: see [`super::OptionsJson`] ("" for
        /// the model's defaults). Resolves to `{ text, tokens, prompt_tokens, finish,
        /// time_to_first_token, decode_tokens_per_second }`; rejects with an `Error` carrying
        /// the runtime's message. An exception thrown by `on_chunk` stops the generation and
        /// becomes the rejection.
        pub fn generate(&self, prompt: String, options_json: String, on_chunk: js_sys::Function) -> js_sys::Promise {
            let model = self.model.clone();
            let cancel = self.cancel.clone();
            // The model stays borrowed for the whole generation on purpose: a second generate()
            // or loadBundled() meanwhile fails with a clear error instead of interleaving.
            #[allow(clippy::await_holding_refcell_ref)]
            wasm_bindgen_futures::future_to_promise(async move {
                let mut slot = model.try_borrow_mut().map_err(|_| js_error("a generation is already running on this engine"))?;
                let loaded = slot.as_mut().ok_or_else(|| js_error("no model loaded: call loadBundled() first"))?;
                let options = generate_options(&options_json, &loaded.defaults).map_err(js_error)?;
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

        /// Stops a running generation before its next token; it rejects with "cancelled".
        pub fn cancel(&self) {
            self.cancel.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> GenerationConfig {
        GenerationConfig::from_json("generation_config.json", bundled::GENERATION_CONFIG).unwrap()
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
}
