//! GGUF tensors served under Hugging Face names, in HF's layout: llama.cpp's names mapped back
//! (`blk.3.attn_q.weight` → `model.layers.3.self_attn.q_proj.weight`), shapes reversed (`ne`
//! lists the row length first), and the q/k row permutation of `convert_hf_to_gguf.py` undone.
//!
//! Why the permutation: llama.cpp's RoPE rotates adjacent pairs (2i, 2i+1) of each head, HF's
//! `rotate_half` rotates (i, i + d/2). The converter reorders q_proj and k_proj rows
//! (`LlamaModel.permute`: `w.reshape(n_head, 2, d/2, cols).swapaxes(1, 2)`) so that llama.cpp's
//! pairs are HF's; Cria rotates like HF, so the loader puts the rows back. Whole rows move, so
//! the same permutation serves float and block-quantized rows.

use super::{bad, GgmlType, GgufFile, TensorInfo};
use crate::error::{Error, Result};
use crate::model::config::LlamaConfig;
use crate::model::family::Family;
use crate::model::safetensors::{ByteSource, Dtype, HostTensor, TensorEntry};
use std::ops::Range;
use crate::model::weights::WeightSource;
use crate::ops::WeightDType;
use crate::quant::ggml::BlockType;

/// Tensor types this runtime computes with, as ggml names them.
pub fn supported_types() -> String {
    let blocks = BlockType::ALL.map(|t| t.name().to_ascii_uppercase());
    format!("F32, F16, BF16, {}", blocks.join(", "))
}

/// The tensor llama.cpp stores Llama 3 rope scaling in (read by the config, not served).
pub const ROPE_FREQS: &str = "rope_freqs.weight";

/// How a tensor's rows are reordered on the way out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rows {
    AsStored,
    /// Undo `LlamaModel.permute` with this many heads.
    Unpermute(usize),
}

pub struct GgufWeights<S: ByteSource> {
    file: GgufFile<S>,
    family: Family,
    /// (q heads, kv heads) of llama.cpp's q/k row permutation, for families it permutes.
    permuted_heads: Option<(usize, usize)>,
    /// The HF names of the tensors present, sorted.
    names: Vec<String>,
}

