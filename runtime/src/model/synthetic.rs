//! Synthetic models: the real shapes of published checkpoints with deterministic random weights,
//! generated tensor by tensor (nothing downloaded, nothing held in host memory beyond one
//! tensor). For benchmarks: decode speed depends on shapes and dtypes, not on values.

use super::config::LlamaConfig;
use super::safetensors::{Dtype, HostTensor, TensorEntry};
use super::weights::WeightSource;
use crate::error::{Error, Result};
use crate::ops::WeightDType;
use half::{bf16, f16};

/// (name, config.json) of each synthetic model.
pub const MODELS: &[(&str, &str)] = &[
    // TinyLlama/TinyLlama-1.1B-Chat-v1.0
    (
        "tinyllama-1.1b",
        r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":2048,"intermediate_size":5632,"num_hidden_layers":22,"num_attention_heads":32,"num_key_value_heads":4,"rms_norm_eps":1e-05,"rope_theta":10000.0,"max_position_embeddings":2048,"vocab_size":32000,"tie_word_embeddings":false,"bos_token_id":1,"eos_token_id":2,"torch_dtype":"float16"}"#,
    ),
    // ahxt/LiteLlama-460M-1T (GQA 16/2 heads, untied, GPT-2 vocabulary padded to 50304)
    (
        "litellama-460m",
        r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":1024,"intermediate_size":4096,"num_hidden_layers":24,"num_attention_heads":16,"num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":10000.0,"max_position_embeddings":1024,"vocab_size":50304,"tie_word_embeddings":false,"bos_token_id":1,"eos_token_id":2,"torch_dtype":"float16"}"#,
    ),
    // karpathy/llama2.c stories15M (shared classifier = tied embeddings)
    (
        "stories15m",
        r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":288,"intermediate_size":768,"num_hidden_layers":6,"num_attention_heads":6,"num_key_value_heads":6,"rms_norm_eps":1e-05,"rope_theta":10000.0,"max_position_embeddings":256,"vocab_size":32000,"tie_word_embeddings":true,"bos_token_id":1,"eos_token_id":2,"torch_dtype":"float16"}"#,
    ),
    // Qwen/Qwen2.5-0.5B-Instruct (q/k/v biases, tied, 14/2 heads)
    (
        "qwen2.5-0.5b",
        r#"{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"max_position_embeddings":32768,"vocab_size":151936,"tie_word_embeddings":true,"use_sliding_window":false,"bos_token_id":151643,"eos_token_id":151645,"torch_dtype":"bfloat16"}"#,
    ),
    // google/gemma-3-270m (four norms per layer, q/k norms, GeGLU, 5 local layers of a 512-token
    // window to 1 global, head_dim 256 with 4 heads / 1 kv head, a 262k vocabulary, tied)
    (
        "gemma3-270m",
        r#"{"architectures":["Gemma3ForCausalLM"],"model_type":"gemma3_text","hidden_size":640,"intermediate_size":2048,"num_hidden_layers":18,"num_attention_heads":4,"num_key_value_heads":1,"head_dim":256,"query_pre_attn_scalar":256,"hidden_activation":"gelu_pytorch_tanh","rms_norm_eps":1e-06,"rope_theta":1000000.0,"rope_local_base_freq":10000.0,"sliding_window":512,"layer_types":["sliding_attention","sliding_attention","sliding_attention","sliding_attention","sliding_attention","full_attention","sliding_attention","sliding_attention","sliding_attention","sliding_attention","sliding_attention","full_attention","sliding_attention","sliding_attention","sliding_attention","sliding_attention","sliding_attention","full_attention"],"max_position_embeddings":32768,"vocab_size":262144,"tie_word_embeddings":true,"bos_token_id":2,"eos_token_id":[1,106],"torch_dtype":"bfloat16"}"#,
    ),
    // Qwen/Qwen3-0.6B (q/k norms, head_dim 128 with hidden 1024 and 16 heads, tied)
    (
        "qwen3-0.6b",
        r#"{"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","hidden_size":1024,"intermediate_size":3072,"num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"attention_bias":false,"rms_norm_eps":1e-06,"rope_theta":1000000,"max_position_embeddings":40960,"vocab_size":151936,"tie_word_embeddings":true,"bos_token_id":151643,"eos_token_id":151645,"torch_dtype":"bfloat16"}"#,
    ),
];

