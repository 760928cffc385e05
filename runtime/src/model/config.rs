//! `config.json` of a Hugging Face model of a supported family ([`super::family`]), validated
//! into [`LlamaConfig`]. Field names and defaults follow transformers' `LlamaConfig` (and
//! `Qwen2Config` / `Qwen3Config`, which use the same keys; `Gemma3TextConfig` adds its local
//! attention keys, read by [`LlamaConfig::local_attention`]).

use super::family::{self, Family};
use crate::error::{Error, Result};
use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (HF "linear").
    Linear { factor: f64 },
    /// Llama 3.1's frequency-dependent scaling (HF "llama3").
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
    /// Each inverse frequency divided by its own factor (head_dim / 2 of them): how GGUF files
    /// store Llama 3 scaling (llama.cpp's `rope_freqs.weight`, made with the same formula).
    Factors(Vec<f32>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// Which family's switches the forward pass applies.
    pub family: Family,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// The scale of q·k: 1/sqrt(head_dim), or Gemma's `query_pre_attn_scalar`^-1/2.
    pub attention_scale: f32,
    /// Sliding-window layers (Gemma 3), None when every layer attends to every earlier key.
    pub local: Option<LocalAttention>,
}

/// The sliding-window layers of a model: their window and their RoPE (global layers use
/// `rope_theta` and `rope_scaling`).
#[derive(Clone, Debug, PartialEq)]
pub struct LocalAttention {
    /// Keys each query of a local layer sees, itself included (HF `sliding_window`).
    pub window: usize,
    /// RoPE base of the local layers, unscaled (HF `rope_local_base_freq`).
    pub rope_theta: f64,
    /// Which layers are local, by index (HF `layer_types`: "sliding_attention").
    pub layers: Vec<bool>,
}

/// `layer_types` entries.
const SLIDING: &str = "sliding_attention";
const FULL: &str = "full_attention";

struct Fields<'a> {
    path: &'a str,
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn err(&self, field: &str, message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::Config { path: self.path.to_string(), field: field.to_string(), message: message.into(), hint: hint.into() }
    }
    fn usize(&self, field: &str) -> Result<usize> {
        match self.map.get(field) {
            None | Some(Value::Null) => Err(self.err(field, "is missing", "every Llama config.json has it; is this the right file?")),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| self.err(field, format!("must be a positive integer, got {v}"), "fix the value in config.json")),
        }
    }
    fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.usize(field).map(Some),
        }
    }
    fn f64_or(&self, field: &str, default: f64) -> Result<f64> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| self.err(field, format!("must be a positive number, got {v}"), "fix the value in config.json")),
        }
    }
    fn bool_or(&self, field: &str, default: bool) -> Result<bool> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(field, format!("must be true or false, got {v}"), "fix the value in config.json")),
        }
    }
    /// An id or a list of ids (HF allows both for eos_token_id).
    fn ids(&self, field: &str) -> Result<Vec<u32>> {
        let bad = |v: &Value| self.err(field, format!("must be a token id or a list of ids, got {v}"), "fix the value in config.json");
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|v| v.as_u64().map(|n| n as u32).ok_or_else(|| bad(v))).collect(),
            Some(v) => v.as_u64().map(|n| vec![n as u32]).ok_or_else(|| bad(v)),
        }
    }
}