/// The GGUF name of a Hugging Face tensor of `family`, and how to reorder its rows
/// (`permuted_heads`: the (q, kv) head counts of llama.cpp's q/k permutation; None for families
/// it does not permute).
fn gguf_name(hf: &str, family: &Family, permuted_heads: Option<(usize, usize)>) -> Option<(String, Rows)> {
    let (q, k) = permuted_heads.map_or((Rows::AsStored, Rows::AsStored), |(q, kv)| (Rows::Unpermute(q), Rows::Unpermute(kv)));
    match hf {
        "model.embed_tokens.weight" => return Some(("token_embd.weight".into(), Rows::AsStored)),
        "model.norm.weight" => return Some(("output_norm.weight".into(), Rows::AsStored)),
        "lm_head.weight" => return Some(("output.weight".into(), Rows::AsStored)),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok().filter(|_| layer.bytes().all(|b| b.is_ascii_digit()))?;
    let (name, rows) = match part {
        "input_layernorm.weight" => ("attn_norm", Rows::AsStored),
        "self_attn.q_proj.weight" => ("attn_q", q),
        "self_attn.k_proj.weight" => ("attn_k", k),
        "self_attn.v_proj.weight" => ("attn_v", Rows::AsStored),
        // Qwen2's biases and Qwen3's per-head norms (families whose q/k rows are not permuted).
        "self_attn.q_proj.bias" => return Some((format!("blk.{layer}.attn_q.bias"), Rows::AsStored)),
        "self_attn.k_proj.bias" => return Some((format!("blk.{layer}.attn_k.bias"), Rows::AsStored)),
        "self_attn.v_proj.bias" => return Some((format!("blk.{layer}.attn_v.bias"), Rows::AsStored)),
        "self_attn.q_norm.weight" => ("attn_q_norm", Rows::AsStored),
        "self_attn.k_norm.weight" => ("attn_k_norm", Rows::AsStored),
        "self_attn.o_proj.weight" => ("attn_output", Rows::AsStored),
        // Llama's MLP input norm; in Gemma's four, the attention output's norm.
        "post_attention_layernorm.weight" if family.sandwich_norms => ("post_attention_norm", Rows::AsStored),
        "post_attention_layernorm.weight" => ("ffn_norm", Rows::AsStored),
        "pre_feedforward_layernorm.weight" if family.sandwich_norms => ("ffn_norm", Rows::AsStored),
        "post_feedforward_layernorm.weight" if family.sandwich_norms => ("post_ffw_norm", Rows::AsStored),
        "mlp.gate_proj.weight" => ("ffn_gate", Rows::AsStored),
        "mlp.up_proj.weight" => ("ffn_up", Rows::AsStored),
        "mlp.down_proj.weight" => ("ffn_down", Rows::AsStored),
        _ => return None,
    };
    Some((format!("blk.{layer}.{name}.weight"), rows))
}

/// The GGUF (llama.cpp) name of a Hugging Face tensor name of `family`.
pub fn gguf_tensor_name(hf: &str, family: &Family) -> Option<String> {
    gguf_name(hf, family, None).map(|(name, _)| name)
}

/// The element type a tensor of ggml type `t` is read as (None: a type Cria does not compute with).
pub(crate) fn dtype_of(t: GgmlType) -> Option<Dtype> {
    Some(match t {
        GgmlType::F32 => Dtype::F32,
        GgmlType::F16 => Dtype::F16,
        GgmlType::BF16 => Dtype::BF16,
        _ => Dtype::Block(WeightDType::Block(BlockType::from_ggml_id(t.0)?)),
    })
}

/// HF row r of a permuted [heads · d, cols] matrix is stored row `source_row(r)`: within a head,
/// HF row j·d/2 + i (half j, index i) was written at 2i + j.
fn source_row(r: usize, head_dim: usize) -> usize {
    let (head, k) = (r / head_dim, r % head_dim);
    let half = head_dim / 2;
    head * head_dim + 2 * (k % half) + k / half
}

impl<S: ByteSource> GgufWeights<S> {
    /// Checks up front that every tensor has a type this runtime computes with, so that an
    /// unsupported file fails before anything is uploaded.
    pub fn new(file: GgufFile<S>, config: &LlamaConfig) -> Result<Self> {
        for t in file.tensors() {
            if dtype_of(t.ggml_type).is_none() {
                return Err(Error::UnsupportedDtype {
                    tensor: t.name.clone(),
                    got: t.ggml_type.describe(),
                    supported: format!("{}. Hint: download another quantization of this model (Q4_K_M, Q8_0, ...) or requantize {} with `llama-quantize --allow-requantize`", supported_types(), file.path),
                });
            }
        }
        let permuted_heads = config.family.gguf_permuted_qk.then_some((config.num_attention_heads, config.num_key_value_heads));
        let mut w = GgufWeights { file, family: config.family, permuted_heads, names: Vec::new() };
        w.names = crate::model::synthetic::tensor_shapes(config).into_iter().map(|(n, _)| n).filter(|n| w.has(n)).collect();
        Ok(w)
    }

    /// The parsed file (metadata, tensor infos).
    pub fn file(&self) -> &GgufFile<S> {
        &self.file
    }

    fn info(&self, hf: &str) -> Option<(&TensorInfo, Rows)> {
        let (name, rows) = gguf_name(hf, &self.family, self.permuted_heads)?;
        Some((self.file.tensor_info(&name)?, rows))
    }
}

impl<S: ByteSource> GgufWeights<S> {
    /// The HF-layout entry of tensor `name`, its llama.cpp name and how its rows are stored.
    fn locate(&self, name: &str) -> Result<(TensorEntry, String, Rows)> {
        let Some((info, rows)) = self.info(name) else {
            let gguf = gguf_name(name, &self.family, None).map_or_else(|| "no llama.cpp name".to_string(), |(n, _)| format!("llama.cpp name {n}"));
            return Err(Error::MissingTensor { name: format!("{name} ({gguf})"), path: self.file.path.clone() });
        };
        let gguf = info.name.clone();
        let dtype = dtype_of(info.ggml_type).ok_or_else(|| Error::UnsupportedDtype { tensor: gguf.clone(), got: info.ggml_type.describe(), supported: supported_types() })?;
        let shape = info
            .dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| Error::Unsupported { what: format!("tensor `{gguf}` with dimensions {:?} on this 32-bit target", info.dims), hint: "use a smaller model".into() })?;
        Ok((TensorEntry { dtype, shape, start: info.start, end: info.end }, gguf, rows))
    }
}

