//! [`LlamaConfig`] and [`GenerationConfig`] from GGUF metadata: the `{arch}.*` keys (`llama.*`,
//! `qwen2.*`, ...) `convert_hf_to_gguf.py` writes from config.json, read back the way llama.cpp reads them
//! (`llama-model.cpp` `load_hparams`, `llama-vocab.cpp` for end-of-generation tokens).

use super::weights::ROPE_FREQS;
use super::{GgmlType, GgufFile};
use crate::error::{Error, Result};
use crate::model::config::{GenerationConfig, LlamaConfig, LocalAttention, RopeScaling};
use crate::model::family;
use crate::model::safetensors::ByteSource;

/// Token texts llama.cpp treats as end of generation wherever they are in the vocabulary
/// (`llama_vocab::impl::load`: its list of EOT/EOG tokens found by text).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

fn err(path: &str, field: &str, message: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Config { path: path.to_string(), field: field.to_string(), message: message.into(), hint: hint.into() }
}

/// A positive count that fits usize.
fn count<S: ByteSource>(f: &GgufFile<S>, key: &str, value: u64) -> Result<usize> {
    usize::try_from(value)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| err(&f.path, key, format!("must be a positive integer, got {value}"), "the GGUF metadata is malformed"))
}

fn req<S: ByteSource>(f: &GgufFile<S>, key: &str) -> Result<usize> {
    if let Some(super::Value::Array(_)) = f.get(key) {
        return Err(Error::Unsupported {
            what: format!("per-layer `{key}` (an array) in {}", f.path),
            hint: "Llama models have the same size in every layer".into(),
        });
    }
    count(f, key, f.u64_req(key)?)
}

fn opt<S: ByteSource>(f: &GgufFile<S>, key: &str) -> Result<Option<usize>> {
    if f.get(key).is_none() {
        return Ok(None);
    }
    req(f, key).map(Some)
}

fn positive<S: ByteSource>(f: &GgufFile<S>, key: &str, default: Option<f64>) -> Result<f64> {
    match (f.f64_opt(key)?, default) {
        (Some(x), _) if x.is_finite() && x > 0.0 => Ok(x),
        (Some(x), _) => Err(err(&f.path, key, format!("must be a positive number, got {x}"), "the GGUF metadata is malformed")),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(err(&f.path, key, "is missing", "llama.cpp writes it for every model; is this a complete model file?")),
    }
}

/// A token id key, checked against the vocabulary size.
fn token_id<S: ByteSource>(f: &GgufFile<S>, key: &str, n_tokens: usize) -> Result<Option<u32>> {
    match f.u64_opt(key)? {
        None => Ok(None),
        Some(id) if id < n_tokens as u64 && id <= u64::from(u32::MAX) => Ok(Some(id as u32)),
        Some(id) => Err(err(&f.path, key, format!("is {id}, outside the vocabulary of {n_tokens} tokens"), "the tokenizer metadata is corrupt")),
    }
}

/// The tokenizer's tokens (`tokenizer.ggml.tokens`).
pub(super) fn tokens<S: ByteSource>(f: &GgufFile<S>) -> Result<&[String]> {
    const KEY: &str = "tokenizer.ggml.tokens";
    match f.array_opt(KEY)? {
        Some(super::Array::Str(t)) if !t.is_empty() => Ok(t),
        Some(a) => {
            Err(err(&f.path, KEY, format!("must be a non-empty array of strings, got {} elements of {}", a.len(), a.element_name()), "the tokenizer metadata is corrupt"))
        }
        None => Err(err(&f.path, KEY, "is missing", "this runtime needs the tokenizer inside the GGUF file (llama.cpp's converter writes it)")),
    }
}

/// End-of-generation ids as llama.cpp collects them: `eos`, `eot` and `eom` ids, and tokens
/// whose text marks an end of turn (Llama 3's `<|eot_id|>` and `<|end_of_text|>` both stop it).
pub fn eos_ids<S: ByteSource>(f: &GgufFile<S>) -> Result<Vec<u32>> {
    let toks = tokens(f)?;
    let mut ids = Vec::new();
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
        ids.extend(token_id(f, key, toks.len())?);
    }
    ids.extend(toks.iter().enumerate().filter(|(_, t)| EOG_TEXTS.contains(&t.as_str())).map(|(i, _)| i as u32));
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Greedy decoding (GGUF carries no sampling defaults) that stops at the end-of-generation ids.
pub fn generation_config<S: ByteSource>(f: &GgufFile<S>) -> Result<GenerationConfig> {
    Ok(GenerationConfig { sampling: Default::default(), eos_token_ids: eos_ids(f)? })
}

