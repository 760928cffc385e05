//! Block-quantized weights with GGUF semantics: every ggml block type Cria reads is described
//! in [`ggml`] (layout, CPU dequantization checked against the `gguf` package). This module
//! quantizes rows as ggml's `quantize_row_*_ref` do (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 here; Q4_K,
//! Q5_K, Q6_K in [`kquants`]) and lays rows out for the GPU.
//!
//! - Q8_0: `q = round(x / d)` in -127..=127 with `d = max|x| / 127`; value = `q * d`.
//!   ggml block: `d: f16, qs: [i8; 32]` (34 bytes).
//! - Q4_0: `d = m / -8` where `m` is the value of largest magnitude (sign kept);
//!   `q = min(15, trunc(x / d + 8.5))` in 0..=15; value = `(q - 8) * d`.
//!   ggml block: `d: f16, qs: [u8; 16]` with value j in the low nibble of byte j and value
//!   j + 16 in its high nibble (18 bytes).
//!
//! On the GPU a row keeps ggml's bytes, split for 4-byte loads ([`repack_row`]): first every
//! block's body verbatim (the block without its 16-bit header fields: quants, packed sub-block
//! scales; always whole words), then every block's header fields (f16 scales, IQ4_XS's high
//! scale bits) two to a word, block 0 first, then zero words up to a multiple of 4 words. A row
//! takes the file's bytes plus at most 14 bytes of padding, whatever the type. Rows whose length
//! is not a multiple of the block are padded with zeros to whole blocks (only Cria's own
//! quantizer makes such rows; GGUF rows are whole blocks).

pub mod ggml;
pub mod kquants;
pub mod mix;

use crate::error::{Error, Result};
use crate::ops::WeightDType;
use ggml::BlockType;
use half::f16;

/// Values per block of the 32-value types.
pub const QK: usize = 32;

/// Bytes of one ggml block of `dtype` (None for the unquantized types).
pub fn block_bytes(dtype: WeightDType) -> Option<usize> {
    dtype.block().map(BlockType::block_bytes)
}

/// Blocks per row of `cols` values.
pub fn blocks(t: BlockType, cols: usize) -> usize {
    cols.div_ceil(t.block_values())
}

/// Bytes of one row of `cols` values in ggml's block layout.
pub fn row_bytes(dtype: WeightDType, cols: usize) -> Result<usize> {
    let t = dtype.block().ok_or_else(|| Error::Unsupported { what: format!("{} as a block format", dtype.name()), hint: "only the ggml block types are block-quantized".into() })?;
    Ok(blocks(t, cols) * t.block_bytes())
}

/// Whether Cria can quantize f32 rows to `dtype`: the float types, and the block types with a
/// reference quantizer here (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K). Q2_K, Q3_K and the
/// IQ4 types are read from files as they are.
pub fn can_quantize(dtype: WeightDType) -> bool {
    match dtype.block() {
        None => true,
        Some(t) => matches!(t, BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q5_0 | BlockType::Q5_1 | BlockType::Q4_K | BlockType::Q5_K | BlockType::Q6_K),
    }
}

/// The typed error for converting weights to a type Cria cannot quantize to.
pub fn cannot_quantize(dtype: WeightDType) -> Error {
    Error::Unsupported {
        what: format!("quantizing weights to {}", dtype.name()),
        hint: "Cria quantizes to f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k and q6_k; files already in other ggml types load as they are".into(),
    }
}

/// Quantizes one row into ggml blocks, appended to `out` (the row is zero-padded to whole
/// blocks), as llama.cpp's `quantize_row_*_ref` do. Types without a quantizer
/// ([`can_quantize`]) are a typed error.
pub fn quantize_row(dtype: WeightDType, row: &[f32], out: &mut Vec<u8>) -> Result<()> {
    let t = match dtype.block() {
        Some(t) if can_quantize(dtype) => t,
        _ => return Err(cannot_quantize(dtype)),
    };
    let mut x = vec![0f32; t.block_values()];
    for block in row.chunks(t.block_values()) {
        x.fill(0.0);
        x[..block.len()].copy_from_slice(block);
        match t {
            BlockType::Q4_K => kquants::quantize_q4_k(&x, out),
            BlockType::Q5_K => kquants::quantize_q5_k(&x, out),
            BlockType::Q6_K => kquants::quantize_q6_k(&x, out),
            _ => quantize_block32(t, &x, out),
        }
    }
    Ok(())
}