impl<S: ByteSource> WeightSource for GgufWeights<S> {
    fn read_rows(&mut self, name: &str, rows: Range<usize>) -> Result<HostTensor> {
        let (entry, gguf, order) = self.locate(name)?;
        let path = &self.file.path;
        let Rows::Unpermute(heads) = order else {
            let range = entry.row_range(&gguf, path, rows)?;
            return Ok(HostTensor::from_le_bytes(entry.dtype, self.file.read_range(&gguf, range)?));
        };
        let n_rows = entry.rows();
        if entry.shape.len() != 2 || heads == 0 || n_rows % (2 * heads) != 0 {
            return Err(bad(
                path,
                format!("tensor `{gguf}` has shape {:?}; undoing llama.cpp's RoPE row permutation needs a matrix whose rows split into {heads} heads of an even size", entry.shape),
                "the head counts in the metadata do not match the tensors",
            ));
        }
        // A row moves only within its head: read the whole heads the rows touch, then reorder.
        let head_dim = n_rows / heads;
        let first = rows.start / head_dim * head_dim;
        let last = rows.end.div_ceil(head_dim) * head_dim;
        let range = entry.row_range(&gguf, path, first..last)?;
        let stored = self.file.read_range(&gguf, range)?;
        let rb = entry.row_bytes() as usize;
        let mut bytes = Vec::with_capacity(rows.len() * rb);
        for r in rows {
            let s = source_row(r, head_dim) - first;
            bytes.extend_from_slice(&stored[s * rb..(s + 1) * rb]);
        }
        Ok(HostTensor::from_le_bytes(entry.dtype, bytes))
    }

    fn has(&self, name: &str) -> bool {
        self.info(name).is_some()
    }

    fn names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn entry(&self, name: &str) -> Result<TensorEntry> {
        self.locate(name).map(|(entry, _, _)| entry)
    }

    fn total_bytes(&self) -> u64 {
        self.file.tensors().iter().filter(|t| t.name != ROPE_FREQS).map(|t| t.end - t.start).sum()
    }

    /// llama.cpp's converter adds Gemma's `1 +` to the norm weights it writes.
    fn norms_as_applied(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `LlamaModel.permute` on row indices, written as in the converter:
    /// reshape(n_head, 2, d/2) → swapaxes(1, 2) → flatten.
    fn permute(rows: &[usize], n_head: usize) -> Vec<usize> {
        let half = rows.len() / n_head / 2;
        let mut out = Vec::new();
        for h in 0..n_head {
            for i in 0..half {
                for j in 0..2 {
                    out.push(rows[h * 2 * half + j * half + i]);
                }
            }
        }
        out
    }

    #[test]
    fn source_row_undoes_the_converter_permutation() {
        for (n_rows, heads) in [(8, 1), (16, 2), (128, 32), (12, 3), (64, 4)] {
            let hf: Vec<usize> = (0..n_rows).collect();
            let stored = permute(&hf, heads);
            let back: Vec<usize> = (0..n_rows).map(|r| stored[source_row(r, n_rows / heads)]).collect();
            assert_eq!(back, hf, "{n_rows} rows, {heads} heads");
        }
    }

    #[test]
    fn names_map_to_llama_cpp() {
        let g = |n| gguf_name(n, &crate::model::family::LLAMA, Some((8, 2)));
        assert_eq!(g("model.embed_tokens.weight"), Some(("token_embd.weight".into(), Rows::AsStored)));
        assert_eq!(g("model.layers.11.self_attn.q_proj.weight"), Some(("blk.11.attn_q.weight".into(), Rows::Unpermute(8))));
        assert_eq!(g("model.layers.0.self_attn.k_proj.weight"), Some(("blk.0.attn_k.weight".into(), Rows::Unpermute(2))));
        assert_eq!(g("model.layers.0.mlp.down_proj.weight"), Some(("blk.0.ffn_down.weight".into(), Rows::AsStored)));
        assert_eq!(g("model.layers.0.post_attention_layernorm.weight"), Some(("blk.0.ffn_norm.weight".into(), Rows::AsStored)));
        assert_eq!(g("lm_head.weight"), Some(("output.weight".into(), Rows::AsStored)));
        assert_eq!(g("model.layers.+1.mlp.up_proj.weight"), None);
        assert_eq!(g("model.layers.0.mlp.fc.weight"), None);
        assert_eq!(g("model.layers.0.pre_feedforward_layernorm.weight"), None);
        // Gemma's four norms (llama.cpp's gemma3 names).
        let gemma = |n| gguf_name(n, &crate::model::family::GEMMA3, None).map(|(name, _)| name);
        assert_eq!(gemma("model.layers.2.post_attention_layernorm.weight").as_deref(), Some("blk.2.post_attention_norm.weight"));
        assert_eq!(gemma("model.layers.2.pre_feedforward_layernorm.weight").as_deref(), Some("blk.2.ffn_norm.weight"));
        assert_eq!(gemma("model.layers.2.post_feedforward_layernorm.weight").as_deref(), Some("blk.2.post_ffw_norm.weight"));
        assert_eq!(gemma("model.layers.2.input_layernorm.weight").as_deref(), Some("blk.2.attn_norm.weight"));
    }
}
