//! Which type each tensor of a model is quantized to: llama-quantize's file types (`Q4_K_M`,
//! `Q8_0`, ...) and its per-tensor rules for them (`llama_tensor_get_type_impl` in llama.cpp's
//! `src/llama-quant.cpp`), for dense Llama-style models, so that `cria quantize --to q4_k_m`
//! makes the same choices as `llama-quantize IN OUT Q4_K_M`:
//!
//! - only matrices named `*weight` are quantized, never norms (`*_norm.weight`) or 1-D tensors;
//! - the output matrix (or the token embedding when it is tied, i.e. there is no output matrix)
//!   is Q6_K unless the file type is Q8_0, and Q8_0 when its rows are not whole blocks of the
//!   file type;
//! - `_M` mixes give `attn_v` and `ffn_down` Q6_K in the layers `use_more_bits` picks (the first
//!   and last eighth, and every third between); `Q4_K_S` gives the first four `attn_v` and the
//!   first eighth of `ffn_down` Q5_K;
//! - a matrix whose rows are not whole blocks of its type falls back ([`fallback`]).
//!
//! llama-quantize walks tensors in its loader's order (`weight_name_comparer`: tensors outside
//! the layers first, then layer by layer, by name within each), and "layer i" of those rules is
//! the i-th `attn_v` / `ffn_down` met: [`walk_order`] is the same order, and the GGUF writer
//! (`model::gguf::write`) writes tensors in it. Its rules for MoE, Falcon and 70B models are
//! not here.

use super::ggml::BlockType;
use crate::error::{Error, Result};
use crate::ops::WeightDType;

/// Extra bits for `attn_v` and `ffn_down` in some layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bump {
    None,
    /// In the layers `use_more_bits` picks (the `_M` mixes).
    MoreBits(BlockType),
    /// For the first four `attn_v` and the first eighth of `ffn_down` (`Q4_K_S`).
    First(BlockType),
}

/// One of llama-quantize's file types (`llama_ftype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileType {
    /// The name llama-quantize takes, lower case.
    pub name: &'static str,
    /// `general.file_type` (`enum llama_ftype`).
    pub id: u32,
    /// The type of every matrix the rules do not single out.
    pub base: WeightDType,
    bump: Bump,
}

const fn ft(name: &'static str, id: u32, base: WeightDType, bump: Bump) -> FileType {
    FileType { name, id, base, bump }
}
const Q6K: BlockType = BlockType::Q6_K;

/// The file types Cria writes: those whose every type it can quantize to.
pub const FILE_TYPES: &[FileType] = &[
    ft("f32", 0, WeightDType::F32, Bump::None),
    ft("f16", 1, WeightDType::F16, Bump::None),
    ft("bf16", 32, WeightDType::BF16, Bump::None),
    ft("q8_0", 7, WeightDType::Q8_0, Bump::None),
    ft("q6_k", 18, WeightDType::Q6_K, Bump::None),
    ft("q5_k_m", 17, WeightDType::Block(BlockType::Q5_K), Bump::MoreBits(Q6K)),
    ft("q5_k_s", 16, WeightDType::Block(BlockType::Q5_K), Bump::None),
    ft("q4_k_m", 15, WeightDType::Q4_K, Bump::MoreBits(Q6K)),
    ft("q4_k_s", 14, WeightDType::Q4_K, Bump::First(BlockType::Q5_K)),
    ft("q5_1", 9, WeightDType::Block(BlockType::Q5_1), Bump::None),
    ft("q5_0", 8, WeightDType::Block(BlockType::Q5_0), Bump::None),
    ft("q4_1", 3, WeightDType::Block(BlockType::Q4_1), Bump::None),
    ft("q4_0", 2, WeightDType::Q4_0, Bump::None),
];

/// llama-quantize's aliases: `Q4_K` and `Q5_K` mean the `_M` mixes.
const ALIASES: &[(&str, &str)] = &[("q4_k", "q4_k_m"), ("q5_k", "q5_k_m")];