/// One block of a 32-value type: ggml's `quantize_row_{q8_0,q4_0,q4_1,q5_0,q5_1}_ref`.
fn quantize_block32(t: BlockType, x: &[f32], out: &mut Vec<u8>) {
    let half = |v: f32| f16::from_f32(v).to_le_bytes();
    // The value of largest magnitude, sign kept; and the range.
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let (lo, hi) = x.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (if v < lo { v } else { lo }, if v > hi { v } else { hi }));
    let inv = |d: f32| if d != 0.0 { 1.0 / d } else { 0.0 };
    // Nibbles: value j low in byte j, value j + 16 high; the fifth bits in a u32.
    let pack = |q: &dyn Fn(f32) -> u8, out: &mut Vec<u8>, fifth: bool| {
        let qs: Vec<u8> = x.iter().map(|&v| q(v)).collect();
        if fifth {
            let qh = qs.iter().enumerate().fold(0u32, |h, (j, &v)| h | (((v as u32 >> 4) & 1) << j));
            out.extend(qh.to_le_bytes());
        }
        out.extend((0..QK / 2).map(|j| (qs[j] & 0xF) | ((qs[j + QK / 2] & 0xF) << 4)));
    };
    match t {
        BlockType::Q8_0 => {
            let d = amax / 127.0;
            out.extend(half(d));
            out.extend(x.iter().map(|v| (v * inv(d)).round() as i8 as u8));
        }
        BlockType::Q4_0 | BlockType::Q5_0 => {
            let (levels, offset, top) = if t == BlockType::Q4_0 { (-8.0, 8.5, 15) } else { (-16.0, 16.5, 31) };
            let d = max / levels;
            let id = inv(d);
            out.extend(half(d));
            pack(&|v| ((v * id + offset) as i8).min(top) as u8, out, t == BlockType::Q5_0);
        }
        _ => {
            // Q4_1, Q5_1: d = range / levels, m = the minimum.
            let top = if t == BlockType::Q4_1 { 15 } else { 31 };
            let d = (hi - lo) / top as f32;
            let id = inv(d);
            out.extend(half(d));
            out.extend(half(lo));
            pack(&|v| (((v - lo) * id + 0.5) as i8).min(top) as u8, out, t == BlockType::Q5_1);
        }
    }
}

/// The ggml block format of a block-quantized weight type.
pub fn block_type(dtype: WeightDType) -> Option<BlockType> {
    dtype.block()
}

/// Dequantizes one row of ggml blocks to `cols` f32 values (CPU reference of the kernels).
pub fn dequantize_row(dtype: WeightDType, bytes: &[u8], cols: usize) -> Vec<f32> {
    let Some(t) = dtype.block() else { return Vec::new() };
    let mut out = ggml::dequantize(t, bytes);
    out.truncate(cols);
    out
}

/// What a kernel computes with for weights stored as `dtype`: f16 rounding, or quantize then
/// dequantize (CPU reference input). Types Cria cannot quantize to are a typed error.
pub fn round_trip(dtype: WeightDType, data: &[f32], cols: usize) -> Result<Vec<f32>> {
    match dtype {
        WeightDType::F32 => return Ok(data.to_vec()),
        WeightDType::F16 => return Ok(data.iter().map(|&v| f16::from_f32(v).to_f32()).collect()),
        WeightDType::BF16 => return Ok(data.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect()),
        WeightDType::Block(_) => {}
    }
    let mut out = Vec::with_capacity(data.len());
    let mut bytes = Vec::new();
    for row in data.chunks(cols) {
        bytes.clear();
        quantize_row(dtype, row, &mut bytes)?;
        out.extend(dequantize_row(dtype, &bytes, cols));
    }
    Ok(out)
}