/// The config.json text of a synthetic model.
pub fn config_json(name: &str) -> Result<&'static str> {
    MODELS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c).ok_or_else(|| Error::Unsupported {
        what: format!("synthetic model `{name}`"),
        hint: format!("choose one of {}", MODELS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")),
    })
}

pub fn config(name: &str) -> Result<LlamaConfig> {
    LlamaConfig::from_json(&format!("synthetic {name}"), config_json(name)?)
}

/// Every tensor of a checkpoint of `config`'s family and shapes, in HF names.
pub fn tensor_shapes(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (h, q, kv, inter) = (c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, c.intermediate_size);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![c.vocab_size, h])];
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.extend([
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.self_attn.q_proj.weight"), vec![q, h]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.o_proj.weight"), vec![h, q]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
            (format!("{p}.mlp.gate_proj.weight"), vec![inter, h]),
            (format!("{p}.mlp.up_proj.weight"), vec![inter, h]),
            (format!("{p}.mlp.down_proj.weight"), vec![h, inter]),
        ]);
        if c.family.qkv_bias {
            out.extend([(format!("{p}.self_attn.q_proj.bias"), vec![q]), (format!("{p}.self_attn.k_proj.bias"), vec![kv]), (format!("{p}.self_attn.v_proj.bias"), vec![kv])]);
        }
        if c.family.qk_norm {
            out.extend([(format!("{p}.self_attn.q_norm.weight"), vec![c.head_dim]), (format!("{p}.self_attn.k_norm.weight"), vec![c.head_dim])]);
        }
        if c.family.sandwich_norms {
            out.extend([(format!("{p}.pre_feedforward_layernorm.weight"), vec![h]), (format!("{p}.post_feedforward_layernorm.weight"), vec![h])]);
        }
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !c.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![c.vocab_size, h]));
    }
    out.sort();
    out
}

/// Random matrices (uniform, std 0.02 like `initializer_range`) stored as F16 (or as another
/// file type, [`SyntheticWeights::with_dtype`]) and F32 norms near 1, each tensor seeded by its
/// name: the same model every time, on every machine.
pub struct SyntheticWeights {
    tensors: Vec<(String, Vec<usize>)>,
    dtype: Dtype,
}

impl SyntheticWeights {
    pub fn new(config: &LlamaConfig) -> SyntheticWeights {
        SyntheticWeights { tensors: tensor_shapes(config), dtype: Dtype::F16 }
    }

    /// Matrices stored as `dtype`, as a checkpoint (or GGUF file) of that type would be: floats
    /// of the same distribution whatever the type; block types as random blocks of the same
    /// magnitude (every value within 0.02·√3), whose rows are whole blocks of the padded row.
    pub fn with_dtype(config: &LlamaConfig, dtype: Dtype) -> Result<SyntheticWeights> {
        Ok(SyntheticWeights { tensors: tensor_shapes(config), dtype })
    }

    fn shape(&self, name: &str) -> Result<&[usize]> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.as_slice())
            .ok_or_else(|| Error::MissingTensor { name: name.to_string(), path: "(synthetic model)".into() })
    }
}

