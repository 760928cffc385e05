//! Block-quantized weights with GGUF semantics (ggml's `quantize_row_q8_0_ref` and
//! `quantize_row_q4_0_ref`): blocks of 32 values along a row, each with one f16 scale `d`.
//!
//! - Q8_0: `q = round(x / d)` in -127..=127 with `d = max|x| / 127`; value = `q * d`.
//!   ggml block: `d: f16, qs: [i8; 32]` (34 bytes).
//! - Q4_0: `d = m / -8` where `m` is the value of largest magnitude (sign kept);
//!   `q = min(15, trunc(x / d + 8.5))` in 0..=15; value = `(q - 8) * d`.
//!   ggml block: `d: f16, qs: [u8; 16]` with value j in the low nibble of byte j and value
//!   j + 16 in its high nibble (18 bytes).
//!
//! On the GPU a row is repacked for 4-byte loads ([`repack_row`]): first every block's quants,
//! in value order (Q8_0: 8 words per block, value 4w+b in byte b of word w; Q4_0: 4 words per
//! block, value 8w+n in nibble n of word w), then the scales as f16 pairs (block 2i in the low
//! half), then zero words up to a multiple of 4 words. Rows whose length is not a multiple of
//! 32 are padded with zeros to whole blocks.

pub mod ggml;

use crate::error::{Error, Result};
use crate::ops::WeightDType;
use half::f16;

/// Values per block.
pub const QK: usize = 32;

/// Bytes of one ggml block of `dtype` (None for the unquantized types).
pub fn block_bytes(dtype: WeightDType) -> Option<usize> {
    match dtype {
        WeightDType::Q8_0 => Some(2 + QK),
        WeightDType::Q4_0 => Some(2 + QK / 2),
        WeightDType::F32 | WeightDType::F16 | WeightDType::BF16 => None,
    }
}

/// u32 words of quants per block on the GPU.
pub(crate) fn block_words(dtype: WeightDType) -> usize {
    match dtype {
        WeightDType::Q8_0 => QK / 4,
        WeightDType::Q4_0 => QK / 8,
        WeightDType::F32 | WeightDType::F16 | WeightDType::BF16 => 0,
    }
}

/// Blocks per row of `cols` values.
pub fn blocks(cols: usize) -> usize {
    cols.div_ceil(QK)
}

/// Bytes of one row of `cols` values in ggml's block layout.
pub fn row_bytes(dtype: WeightDType, cols: usize) -> Result<usize> {
    let b = block_bytes(dtype).ok_or_else(|| Error::Unsupported { what: format!("{dtype:?} as a block format"), hint: "only Q8_0 and Q4_0 are block-quantized".into() })?;
    Ok(blocks(cols) * b)
}

/// Quantizes one row into ggml blocks, appended to `out` (the row is zero-padded to whole blocks).
pub fn quantize_row(dtype: WeightDType, row: &[f32], out: &mut Vec<u8>) {
    for block in row.chunks(QK) {
        let mut x = [0f32; QK];
        x[..block.len()].copy_from_slice(block);
        match dtype {
            WeightDType::Q8_0 => {
                let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
            }
            WeightDType::Q4_0 => {
                let (mut amax, mut max) = (0f32, 0f32);
                for &v in &x {
                    if amax < v.abs() {
                        amax = v.abs();
                        max = v;
                    }
                }
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
                let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
                out.extend((0..QK / 2).map(|j| q(x[j]) | (q(x[j + QK / 2]) << 4)));
            }
            WeightDType::F32 | WeightDType::F16 | WeightDType::BF16 => unreachable!("quantize_row is called with block formats only"),
        }
    }
}

/// The integer quants and the scale of one ggml block: (d, q) with value = q * d.
fn decode_block(dtype: WeightDType, b: &[u8]) -> (f32, [i32; QK]) {
    let d = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
    let mut q = [0i32; QK];
    match dtype {
        WeightDType::Q8_0 => {
            for (j, v) in q.iter_mut().enumerate() {
                *v = b[2 + j] as i8 as i32;
            }
        }
        WeightDType::Q4_0 => {
            for j in 0..QK / 2 {
                q[j] = (b[2 + j] & 0xF) as i32 - 8;
                q[j + QK / 2] = (b[2 + j] >> 4) as i32 - 8;
            }
        }
        WeightDType::F32 | WeightDType::F16 | WeightDType::BF16 => unreachable!("decode_block is called with block formats only"),
    }
    (d, q)
}

/// The ggml block format of a block-quantized weight type.
pub fn block_type(dtype: WeightDType) -> Option<ggml::BlockType> {
    match dtype {
        WeightDType::Q8_0 => Some(ggml::BlockType::Q8_0),
        WeightDType::Q4_0 => Some(ggml::BlockType::Q4_0),
        WeightDType::F32 | WeightDType::F16 | WeightDType::BF16 => None,
    }
}

/// Dequantizes one row of ggml blocks to `cols` f32 values (CPU reference of the kernels).
pub fn dequantize_row(dtype: WeightDType, bytes: &[u8], cols: usize) -> Vec<f32> {
    let Some(t) = block_type(dtype) else { return Vec::new() };
    let mut out = ggml::dequantize(t, bytes);
    out.truncate(cols);
    out
}

/// What a kernel computes with for weights stored as `dtype`: f16 rounding, or quantize then
/// dequantize (CPU reference input).
pub fn round_trip(dtype: WeightDType, data: &[f32], cols: usize) -> Vec<f32> {
    match dtype {
        WeightDType::F32 => return data.to_vec(),
        WeightDType::F16 => return data.iter().map(|&v| f16::from_f32(v).to_f32()).collect(),
        WeightDType::BF16 => return data.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect(),
        WeightDType::Q8_0 | WeightDType::Q4_0 => {}
    }
    let mut out = Vec::with_capacity(data.len());
    let mut bytes = Vec::new();
    for row in data.chunks(cols) {
        bytes.clear();
        quantize_row(dtype, row, &mut bytes);
        out.extend(dequantize_row(dtype, &bytes, cols));
    }
    out
}