/// Checks that every f16 scale of rows of ggml blocks (`row_bytes` each, the first being row
/// `first_row` of its tensor) is finite: a NaN or infinite scale would make every value of its
/// block NaN. The error names the first bad block.
pub fn check_scales(t: BlockType, bytes: &[u8], row_bytes: usize, first_row: usize) -> std::result::Result<(), String> {
    for (b, block) in bytes.chunks_exact(t.block_bytes()).enumerate() {
        for i in 0..t.header().scales {
            let d = f16::from_bits(t.header_field(block, i));
            if !d.is_finite() {
                let per_row = (row_bytes / t.block_bytes()).max(1);
                return Err(format!("row {} block {}: f16 scale {i} of a {} block is {d}", first_row + b / per_row, b % per_row, t.name()));
            }
        }
    }
    Ok(())
}

/// GPU words of one row of `cols` values (bodies, header fields, padding to 4 words).
pub(crate) fn row_words(t: BlockType, cols: usize) -> usize {
    let n = blocks(t, cols);
    (n * t.body_words() + (n * t.header().fields).div_ceil(2)).next_multiple_of(4)
}

/// Repacks one row of ggml blocks into the GPU layout (see the module docs), appended to `out`
/// (without the padding to 4 words).
pub(crate) fn repack_row(t: BlockType, bytes: &[u8], out: &mut Vec<u32>) {
    let fields = t.header().fields;
    let mut header = Vec::with_capacity(bytes.len() / t.block_bytes() * fields);
    for block in bytes.chunks_exact(t.block_bytes()) {
        header.extend((0..fields).map(|i| t.header_field(block, i) as u32));
        out.extend(t.body(block).chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])));
    }
    out.extend(header.chunks(2).map(|p| p[0] | (p.get(1).copied().unwrap_or(0) << 16)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Values ggml itself produces for a known block (computed by hand from the reference C).
    #[test]
    fn q8_0_matches_ggml_semantics() {
        let row: Vec<f32> = (0..QK).map(|i| i as f32 - 12.7).collect();
        let mut bytes = Vec::new();
        quantize_row(WeightDType::Q8_0, &row, &mut bytes).unwrap();
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
        quantize_row(WeightDType::Q4_0, &row, &mut bytes).unwrap();
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
                let back = round_trip(dtype, &data, cols).unwrap();
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

    /// The GPU layout keeps every byte of every block: bodies and header fields put back
    /// together give the file's blocks again, for every type, at a block count that leaves an
    /// odd header field.
    #[test]
    fn repack_is_lossless_for_every_block_type() {
        let mut rng = Rng::new(3);
        for t in BlockType::ALL {
            let n = 3;
            let bytes: Vec<u8> = (0..n * t.block_bytes()).map(|_| rng.below(256) as u8).collect();
            let mut words = Vec::new();
            repack_row(t, &bytes, &mut words);
            let (bw, h) = (t.body_words(), t.header());
            assert_eq!(words.len(), n * bw + (n * h.fields).div_ceil(2), "{t:?}");
            let padded = row_words(t, n * t.block_values());
            assert!(padded >= words.len() && padded.is_multiple_of(4));
            let halves: Vec<u8> = words[n * bw..].iter().flat_map(|w| w.to_le_bytes()).collect();
            for b in 0..n {
                let body: Vec<u8> = words[b * bw..(b + 1) * bw].iter().flat_map(|w| w.to_le_bytes()).collect();
                let header = &halves[2 * b * h.fields..2 * (b + 1) * h.fields];
                let block = if h.at == 0 { [header, &body].concat() } else { [&body[..], header].concat() };
                assert_eq!(block, &bytes[b * t.block_bytes()..(b + 1) * t.block_bytes()], "{t:?} block {b}");
            }
        }
    }

    #[test]
    fn types_without_a_quantizer_are_a_typed_error() {
        for t in BlockType::ALL {
            let d = WeightDType::Block(t);
            let r = quantize_row(d, &[1.0; 64], &mut Vec::new());
            assert_eq!(r.is_ok(), can_quantize(d), "{t:?}");
            if let Err(e) = r {
                assert!(matches!(e, Error::Unsupported { .. }) && e.to_string().contains(t.name()), "{e}");
            }
        }
    }
}