/// How to choose each tensor's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// llama-quantize's rules for this file type.
    Mix(FileType),
    /// Every quantizable matrix in this type, falling back where rows are not whole blocks
    /// (llama-quantize's `--pure`).
    Pure(WeightDType),
}

impl Scheme {
    /// `--to NAME`, as llama-quantize names file types (`q4_k_m`, `Q8_0`, `q4_k` = `q4_k_m`);
    /// with `pure`, NAME is one weight type for every matrix (`q4_k` = Q4_K everywhere).
    pub fn parse(name: &str, pure: bool) -> Result<Scheme> {
        let lower = name.to_ascii_lowercase();
        if pure {
            let dtype = WeightDType::parse(&lower)?;
            return if super::can_quantize(dtype) { Ok(Scheme::Pure(dtype)) } else { Err(super::cannot_quantize(dtype)) };
        }
        let canonical = ALIASES.iter().find(|a| a.0 == lower).map_or(lower.as_str(), |a| a.1);
        if let Some(f) = FILE_TYPES.iter().find(|f| f.name == canonical) {
            return Ok(Scheme::Mix(*f));
        }
        Err(match WeightDType::parse(&lower) {
            Ok(t) if !super::can_quantize(t) => super::cannot_quantize(t),
            _ => Error::Unsupported {
                what: format!("the file type `{name}`"),
                hint: format!(
                    "choose one of {} ({} as llama-quantize spells them; --pure with a weight type puts every matrix in it)",
                    FILE_TYPES.iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
                    ALIASES.iter().map(|a| format!("{} = {}", a.0, a.1)).collect::<Vec<_>>().join(", ")
                ),
            },
        })
    }

    /// `general.file_type` for a file written with this scheme (for `--pure`, the file type
    /// whose base type it is).
    pub fn file_type_id(self) -> u32 {
        match self {
            Scheme::Mix(f) => f.id,
            Scheme::Pure(t) => FILE_TYPES.iter().find(|f| f.base == t).map_or(0, |f| f.id),
        }
    }

    /// The base type (every matrix the rules do not single out).
    pub fn base(self) -> WeightDType {
        match self {
            Scheme::Mix(f) => f.base,
            Scheme::Pure(t) => t,
        }
    }
}

/// A tensor as the rules see it: its GGUF name and its shape (`cols` = row length).
#[derive(Clone, Debug)]
pub struct TensorShape {
    pub name: String,
    pub n_dims: usize,
    pub cols: usize,
}

/// Whether a file can hold rows that end in a partial block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocks {
    /// GGUF (ggml): every row is whole blocks.
    Whole,
    /// Cria's safetensors layout: the last block of a row may be zero-padded.
    Padded,
}

/// The type of a tensor whose rows are not whole blocks of `t` (`tensor_type_fallback`): the
/// 256-value types fall back to a 32-value type of about the same bits, and where no block
/// type fits the rows, F16 (with [`Blocks::Padded`], the 32-value type with its last block
/// padded, as quantizing at load does).
pub fn fallback(t: WeightDType, cols: usize, blocks: Blocks) -> WeightDType {
    let Some(b) = t.block() else { return t };
    if cols.is_multiple_of(b.block_values()) {
        return t;
    }
    let f = b.fallback().unwrap_or(b);
    match blocks {
        _ if cols.is_multiple_of(f.block_values()) => WeightDType::Block(f),
        Blocks::Padded => WeightDType::Block(f),
        Blocks::Whole => WeightDType::F16,
    }
}