/// GPU words of one row of `cols` values (quants, scales, padding to 4 words).
pub(crate) fn row_words(dtype: WeightDType, cols: usize) -> usize {
    let n = blocks(cols);
    (n * block_words(dtype) + n.div_ceil(2)).next_multiple_of(4)
}

/// Repacks one row of ggml blocks into the GPU layout (see the module docs), appended to `out`.
pub(crate) fn repack_row(dtype: WeightDType, bytes: &[u8], out: &mut Vec<u32>) {
    let bb = block_bytes(dtype).unwrap_or(1);
    let mut scales = Vec::with_capacity(bytes.len() / bb);
    for block in bytes.chunks_exact(bb) {
        scales.push(u16::from_le_bytes([block[0], block[1]]) as u32);
        let (_, q) = decode_block(dtype, block);
        match dtype {
            WeightDType::Q8_0 => out.extend(q.chunks(4).map(|c| c.iter().enumerate().fold(0u32, |w, (b, &v)| w | ((v as u8 as u32) << (8 * b))))),
            _ => out.extend(q.chunks(8).map(|c| c.iter().enumerate().fold(0u32, |w, (n, &v)| w | (((v + 8) as u32) << (4 * n))))),
        }
    }
    out.extend(scales.chunks(2).map(|p| p[0] | (p.get(1).copied().unwrap_or(0) << 16)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::Rng;

    /// Values ggml itself produces for a known block (computed by hand from the reference C).
    #[test]
    fn q8_0_matches_ggml_semantics() {
        let row: Vec<f32> = (0..QK).map(|i| i as f32 - 12.7).collect();
        let mut bytes = Vec::new();
        quantize_row(WeightDType::Q8_0, &row, &mut bytes);
        assert_eq!(bytes.len(), 34);
        let d = f16::from_bits(u16::from_le_bytes([bytes[0], bytes[1]])).to_f32();
        assert!((d - 18.3 / 127.0).abs() < 1e-4, "{d}");
        assert_eq!(bytes[2 + 31] as i8, 127); // the largest value maps to 127
        let back = dequantize_row(WeightDType::Q8_0, &bytes, QK);
        for (a, b) in row.iter().zip(&back) {
            assert!((a - b).abs() <= d * 0.5 + 127.0 * d / 2048.0, "{a} vs {b}");
        }
    }

    #[test]
    fn q4_0_matches_ggml_semantics() {
        let mut row = vec![0.5f32; QK];
        row[3] = -4.0; // largest magnitude, negative: d = -4 / -8 = 0.5, q(-4) = 0
        row[20] = 3.0;
        let mut bytes = Vec::new();
        quantize_row(WeightDType::Q4_0, &row, &mut bytes);
        assert_eq!(bytes.len(), 18);
        let back = dequantize_row(WeightDType::Q4_0, &bytes, QK);
        assert_eq!(back[3], -4.0);
        assert_eq!(back[20], 3.0);
        assert_eq!(back[0], 0.5);
        assert_eq!(bytes[2 + 3] & 0xF, 0);
        assert_eq!(bytes[2 + 4] >> 4, 14); // value 20 = j 4 high nibble: 3 / 0.5 + 8
    }

    #[test]
    fn round_trip_error_is_bounded_and_tail_blocks_pad() {
        let mut rng = Rng::new(7);
        for cols in [1, 31, 32, 33, 100] {
            let data = rng.normals(3 * cols, 1.0);
            for dtype in [WeightDType::Q8_0, WeightDType::Q4_0] {
                let back = round_trip(dtype, &data, cols);
                assert_eq!(back.len(), data.len());
                let levels = if dtype == WeightDType::Q8_0 { 127.0 } else { 8.0 };
                for (row, brow) in data.chunks(cols).zip(back.chunks(cols)) {
                    for (b, (blk, bblk)) in row.chunks(QK).zip(brow.chunks(QK)).enumerate() {
                        let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
                        for (a, q) in blk.iter().zip(bblk) {
                            assert!((a - q).abs() <= amax / levels * 1.01 + 1e-6, "{dtype:?} cols {cols} block {b}: {a} vs {q}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn repack_keeps_values_in_order() {
        let mut rng = Rng::new(3);
        let cols = 70;
        let data = rng.normals(cols, 1.0);
        for dtype in [WeightDType::Q8_0, WeightDType::Q4_0] {
            let mut bytes = Vec::new();
            quantize_row(dtype, &data, &mut bytes);
            let want = dequantize_row(dtype, &bytes, cols);
            let mut words = Vec::new();
            repack_row(dtype, &bytes, &mut words);
            let nb = blocks(cols);
            assert_eq!(words.len(), nb * block_words(dtype) + nb.div_ceil(2));
            for (k, &want) in want.iter().enumerate() {
                let (b, i) = (k / QK, k % QK);
                let scale_word = words[nb * block_words(dtype) + b / 2];
                let d = f16::from_bits((scale_word >> (16 * (b % 2))) as u16).to_f32();
                let q = match dtype {
                    WeightDType::Q8_0 => ((words[b * 8 + i / 4] >> (8 * (i % 4))) & 0xFF) as u8 as i8 as f32,
                    _ => ((words[b * 4 + i / 8] >> (4 * (i % 8))) & 0xF) as f32 - 8.0,
                };
                assert_eq!(q * d, want, "{dtype:?} value {k}");
            }
        }
    }
}