/// The Llama hyperparameters, checked as [`LlamaConfig::from_json`] checks config.json. Reads
/// the `rope_freqs.weight` tensor when the file has one.
pub fn llama_config<S: ByteSource>(f: &mut GgufFile<S>) -> Result<LlamaConfig> {
    let path = f.path.clone();
    let family = match f.str_opt("general.architecture")? {
        Some(arch) => family::by_gguf_arch(arch).ok_or_else(|| Error::UnknownArchitecture { got: format!("{arch:?} (general.architecture of {path})"), supported: family::supported_gguf() })?,
        None => return Err(err(&path, "general.architecture", "is missing", "every GGUF model names its architecture; is this a model file?")),
    };
    // Hyperparameters are keyed by the architecture: `llama.block_count`, `qwen2.block_count`.
    let k = |key: &str| format!("{}.{key}", family.gguf_arch);
    let hidden_size = req(f, &k("embedding_length"))?;
    let num_attention_heads = req(f, &k("attention.head_count"))?;
    let num_key_value_heads = opt(f, &k("attention.head_count_kv"))?.unwrap_or(num_attention_heads);
    let head_dim = match opt(f, &k("attention.key_length"))? {
        Some(d) => d,
        None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
        None => {
            return Err(err(&path, &k("attention.head_count"), format!("({num_attention_heads}) does not divide {} ({hidden_size})", k("embedding_length")), format!("give {} or fix the head count", k("attention.key_length"))));
        }
    };
    if let Some(v) = opt(f, &k("attention.value_length"))?.filter(|&v| v != head_dim) {
        return Err(Error::Unsupported { what: format!("value heads of {v} dimensions with key heads of {head_dim} ({path})"), hint: "Llama attention has one head size".into() });
    }
    if let Some(r) = opt(f, &k("rope.dimension_count"))?.filter(|&r| r != head_dim) {
        return Err(Error::Unsupported { what: format!("rotary embeddings on {r} of {head_dim} head dimensions ({path})"), hint: "Llama rotates whole heads (llama.cpp also requires it)".into() });
    }
    if num_attention_heads % num_key_value_heads != 0 {
        return Err(err(&path, &k("attention.head_count_kv"), format!("({num_key_value_heads}) does not divide {} ({num_attention_heads})", k("attention.head_count")), "grouped-query attention needs a whole number of query heads per key/value head"));
    }
    if head_dim % 2 != 0 {
        return Err(err(&path, &k("attention.key_length"), format!("is odd ({head_dim})"), "rotary embeddings rotate pairs of dimensions"));
    }
    let n_tokens = tokens(f)?.len();
    let vocab_size = opt(f, &k("vocab_size"))?.unwrap_or(n_tokens);
    if n_tokens > vocab_size {
        return Err(err(&path, &k("vocab_size"), format!("({vocab_size}) is smaller than the tokenizer's {n_tokens} tokens"), "the metadata is corrupt"));
    }
    let eos_token_ids = eos_ids(f)?;
    let num_hidden_layers = req(f, &k("block_count"))?;
    if let Some(cap) = f.f64_opt(&k("final_logit_softcapping"))?.filter(|&c| c != 0.0) {
        return Err(Error::Unsupported { what: format!("final logit soft-capping ({cap}) in {path}"), hint: "logit soft-capping (Gemma 2) is not supported; Gemma 3 has none".into() });
    }
    let (attention_scale, local) = match family.local_attention {
        // llama.cpp (models/gemma3.cpp): 1/sqrt(head_dim), but 1/sqrt(hidden / heads) for the
        // 62-layer 27B, whose query_pre_attn_scalar is that (the converter does not store it).
        true => {
            let d = if num_hidden_layers == 62 { hidden_size / num_attention_heads } else { head_dim };
            (crate::ops::attention::Scores::causal(d).scale, local_attention(f, &k, num_hidden_layers)?)
        }
        false => (crate::ops::attention::Scores::causal(head_dim).scale, None),
    };
    Ok(LlamaConfig {
        family,
        hidden_size,
        intermediate_size: req(f, &k("feed_forward_length"))?,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: positive(f, &k("attention.layer_norm_rms_epsilon"), None)? as f32,
        rope_theta: positive(f, &k("rope.freq_base"), Some(family.default_rope_theta))?,
        rope_scaling: rope_scaling(f, head_dim, &k)?,
        max_position_embeddings: req(f, &k("context_length"))?,
        vocab_size,
        // convert_hf_to_gguf.py leaves `output.weight` out when the embeddings are tied.
        tie_word_embeddings: f.tensor_info("output.weight").is_none(),
        bos_token_id: token_id(f, "tokenizer.ggml.bos_token_id", n_tokens)?,
        eos_token_ids,
        attention_scale,
        local,
    })
}