/// Whether llama-quantize quantizes a tensor at all (`tensor_allows_quantization`, the parts
/// that apply to Llama-style models).
fn quantizable(t: &TensorShape) -> bool {
    t.n_dims >= 2 && t.name.ends_with("weight") && !t.name.contains("_norm.weight")
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third one
/// between.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// llama.cpp's tensor order (`weight_name_comparer`): by layer number (`blk.N.`; tensors
/// outside the layers first), then by name.
pub fn walk_order(a: &str, b: &str) -> std::cmp::Ordering {
    let layer = |n: &str| -> i64 {
        let digits = n.strip_prefix("blk.").map(|r| r.split('.').next().unwrap_or(""));
        digits.filter(|d| d.len() < 10).and_then(|d| d.parse().ok()).unwrap_or(-1)
    };
    layer(a).cmp(&layer(b)).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The type of each tensor under `scheme` (None: kept as it is), in the order given. `n_layer`
/// is the model's layer count (`{arch}.block_count`).
pub fn choose(scheme: Scheme, tensors: &[TensorShape], n_layer: usize, blocks: Blocks) -> Vec<Option<WeightDType>> {
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| walk_order(&tensors[a].name, &tensors[b].name));
    let tied = !tensors.iter().any(|t| t.name == "output.weight");
    let n_attn_v = tensors.iter().filter(|t| t.name.contains("attn_v.weight")).count();
    let (mut i_attn_v, mut i_ffn_down) = (0, 0);
    let mut out = vec![None; tensors.len()];
    for i in order {
        let t = &tensors[i];
        if !quantizable(t) {
            continue;
        }
        let base = scheme.base();
        let mut ty = base;
        if let (Scheme::Mix(f), Some(b)) = (scheme, base.block()) {
            let is_output = t.name == "output.weight" || (tied && t.name == "token_embd.weight");
            if is_output {
                ty = if !t.cols.is_multiple_of(b.block_values()) {
                    WeightDType::Q8_0
                } else if base != WeightDType::Q8_0 {
                    WeightDType::Q6_K
                } else {
                    base
                };
            } else if t.name.contains("attn_v.weight") {
                match f.bump {
                    Bump::MoreBits(m) if use_more_bits(i_attn_v, n_attn_v) => ty = WeightDType::Block(m),
                    Bump::First(m) if i_attn_v < 4 => ty = WeightDType::Block(m),
                    _ => {}
                }
                i_attn_v += 1;
            } else if t.name.contains("ffn_down") {
                match f.bump {
                    Bump::MoreBits(m) if use_more_bits(i_ffn_down, n_layer) => ty = WeightDType::Block(m),
                    Bump::First(m) if i_ffn_down < n_layer / 8 => ty = WeightDType::Block(m),
                    _ => {}
                }
                i_ffn_down += 1;
            }
        }
        out[i] = Some(fallback(ty, t.cols, blocks));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama(n_layer: usize, hidden: usize, ffn: usize, tied: bool) -> Vec<TensorShape> {
        let mut v = vec![TensorShape { name: "token_embd.weight".into(), n_dims: 2, cols: hidden }, TensorShape { name: "output_norm.weight".into(), n_dims: 1, cols: hidden }];
        if !tied {
            v.push(TensorShape { name: "output.weight".into(), n_dims: 2, cols: hidden });
        }
        for l in 0..n_layer {
            for (part, cols) in [("attn_norm", hidden), ("attn_q", hidden), ("attn_k", hidden), ("attn_v", hidden), ("attn_output", hidden), ("ffn_norm", hidden), ("ffn_gate", hidden), ("ffn_up", hidden), ("ffn_down", ffn)] {
                let n_dims = if part.ends_with("norm") { 1 } else { 2 };
                v.push(TensorShape { name: format!("blk.{l}.{part}.weight"), n_dims, cols });
            }
        }
        v
    }

    fn of<'a>(t: &'a [TensorShape], c: &'a [Option<WeightDType>], name: &str) -> Option<&'static str> {
        c[t.iter().position(|x| x.name == name).unwrap()].map(|d| d.name())
    }

    #[test]
    fn q4_k_m_on_tinyllama_shapes() {
        // 22 layers as TinyLlama-1.1B: use_more_bits picks the first and last eighth and every
        // third layer between.
        let t = llama(22, 2048, 5632, false);
        let c = choose(Scheme::parse("Q4_K_M", false).unwrap(), &t, 22, Blocks::Whole);
        let bumped: Vec<usize> = (0..22).filter(|l| of(&t, &c, &format!("blk.{l}.attn_v.weight")) == Some("q6_k")).collect();
        assert_eq!(bumped, vec![0, 1, 4, 7, 10, 13, 16, 19, 20, 21]);
        for l in 0..22 {
            assert_eq!(of(&t, &c, &format!("blk.{l}.ffn_down.weight")), of(&t, &c, &format!("blk.{l}.attn_v.weight")));
            assert_eq!(of(&t, &c, &format!("blk.{l}.attn_q.weight")), Some("q4_k"));
            assert_eq!(of(&t, &c, &format!("blk.{l}.attn_norm.weight")), None);
        }
        assert_eq!(of(&t, &c, "output.weight"), Some("q6_k"));
        assert_eq!(of(&t, &c, "token_embd.weight"), Some("q4_k"));
    }

    #[test]
    fn fallbacks_and_tied_output() {
        // SmolLM2-135M: hidden 576, ffn 1536, tied. 576 is not a multiple of 256.
        let t = llama(30, 576, 1536, true);
        let c = choose(Scheme::parse("q4_k_m", false).unwrap(), &t, 30, Blocks::Whole);
        assert_eq!(of(&t, &c, "token_embd.weight"), Some("q8_0"), "tied embedding: the output rule, rows not whole Q4_K blocks");
        assert_eq!(of(&t, &c, "blk.5.attn_q.weight"), Some("q5_0"));
        assert_eq!(of(&t, &c, "blk.6.ffn_down.weight"), Some("q4_k"), "1536 = 6 blocks of 256");
        assert_eq!(of(&t, &c, "blk.0.ffn_down.weight"), Some("q6_k"));
        assert_eq!(of(&t, &c, "blk.0.attn_v.weight"), Some("q8_0"), "Q6_K falls back to Q8_0");
        // Q4_0 files keep the output in Q6_K where it fits, Q8_0 files in Q8_0; rows of 100
        // fit no block type: F16.
        let t = llama(2, 256, 100, false);
        let c = choose(Scheme::parse("q4_0", false).unwrap(), &t, 2, Blocks::Whole);
        assert_eq!((of(&t, &c, "output.weight"), of(&t, &c, "blk.0.attn_v.weight"), of(&t, &c, "blk.0.ffn_down.weight")), (Some("q6_k"), Some("q4_0"), Some("f16")));
        let c = choose(Scheme::parse("q8_0", false).unwrap(), &t, 2, Blocks::Whole);
        assert_eq!(of(&t, &c, "output.weight"), Some("q8_0"));
        let c = choose(Scheme::parse("q4_k", true).unwrap(), &t, 2, Blocks::Whole);
        assert_eq!((of(&t, &c, "output.weight"), of(&t, &c, "blk.0.attn_v.weight")), (Some("q4_k"), Some("q4_k")));
        // Cria's own layout pads the last block instead of falling back to F16.
        let c = choose(Scheme::parse("q4_0", false).unwrap(), &t, 2, Blocks::Padded);
        assert_eq!(of(&t, &c, "blk.0.ffn_down.weight"), Some("q4_0"));
    }

    #[test]
    fn names() {
        assert_eq!(Scheme::parse("Q4_K", false).unwrap(), Scheme::parse("q4_k_m", false).unwrap());
        assert_eq!(Scheme::parse("q4_k_s", false).unwrap().file_type_id(), 14);
        assert!(matches!(Scheme::parse("q3_k_m", false), Err(Error::Unsupported { .. })));
        let e = Scheme::parse("q2_k", false).unwrap_err().to_string();
        assert!(e.contains("q2_k"), "{e}");
        assert!(Scheme::parse("q4_k_m", true).is_err(), "--pure takes a weight type");
    }
}
