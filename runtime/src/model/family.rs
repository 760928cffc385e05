//! Decoder families as data. Every family Cria runs is the Llama block (RMSNorm, attention with
//! RoPE and grouped-query heads, gated MLP) with a few switches; [`Family`] holds those switches
//! and the names the family goes by, and the one forward pass (`model::llama`) reads them.
//! Adding a family is a row of [`FAMILIES`] plus, where the files differ, the mapping of its
//! config keys and tensor names.

/// What a family changes in the Llama block, and its names in config.json and GGUF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    /// `model_type` in config.json, `general.architecture` in GGUF.
    pub name: &'static str,
    /// The `architectures` entry of config.json.
    pub architecture: &'static str,
    /// Biases on the q, k and v projections (`*_proj.bias`).
    pub qkv_bias: bool,
    /// RMSNorm over each q and k head before RoPE (`self_attn.q_norm` / `k_norm`).
    pub qk_norm: bool,
    /// llama.cpp's converter permutes the q and k rows of this family (its `LlamaModel` does;
    /// Qwen's do not), so reading its GGUF files undoes that.
    pub gguf_permuted_qk: bool,
    /// transformers' `head_dim` when config.json has none (None: hidden_size / heads).
    pub default_head_dim: Option<usize>,
}

pub const LLAMA: Family = Family { name: "llama", architecture: "LlamaForCausalLM", qkv_bias: false, qk_norm: false, gguf_permuted_qk: true, default_head_dim: None };
/// Qwen2 and Qwen2.5.
pub const QWEN2: Family = Family { name: "qwen2", architecture: "Qwen2ForCausalLM", qkv_bias: true, qk_norm: false, gguf_permuted_qk: false, default_head_dim: None };
/// Qwen3 (transformers' `Qwen3Config` defaults head_dim to 128, whatever hidden / heads is).
pub const QWEN3: Family = Family { name: "qwen3", architecture: "Qwen3ForCausalLM", qkv_bias: false, qk_norm: true, gguf_permuted_qk: false, default_head_dim: Some(128) };

pub const FAMILIES: &[Family] = &[LLAMA, QWEN2, QWEN3];

/// The family of a config.json `architectures` entry.
pub fn by_architecture(name: &str) -> Option<Family> {
    FAMILIES.iter().copied().find(|f| f.architecture == name)
}

/// The family of a `model_type` or GGUF `general.architecture`.
pub fn by_name(name: &str) -> Option<Family> {
    FAMILIES.iter().copied().find(|f| f.name == name)
}

/// "LlamaForCausalLM (llama), ..." for error messages.
pub fn supported() -> String {
    FAMILIES.iter().map(|f| format!("{} ({})", f.architecture, f.name)).collect::<Vec<_>>().join(", ")
}