/// Sliding-window layers as llama.cpp reads them (`models/gemma3.cpp`, `load_swa_pattern`):
/// `{arch}.attention.sliding_window` (absent or 0: none), which layers from
/// `{arch}.attention.sliding_window_pattern` (a bool per layer, or n: every n-th layer global;
/// default 6), their RoPE base from `{arch}.rope.freq_base_swa` (default 10000).
fn local_attention<S: ByteSource>(f: &GgufFile<S>, k: &dyn Fn(&str) -> String, n_layers: usize) -> Result<Option<LocalAttention>> {
    let window = match f.u64_opt(&k("attention.sliding_window"))? {
        None | Some(0) => return Ok(None),
        Some(w) => count(f, &k("attention.sliding_window"), w)?,
    };
    let key = k("attention.sliding_window_pattern");
    let layers: Vec<bool> = match f.get(&key) {
        Some(super::Value::Array(super::Array::Bool(v))) if v.len() == n_layers => v.clone(),
        Some(super::Value::Array(a)) => return Err(err(&f.path, &key, format!("has {} {} elements for {n_layers} layers", a.len(), a.element_name()), "one bool per layer")),
        Some(_) => {
            let n = f.u64_req(&key)?;
            (0..n_layers as u64).map(|i| n == 0 || i % n < n - 1).collect()
        }
        None => (0..n_layers).map(|i| i % 6 < 5).collect(),
    };
    let rope_theta = positive(f, &k("rope.freq_base_swa"), Some(10_000.0))?;
    Ok(layers.contains(&true).then_some(LocalAttention { window, rope_theta, layers }))
}

/// `llama.rope.scaling.type` (none / linear) and llama.cpp's `rope_freqs.weight` factors.
fn rope_scaling<S: ByteSource>(f: &mut GgufFile<S>, head_dim: usize, k: &dyn Fn(&str) -> String) -> Result<RopeScaling> {
    let path = f.path.clone();
    let linear = match f.str_opt(&k("rope.scaling.type"))? {
        None | Some("none") => f.f64_opt(&k("rope.scale_linear"))?, // older converters' key
        Some("linear") => Some(positive(f, &k("rope.scaling.factor"), None)?),
        Some(other) => {
            return Err(Error::Unsupported { what: format!("rope scaling type {other:?} in {path}"), hint: "supported: none, linear, and Llama 3 factors (rope_freqs.weight)".into() });
        }
    };
    if let Some(x) = linear.filter(|x| !(x.is_finite() && *x > 0.0)) {
        return Err(err(&path, &k("rope.scaling.factor"), format!("must be a positive number, got {x}"), "the GGUF metadata is malformed"));
    }
    let Some(info) = f.tensor_info(ROPE_FREQS).cloned() else {
        return Ok(match linear {
            Some(factor) if factor != 1.0 => RopeScaling::Linear { factor },
            _ => RopeScaling::None,
        });
    };
    if info.ggml_type != GgmlType::F32 || info.dims != [head_dim as u64 / 2] {
        return Err(super::bad(
            &path,
            format!("`{ROPE_FREQS}` is {} {:?}; expected F32 [{}] (one factor per rotary frequency)", info.ggml_type.name(), info.dims, head_dim / 2),
            "the rope scaling tensor does not match the head size",
        ));
    }
    let (_, bytes) = f.read(ROPE_FREQS)?;
    let mut factors: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    if let Some(&bad) = factors.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
        return Err(super::bad(&path, format!("`{ROPE_FREQS}` holds the factor {bad}"), "rope factors are positive; the file is corrupt"));
    }
    // Linear scaling on top of the factors divides every frequency once more (as llama.cpp's
    // freq_scale does).
    if let Some(l) = linear {
        factors.iter_mut().for_each(|x| *x = (f64::from(*x) * l) as f32);
    }
    Ok(RopeScaling::Factors(factors))
}