impl LlamaConfig {
    /// Parses config.json text. `path` names the file in errors.
    pub fn from_json(path: &str, text: &str) -> Result<LlamaConfig> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Config {
            path: path.to_string(),
            field: "(file)".into(),
            message: format!("is not valid JSON: {e}"),
            hint: "config.json must be the JSON object saved by transformers".into(),
        })?;
        let Some(map) = value.as_object() else {
            return Err(Error::Config { path: path.into(), field: "(file)".into(), message: "is not a JSON object".into(), hint: "config.json must be the JSON object saved by transformers".into() });
        };
        let f = Fields { path, map };
        let family = Self::family(map)?;
        // Variants the one forward pass does not have yet: refused, not run wrongly.
        if f.bool_or("attention_bias", false)? {
            return Err(Error::Unsupported { what: format!("attention_bias (biases on every attention projection, o_proj's too) in {path}"), hint: "Cria runs q/k/v biases as Qwen2 has them".into() });
        }
        if f.bool_or("use_sliding_window", false)? {
            return Err(Error::Unsupported { what: format!("use_sliding_window in {path}"), hint: "sliding-window attention is not supported yet".into() });
        }

        let hidden_size = f.usize("hidden_size")?;
        let num_attention_heads = f.usize("num_attention_heads")?;
        let num_key_value_heads = f.opt_usize("num_key_value_heads")?.unwrap_or(num_attention_heads);
        let head_dim = match f.opt_usize("head_dim")?.or(family.default_head_dim) {
            Some(d) => d,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => return Err(f.err("num_attention_heads", format!("({num_attention_heads}) does not divide hidden_size ({hidden_size})"), "give head_dim explicitly or fix the head count")),
        };
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(f.err("num_key_value_heads", format!("({num_key_value_heads}) does not divide num_attention_heads ({num_attention_heads})"), "grouped-query attention needs a whole number of query heads per key/value head"));
        }
        if head_dim % 2 != 0 {
            return Err(f.err("head_dim", format!("is odd ({head_dim})"), "rotary embeddings rotate pairs of dimensions"));
        }
        let eos_token_ids = f.ids("eos_token_id")?;
        let act_key = if f.map.contains_key("hidden_activation") { "hidden_activation" } else { "hidden_act" };
        if let Some(act) = f.map.get(act_key).filter(|v| !v.is_null() && v.as_str() != Some(family.activation.name())) {
            return Err(Error::Unsupported { what: format!("{act_key} {act} in a {} config ({path})", family.architecture), hint: format!("{} models run with {}", family.architecture, family.activation.name()) });
        }
        for key in ["attn_logit_softcapping", "final_logit_softcapping"] {
            if f.map.get(key).is_some_and(|v| !v.is_null()) {
                return Err(Error::Unsupported { what: format!("{key} in {path}"), hint: "logit soft-capping (Gemma 2) is not supported; Gemma 3 has none".into() });
            }
        }
        let num_hidden_layers = f.usize("num_hidden_layers")?;
        let (attention_scale, local) = match family.local_attention {
            // transformers: `query_pre_attn_scalar**-0.5` (default 256).
            true => ((f.f64_or("query_pre_attn_scalar", 256.0)?.powf(-0.5)) as f32, Self::local_attention(&f, num_hidden_layers)?),
            false => (crate::ops::attention::Scores::causal(head_dim).scale, None),
        };
        Ok(LlamaConfig {
            family,
            hidden_size,
            intermediate_size: f.usize("intermediate_size")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f.f64_or("rms_norm_eps", 1e-6)? as f32,
            rope_theta: Self::rope_theta(&f, family.default_rope_theta)?,
            rope_scaling: Self::rope_scaling(&f)?,
            max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(2048),
            vocab_size: f.usize("vocab_size")?,
            tie_word_embeddings: f.bool_or("tie_word_embeddings", false)?,
            bos_token_id: f.ids("bos_token_id")?.first().copied(),
            eos_token_ids,
            attention_scale,
            local,
        })
    }

    /// Gemma 3's sliding-window layers: `sliding_window` (default 4096), which layers from
    /// `layer_types` or else `sliding_window_pattern` (every n-th layer global, default 6), and
    /// their RoPE base from `rope_local_base_freq` or transformers 5's
    /// `rope_parameters.sliding_attention.rope_theta` (default 10000).
    fn local_attention(f: &Fields<'_>, n_layers: usize) -> Result<Option<LocalAttention>> {
        if f.bool_or("use_bidirectional_attention", false)? {
            return Err(Error::Unsupported { what: format!("use_bidirectional_attention in {}", f.path), hint: "bidirectional attention (EmbeddingGemma) is for embedding models; Cria runs causal decoders".into() });
        }
        let layers: Vec<bool> = match f.map.get("layer_types").filter(|v| !v.is_null()) {
            Some(Value::Array(types)) => {
                if types.len() != n_layers {
                    return Err(f.err("layer_types", format!("has {} entries for {n_layers} layers", types.len()), "give one entry per layer (num_hidden_layers)"));
                }
                types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| match t.as_str() {
                        Some(SLIDING) => Ok(true),
                        Some(FULL) => Ok(false),
                        _ => Err(f.err("layer_types", format!("entry {i} is {t}"), format!("each entry is \"{SLIDING}\" or \"{FULL}\""))),
                    })
                    .collect::<Result<_>>()?
            }
            Some(v) => return Err(f.err("layer_types", format!("must be a list, got {v}"), format!("a list of \"{SLIDING}\" / \"{FULL}\", one per layer"))),
            None => {
                let key = if f.map.contains_key("sliding_window_pattern") { "sliding_window_pattern" } else { "_sliding_window_pattern" };
                let pattern = f.opt_usize(key)?.unwrap_or(6);
                (0..n_layers).map(|i| (i + 1) % pattern != 0).collect()
            }
        };
        if !layers.contains(&true) {
            return Ok(None);
        }
        let window = f.opt_usize("sliding_window")?.unwrap_or(4096);
        let rope_theta = match (f.map.get("rope_local_base_freq").filter(|v| !v.is_null()), Self::rope_parameters_of(f, SLIDING)) {
            (None, Some(Value::Object(m))) => Fields { path: f.path, map: m }.f64_or("rope_theta", 10_000.0)?,
            _ => f.f64_or("rope_local_base_freq", 10_000.0)?,
        };
        if let Some(Value::Object(m)) = Self::rope_parameters_of(f, SLIDING) {
            let kind = m.get("rope_type").and_then(Value::as_str).unwrap_or("default");
            if kind != "default" {
                return Err(Error::Unsupported { what: format!("rope_type {kind:?} on the sliding-window layers in {}", f.path), hint: "local layers run unscaled RoPE, as every Gemma 3 checkpoint has them".into() });
            }
        }
        Ok(Some(LocalAttention { window, rope_theta, layers }))
    }

    /// How layer `layer`'s queries score the keys: the scale, and its window if it is local.
    pub fn scores(&self, layer: usize) -> crate::ops::attention::Scores {
        let window = self.local.as_ref().filter(|l| l.layers.get(layer).copied().unwrap_or(false)).map(|l| l.window);
        crate::ops::attention::Scores { scale: self.attention_scale, window }
    }

    /// Whether layer `layer` is a sliding-window layer.
    pub fn is_local(&self, layer: usize) -> bool {
        self.local.as_ref().is_some_and(|l| l.layers.get(layer).copied().unwrap_or(false))
    }

    /// The family `architectures` (or, without it, `model_type`) names.
    fn family(map: &Map<String, Value>) -> Result<Family> {
        if let Some(archs) = map.get("architectures").and_then(Value::as_array) {
            let names: Vec<&str> = archs.iter().filter_map(Value::as_str).collect();
            return names.iter().find_map(|n| family::by_architecture(n)).ok_or_else(|| Error::UnknownArchitecture { got: format!("{names:?}"), supported: family::supported() });
        }
        match map.get("model_type").and_then(Value::as_str) {
            None => Ok(family::LLAMA),
            Some(t) => family::by_name(t).ok_or_else(|| Error::UnknownArchitecture { got: format!("model_type {t:?}"), supported: family::supported() }),
        }
    }

    /// transformers 5 saves `rope_parameters` (theta and scaling together) instead of
    /// `rope_theta` + `rope_scaling`; both forms load. Models with local layers keep one set per
    /// layer type (`{"full_attention": {...}, "sliding_attention": {...}}`): the global one here.
    fn rope_parameters<'a>(f: &Fields<'a>) -> Option<&'a Value> {
        Self::rope_parameters_of(f, FULL).or_else(|| f.map.get("rope_parameters").filter(|v| v.is_object()))
    }

    /// The `rope_parameters` of one layer type, when the config has them per type.
    fn rope_parameters_of<'a>(f: &Fields<'a>, layer_type: &str) -> Option<&'a Value> {
        f.map.get("rope_parameters").and_then(|p| p.get(layer_type)).filter(|v| v.is_object())
    }

    fn rope_theta(f: &Fields<'_>, default: f64) -> Result<f64> {
        match (f.map.get("rope_theta").filter(|v| !v.is_null()), Self::rope_parameters(f)) {
            (None, Some(Value::Object(m))) => Fields { path: f.path, map: m }.f64_or("rope_theta", default),
            _ => f.f64_or("rope_theta", default),
        }
    }

    fn rope_scaling(f: &Fields<'_>) -> Result<RopeScaling> {
        let Some(v) = f.map.get("rope_scaling").filter(|v| !v.is_null()).or_else(|| Self::rope_parameters(f)) else {
            return Ok(RopeScaling::None);
        };
        let Some(m) = v.as_object() else {
            return Err(f.err("rope_scaling", format!("must be an object, got {v}"), "see transformers' LlamaConfig"));
        };
        let sub = Fields { path: f.path, map: m };
        let kind = m.get("rope_type").or_else(|| m.get("type")).and_then(Value::as_str).unwrap_or("default");
        match kind {
            "default" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear { factor: sub.f64_or("factor", 1.0)? }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: sub.f64_or("factor", 8.0)?,
                low_freq_factor: sub.f64_or("low_freq_factor", 1.0)?,
                high_freq_factor: sub.f64_or("high_freq_factor", 4.0)?,
                original_max_position_embeddings: sub.f64_or("original_max_position_embeddings", 8192.0)?,
            }),
            other => Err(Error::Unsupported {
                what: format!("rope_scaling type {other:?} in {}", f.path),
                hint: "supported: default, linear, llama3".into(),
            }),
        }
    }

    /// Rotary inverse frequencies of the local layers (unscaled, their own base), if any.
    pub fn local_inv_freq(&self) -> Option<Vec<f32>> {
        self.local.as_ref().map(|l| crate::ops::rope::default_inv_freq(self.head_dim, l.rope_theta))
    }

    /// Rotary inverse frequencies after scaling, as HF's `ROPE_INIT_FUNCTIONS` compute them.
    pub fn inv_freq(&self) -> Vec<f32> {
        let base = crate::ops::rope::default_inv_freq(self.head_dim, self.rope_theta);
        match self.rope_scaling {
            RopeScaling::None => base,
            RopeScaling::Linear { factor } => base.iter().map(|&f| (f64::from(f) / factor) as f32).collect(),
            RopeScaling::Factors(ref factors) => base.iter().zip(factors).map(|(&f, &s)| (f64::from(f) / f64::from(s)) as f32).collect(),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
                // transformers `_compute_llama3_parameters`.
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let f = f64::from(f);
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        let medium = (high_wavelen..=low_wavelen).contains(&wavelen);
                        if medium {
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            ((1.0 - smooth) * scaled / factor + smooth * scaled) as f32
                        } else {
                            scaled as f32
                        }
                    })
                    .collect()
            }
        }
    }

    /// Number of weights (for display).
    pub fn parameter_count(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let bias = if self.family.qkv_bias { q + 2 * kv } else { 0 };
        let qk_norm = if self.family.qk_norm { 2 * self.head_dim } else { 0 };
        let norms = if self.family.sandwich_norms { 4 * h } else { 2 * h };
        let layer = h * q + 2 * h * kv + q * h + 3 * h * i + norms + bias + qk_norm;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        v * h + self.num_hidden_layers * layer + h + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINYLLAMA: &str = r#"{"architectures":["LlamaForCausalLM"],"hidden_size":2048,"intermediate_size":5632,
        "num_hidden_layers":22,"num_attention_heads":32,"num_key_value_heads":4,"rms_norm_eps":1e-05,
        "rope_theta":10000.0,"max_position_embeddings":2048,"vocab_size":32000,"tie_word_embeddings":false,
        "bos_token_id":1,"eos_token_id":2,"rope_scaling":null}"#;

    #[test]
    fn parses_tinyllama() {
        let c = LlamaConfig::from_json("config.json", TINYLLAMA).unwrap();
        assert_eq!((c.head_dim, c.num_key_value_heads, c.eos_token_ids.clone()), (64, 4, vec![2]));
        assert_eq!(c.parameter_count(), 1_100_048_384); // TinyLlama-1.1B's published count
    }

    #[test]
    fn missing_and_malformed_fields_name_the_field() {
        let err = LlamaConfig::from_json("m/config.json", r#"{"hidden_size": 8}"#).unwrap_err();
        assert!(err.to_string().contains("`num_attention_heads` is missing"), "{err}");
        let err = LlamaConfig::from_json("m/config.json", &TINYLLAMA.replace("5632", "\"big\"")).unwrap_err();
        assert!(err.to_string().contains("`intermediate_size` must be a positive integer"), "{err}");
        let err = LlamaConfig::from_json("m/config.json", "{not json").unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = LlamaConfig::from_json("m/config.json", &TINYLLAMA.replace("\"num_key_value_heads\":4", "\"num_key_value_heads\":5")).unwrap_err();
        assert!(err.to_string().contains("num_key_value_heads"), "{err}");
        let err = LlamaConfig::from_json("m/config.json", &TINYLLAMA.replace("\"num_attention_heads\":32", "\"num_attention_heads\":30")).unwrap_err();
        assert!(err.to_string().contains("does not divide hidden_size"), "{err}");
    }

    /// Qwen2.5-0.5B's and Qwen3-0.6B's published configs (the keys that matter).
    #[test]
    fn parses_qwen_families() {
        let qwen25 = r#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,
            "num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":1000000.0,
            "max_position_embeddings":32768,"vocab_size":151936,"tie_word_embeddings":true,"use_sliding_window":false,
            "sliding_window":32768,"max_window_layers":21,"bos_token_id":151643,"eos_token_id":151643}"#;
        let c = LlamaConfig::from_json("config.json", qwen25).unwrap();
        assert_eq!((c.family, c.head_dim, c.tie_word_embeddings), (family::QWEN2, 64, true));
        assert_eq!(c.parameter_count(), 494_032_768); // Qwen2.5-0.5B's published count
        let qwen3 = r#"{"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","hidden_size":1024,"intermediate_size":3072,
            "num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"attention_bias":false,
            "rms_norm_eps":1e-06,"rope_theta":1000000,"max_position_embeddings":40960,"vocab_size":151936,"tie_word_embeddings":true,
            "bos_token_id":151643,"eos_token_id":151645}"#;
        let c = LlamaConfig::from_json("config.json", qwen3).unwrap();
        assert_eq!((c.family, c.head_dim), (family::QWEN3, 128));
        assert_eq!(c.parameter_count(), 596_049_920); // Qwen3-0.6B's published count
        // Without head_dim, transformers' Qwen3Config default (128), not hidden / heads (64).
        let c = LlamaConfig::from_json("config.json", &qwen3.replace("\"head_dim\":128,", "")).unwrap();
        assert_eq!(c.head_dim, 128);
    }

    /// google/gemma-3-270m's published config.json (the keys that matter).
    const GEMMA3_270M: &str = r#"{"architectures":["Gemma3ForCausalLM"],"model_type":"gemma3_text","hidden_size":640,
        "intermediate_size":2048,"num_hidden_layers":18,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":256,
        "query_pre_attn_scalar":256,"hidden_activation":"gelu_pytorch_tanh","rms_norm_eps":1e-06,"rope_theta":1000000.0,
        "rope_local_base_freq":10000.0,"rope_scaling":null,"sliding_window":512,"_sliding_window_pattern":6,
        "attn_logit_softcapping":null,"final_logit_softcapping":null,"use_bidirectional_attention":false,
        "layer_types":["sliding_attention","sliding_attention","sliding_attention","sliding_attention","sliding_attention","full_attention",
        "sliding_attention","sliding_attention","sliding_attention","sliding_attention","sliding_attention","full_attention",
        "sliding_attention","sliding_attention","sliding_attention","sliding_attention","sliding_attention","full_attention"],
        "max_position_embeddings":32768,"vocab_size":262144,"tie_word_embeddings":true,"bos_token_id":2,"eos_token_id":[1,106]}"#;

    #[test]
    fn parses_gemma3() {
        let c = LlamaConfig::from_json("config.json", GEMMA3_270M).unwrap();
        assert_eq!((c.family, c.head_dim, c.rope_theta, c.eos_token_ids.clone()), (family::GEMMA3, 256, 1e6, vec![1, 106]));
        assert_eq!(c.parameter_count(), 268_098_176); // Gemma 3 270M's published count
        assert_eq!(c.attention_scale, 1.0 / 16.0);
        assert_eq!(LlamaConfig::from_json("config.json", TINYLLAMA).unwrap().attention_scale, 0.125);
        let local = c.local.clone().unwrap();
        assert_eq!((local.window, local.rope_theta), (512, 10_000.0));
        assert_eq!((0..18).filter(|&i| !c.is_local(i)).collect::<Vec<_>>(), vec![5, 11, 17]);
        assert_eq!(c.scores(0).window, Some(512));
        assert_eq!(c.scores(5).window, None);
        // Without layer_types: the pattern (every 6th layer global), the same layers.
        let start = GEMMA3_270M.find("\"layer_types\"").unwrap();
        let end = GEMMA3_270M[start..].find(']').unwrap() + start + 2;
        let no_types = format!("{}{}", &GEMMA3_270M[..start], &GEMMA3_270M[end..]);
        assert_eq!(LlamaConfig::from_json("config.json", &no_types).unwrap().local, c.local);
        // transformers 5's form: rope_parameters per layer type, and query_pre_attn_scalar apart
        // from head_dim (Gemma 3 27B: 168 with head_dim 128).
        let t5 = GEMMA3_270M.replace("\"rope_theta\":1000000.0,", "").replace("\"rope_local_base_freq\":10000.0,", "").replace(
            "\"rope_scaling\":null",
            r#""rope_parameters":{"full_attention":{"rope_type":"linear","factor":8.0,"rope_theta":1000000.0},"sliding_attention":{"rope_type":"default","rope_theta":10000.0}}"#,
        ).replace("\"query_pre_attn_scalar\":256", "\"query_pre_attn_scalar\":168");
        let c5 = LlamaConfig::from_json("config.json", &t5).unwrap();
        assert_eq!((c5.rope_theta, c5.rope_scaling.clone(), c5.local.as_ref().unwrap().rope_theta), (1e6, RopeScaling::Linear { factor: 8.0 }, 10_000.0));
        assert_eq!(c5.attention_scale, (168f64).powf(-0.5) as f32);
        assert_eq!(c5.local_inv_freq().unwrap()[1], crate::ops::rope::default_inv_freq(256, 10_000.0)[1]);
        assert_ne!(c5.inv_freq()[1], c5.local_inv_freq().unwrap()[1]);
    }

    #[test]
    fn gemma3_variants_it_cannot_run_are_typed_errors() {
        let cases = [
            ("\"sliding_attention\",\"full_attention\",", "\"chunked_attention\",\"full_attention\","),
            ("\"final_logit_softcapping\":null", "\"final_logit_softcapping\":30.0"),
            ("\"use_bidirectional_attention\":false", "\"use_bidirectional_attention\":true"),
            ("\"hidden_activation\":\"gelu_pytorch_tanh\"", "\"hidden_activation\":\"silu\""),
            ("\"num_hidden_layers\":18", "\"num_hidden_layers\":17"),
        ];
        for (from, to) in cases {
            let json = GEMMA3_270M.replacen(from, to, 1);
            assert_ne!(json, GEMMA3_270M, "{from}");
            let err = LlamaConfig::from_json("config.json", &json).unwrap_err();
            assert!(matches!(err, Error::Config { .. } | Error::Unsupported { .. }), "{to}: {err}");
        }
        let err = LlamaConfig::from_json("config.json", &GEMMA3_270M.replacen("\"sliding_attention\",\"full_attention\",", "\"chunked_attention\",\"full_attention\",", 1)).unwrap_err();
        assert!(err.to_string().contains("entry 4") && err.to_string().contains("layer_types"), "{err}");
    }

    #[test]
    fn unknown_architecture_is_rejected() {
        let err = LlamaConfig::from_json("c", &TINYLLAMA.replace("LlamaForCausalLM", "GPT2LMHeadModel")).unwrap_err();
        assert!(matches!(err, Error::UnknownArchitecture { .. }), "{err}");
    }

    #[test]
    fn generation_config_gives_sampling_defaults_and_eos() {
        let g = GenerationConfig::from_json("g", r#"{"do_sample": true, "temperature": 0.7, "top_p": 0.9, "eos_token_id": [2, 32000]}"#).unwrap();
        assert_eq!((g.sampling.temperature, g.sampling.top_p, g.eos_token_ids.clone()), (0.7, 0.9, vec![2, 32000]));
        // transformers decodes greedily unless do_sample is true.
        let g = GenerationConfig::from_json("g", r#"{"temperature": 0.7, "eos_token_id": 2}"#).unwrap();
        assert_eq!((g.sampling.temperature, g.eos_token_ids), (0.0, vec![2]));
        assert!(GenerationConfig::from_json("g", "{").is_err());
    }

    #[test]
    fn transformers5_rope_parameters_load() {
        let json = TINYLLAMA.replace("\"rope_theta\":10000.0,", "").replace("\"rope_scaling\":null", r#""rope_parameters":{"rope_type":"linear","factor":2.0,"rope_theta":20000.0}"#);
        let c = LlamaConfig::from_json("c", &json).unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling.clone()), (20000.0, RopeScaling::Linear { factor: 2.0 }));
    }

    #[test]
    fn llama3_scaling_matches_transformers() {
        // Values from transformers 4.x `_compute_llama3_parameters` for head_dim 64, theta 500000,
        // factor 32, low 1, high 4, original 8192: low frequencies divided by 32, high kept.
        let json = TINYLLAMA.replace("\"rope_scaling\":null", r#""rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#).replace("10000.0", "500000.0");
        let c = LlamaConfig::from_json("c", &json).unwrap();
        let base = crate::ops::rope::default_inv_freq(64, 500_000.0);
        let scaled = c.inv_freq();
        assert_eq!(scaled[0], base[0]); // wavelength 2*pi < 2048: unchanged
        assert!((scaled[31] - base[31] / 32.0).abs() <= 1e-12); // longest wavelength: divided by factor
        let medium = (0..32).filter(|&i| scaled[i] != base[i] && (scaled[i] - base[i] / 32.0).abs() > 1e-12).count();
        assert!(medium > 0, "some frequencies are smoothly interpolated");
    }
}

/// Defaults from `generation_config.json`: sampling settings and end-of-sequence ids.
/// transformers decodes greedily unless `do_sample` is true.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationConfig {
    pub sampling: crate::sampling::SamplingOptions,
    pub eos_token_ids: Vec<u32>,
}

impl GenerationConfig {
    pub fn from_json(path: &str, text: &str) -> Result<GenerationConfig> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Config {
            path: path.into(),
            field: "(file)".into(),
            message: format!("is not valid JSON: {e}"),
            hint: "delete generation_config.json or fix it".into(),
        })?;
        let empty = Map::new();
        let f = Fields { path, map: value.as_object().unwrap_or(&empty) };
        let mut sampling = crate::sampling::SamplingOptions::default();
        if f.bool_or("do_sample", false)? {
            sampling.temperature = f.f64_or("temperature", 1.0)? as f32;
            sampling.top_p = f.f64_or("top_p", 1.0)? as f32;
            sampling.top_k = f.opt_usize("top_k")?.unwrap_or(0);
            sampling.min_p = f.map.get("min_p").and_then(Value::as_f64).unwrap_or(0.0) as f32;
        }
        sampling.repetition_penalty = f.f64_or("repetition_penalty", 1.0)? as f32;
        Ok(GenerationConfig { sampling, eos_token_ids: f.ids("eos_token_id")? })
    }
}