/// Element `i` of tensor `name`, uniform in [-1, 1): a hash (splitmix64's finalizer) of FNV-1a
/// of the name and the index, so any range of rows is generated without the ones before it.
fn value(seed: u64, i: u64) -> f32 {
    let u = (hash(seed, i) >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
    (u - 0.5) * 2.0
}

fn hash(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

impl WeightSource for SyntheticWeights {
    fn read_rows(&mut self, name: &str, rows: std::ops::Range<usize>) -> Result<HostTensor> {
        let entry = self.entry(name)?;
        entry.row_range(name, "(synthetic model)", rows.clone())?;
        let cols = (entry.numel() / entry.rows().max(1)) as u64;
        let (seed, elems) = (seed(name), rows.start as u64 * cols..rows.end as u64 * cols);
        Ok(if entry.shape.len() == 1 {
            HostTensor::F32(elems.map(|i| 1.0 + 0.1 * value(seed, i)).collect())
        } else {
            let a = 0.02 * 3f32.sqrt();
            if let Dtype::Block(WeightDType::Block(t)) = self.dtype {
                // Row r is generated from its own stream, so any range of rows can be.
                let blocks = crate::quant::blocks(t, cols as usize);
                let mut bytes = Vec::with_capacity(rows.len() * blocks * t.block_bytes());
                for r in rows {
                    let mut i = r as u64 * (blocks * t.block_bytes()) as u64;
                    bytes.extend(crate::quant::ggml::random_blocks(t, blocks, a, &mut || {
                        i += 1;
                        (hash(seed, i) >> 32) as u32
                    }));
                }
                return Ok(HostTensor::Quant { dtype: WeightDType::Block(t), bytes });
            }
            let values = elems.map(|i| a * value(seed, i));
            match self.dtype {
                Dtype::F32 => HostTensor::F32(values.collect()),
                Dtype::BF16 => HostTensor::BF16(values.map(bf16::from_f32).collect()),
                _ => HostTensor::F16(values.map(f16::from_f32).collect()),
            }
        })
    }
    fn has(&self, name: &str) -> bool {
        self.tensors.iter().any(|(n, _)| n == name)
    }
    fn names(&self) -> Vec<String> {
        self.tensors.iter().map(|(n, _)| n.clone()).collect()
    }
    fn entry(&self, name: &str) -> Result<TensorEntry> {
        let shape = self.shape(name)?.to_vec();
        let dtype = if shape.len() == 1 { Dtype::F32 } else { self.dtype };
        let bytes = match dtype {
            Dtype::Block(d) => (shape[0] * crate::quant::row_bytes(d, shape[1])?) as u64,
            _ => (shape.iter().product::<usize>() * dtype.size()) as u64,
        };
        Ok(TensorEntry { dtype, shape, start: 0, end: bytes })
    }
    fn total_bytes(&self) -> u64 {
        self.tensors.iter().map(|(n, _)| self.entry(n).map_or(0, |e| e.end)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_the_published_parameter_counts() {
        // TinyLlama-1.1B: 1,100,048,384 (its model card); LiteLlama-460M: 461,685,760;
        // stories15M: 15,191,712 (llama2.c's export, whose classifier shares the embedding);
        // Qwen2.5-0.5B: 494,032,768; Qwen3-0.6B: 596,049,920 (their model cards' safetensors).
        let published = [("tinyllama-1.1b", 1_100_048_384usize), ("litellama-460m", 461_685_760), ("stories15m", 15_191_712), ("qwen2.5-0.5b", 494_032_768), ("qwen3-0.6b", 596_049_920), ("gemma3-270m", 268_098_176)];
        assert_eq!(published.len(), MODELS.len());
        for (name, want) in published {
            let c = config(name).unwrap();
            let total: usize = tensor_shapes(&c).iter().map(|(_, s)| s.iter().product::<usize>()).sum();
            assert_eq!(total, want, "{name}");
            assert_eq!(total, c.parameter_count(), "{name}");
        }
    }

    #[test]
    fn weights_are_deterministic_and_small() {
        let c = config("stories15m").unwrap();
        let mut w = SyntheticWeights::new(&c);
        let a = w.tensor("model.layers.0.mlp.up_proj.weight").unwrap().1.into_f32();
        let b = w.tensor("model.layers.0.mlp.up_proj.weight").unwrap().1.into_f32();
        assert_eq!(a, b);
        let cols = 288;
        let rows = w.read_rows("model.layers.0.mlp.up_proj.weight", 5..9).unwrap().into_f32();
        assert_eq!(rows, a[5 * cols..9 * cols]);
        let std = (a.iter().map(|x| x * x).sum::<f32>() / a.len() as f32).sqrt();
        assert!((std - 0.02).abs() < 0.001, "{std}");
        assert!(matches!(w.tensor("nope"), Err(Error::MissingTensor { .. })));
        assert!(config("gpt-5").is_err());
    }
}
