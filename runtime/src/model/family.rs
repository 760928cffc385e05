//! Decoder families as data. Every family Cria runs is the Llama block (RMSNorm, attention with
//! RoPE and grouped-query heads, gated MLP) with a few switches; [`Family`] holds those switches
//! and the names the family goes by, and the one forward pass (`model::llama`) reads them.
//! Adding a family is a row of [`FAMILIES`] plus, where the files differ, the mapping of its
//! config keys and tensor names.

use crate::ops::glu::Activation;

/// What a family changes in the Llama block, and its names in config.json and GGUF.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Family {
    /// `model_type` in config.json.
    pub name: &'static str,
    /// The `architectures` entry of config.json.
    pub architecture: &'static str,
    /// `general.architecture` in GGUF (the prefix of its `{arch}.*` keys).
    pub gguf_arch: &'static str,
    /// Biases on the q, k and v projections (`*_proj.bias`).
    pub qkv_bias: bool,
    /// RMSNorm over each q and k head before RoPE (`self_attn.q_norm` / `k_norm`).
    pub qk_norm: bool,
    /// llama.cpp's converter permutes the q and k rows of this family (its `LlamaModel` does;
    /// Qwen's and Gemma's do not), so reading its GGUF files undoes that.
    pub gguf_permuted_qk: bool,
    /// transformers' `head_dim` when config.json has none (None: hidden_size / heads).
    pub default_head_dim: Option<usize>,
    /// Four norms per layer (Gemma): each branch's output is normalised before the residual add
    /// (`post_attention_layernorm`, `post_feedforward_layernorm`), and the MLP's input norm is
    /// `pre_feedforward_layernorm`. Without: Llama's two, the MLP's named `post_attention_layernorm`.
    pub sandwich_norms: bool,
    /// Norms multiply by `norm_offset + w` where HF stores w (Gemma: `x * (1 + w)`); llama.cpp's
    /// converter stores the sum, so GGUF files need nothing added.
    pub norm_offset: f32,
    /// The gate activation of the MLP (`hidden_act` / `hidden_activation`).
    pub activation: Activation,
    /// Embeddings multiplied by sqrt(hidden_size) (Gemma).
    pub scaled_embeddings: bool,
    /// `rope_theta` when the config has none.
    pub default_rope_theta: f64,
    /// Sliding-window layers with their own RoPE base, and `query_pre_attn_scalar` (Gemma 3:
    /// `sliding_window`, `layer_types` or the 5-local-to-1-global pattern, `rope_local_base_freq`).
    pub local_attention: bool,
}

const LLAMA_BLOCK: Family = Family {
    name: "llama",
    architecture: "LlamaForCausalLM",
    gguf_arch: "llama",
    qkv_bias: false,
    qk_norm: false,
    gguf_permuted_qk: true,
    default_head_dim: None,
    sandwich_norms: false,
    norm_offset: 0.0,
    activation: Activation::Silu,
    scaled_embeddings: false,
    default_rope_theta: 10_000.0,
    local_attention: false,
};

pub const LLAMA: Family = LLAMA_BLOCK;
/// Qwen2 and Qwen2.5.
pub const QWEN2: Family = Family { name: "qwen2", architecture: "Qwen2ForCausalLM", gguf_arch: "qwen2", qkv_bias: true, gguf_permuted_qk: false, ..LLAMA_BLOCK };
/// Qwen3 (transformers' `Qwen3Config` defaults head_dim to 128, whatever hidden / heads is).
pub const QWEN3: Family = Family { name: "qwen3", architecture: "Qwen3ForCausalLM", gguf_arch: "qwen3", qk_norm: true, gguf_permuted_qk: false, default_head_dim: Some(128), ..LLAMA_BLOCK };
/// Gemma 3 text models (270M, 1B; `Gemma3TextConfig` defaults: head_dim 256, rope_theta 1e6).
pub const GEMMA3: Family = Family {
    name: "gemma3_text",
    architecture: "Gemma3ForCausalLM",
    gguf_arch: "gemma3",
    qk_norm: true,
    gguf_permuted_qk: false,
    default_head_dim: Some(256),
    sandwich_norms: true,
    norm_offset: 1.0,
    activation: Activation::GeluTanh,
    scaled_embeddings: true,
    default_rope_theta: 1_000_000.0,
    local_attention: true,
    ..LLAMA_BLOCK
};

pub const FAMILIES: &[Family] = &[LLAMA, QWEN2, QWEN3, GEMMA3];

/// The family of a config.json `architectures` entry.
pub fn by_architecture(name: &str) -> Option<Family> {
    FAMILIES.iter().copied().find(|f| f.architecture == name)
}

/// The family of a config.json `model_type`.
pub fn by_name(name: &str) -> Option<Family> {
    FAMILIES.iter().copied().find(|f| f.name == name)
}

/// The family of a GGUF `general.architecture`.
pub fn by_gguf_arch(arch: &str) -> Option<Family> {
    FAMILIES.iter().copied().find(|f| f.gguf_arch == arch)
}

/// "LlamaForCausalLM (llama), ..." for error messages.
pub fn supported() -> String {
    FAMILIES.iter().map(|f| format!("{} ({})", f.architecture, f.name)).collect::<Vec<_>>().join(", ")
}

/// "llama, qwen2, ..." for errors about GGUF files.
pub fn supported_gguf() -> String {
    FAMILIES.iter().map(|f| f.gguf_arch).collect::<Vec<_>>().join(", ")
}
