//! Matrix-vector products on the CPU: y [m, rows] = x [m, cols] · W^T for weights in every type
//! Cria reads, multi-threaded over rows ([`Pool`]), SIMD through code the compiler vectorizes
//! for the best instruction set found at run time (AVX2 + FMA + F16C on x86-64; the plain build
//! elsewhere, `simd128` on wasm32 when enabled).
//!
//! Every type multiplies f32 activations (what the GPU and transformers compute): Q8_0, Q4_0,
//! Q4_1, Q5_0 and Q5_1 blocks widened in registers, Q4_K/Q6_K sub-blocks decoded with their
//! constants hoisted, the other block types through the reference dequantizer a block at a time
//! ([`decode_block`]). Several tokens at once (prefill) decode each row once for all of them
//! ([`gemm_generic`]). ggml's integer path —
//! activations quantized to 8 bits per 32-value block ([`QuantizedActivations`]), integer dot
//! products — is here too ([`Activations::Int8`]), tested, not used by models yet.
//! Reference: `ops::matvec::reference` (f64), on the activations each path sees (`reference_q8`
//! for the integer path).

use super::pool::Pool;
use super::{CpuMatrix, SharedOut};
use crate::ops::WeightDType;
use crate::quant::ggml::BlockType;

/// Values per activation block (Q8_0's).
const QK: usize = 32;

/// `$f(T, args...)` with the block type `T` a constant in each arm: the `#[inline(always)]`
/// decoders' `match` folds away and each block type gets its own loop (a runtime type inside
/// the loop costs 2-4x).
macro_rules! specialised {
    ($t:expr, $f:ident($($arg:expr),*)) => {
        match $t {
            BlockType::Q8_0 => $f(BlockType::Q8_0, $($arg),*),
            BlockType::Q4_0 => $f(BlockType::Q4_0, $($arg),*),
            BlockType::Q4_1 => $f(BlockType::Q4_1, $($arg),*),
            BlockType::Q5_0 => $f(BlockType::Q5_0, $($arg),*),
            BlockType::Q5_1 => $f(BlockType::Q5_1, $($arg),*),
            BlockType::Q4_K => $f(BlockType::Q4_K, $($arg),*),
            BlockType::Q6_K => $f(BlockType::Q6_K, $($arg),*),
            other => $f(other, $($arg),*),
        }
    };
}

/// Activations quantized as ggml's `quantize_row_q8_0`: per 32 values, d = max|x| / 127 and
/// q = round(x / d); the last block zero-padded.
pub struct QuantizedActivations {
    pub d: Vec<f32>,
    pub q: Vec<i8>,
    pub cols: usize,
}

impl QuantizedActivations {
    pub fn new(x: &[f32]) -> QuantizedActivations {
        let blocks = x.len().div_ceil(QK);
        let (mut d, mut q) = (Vec::with_capacity(blocks), vec![0i8; blocks * QK]);
        for (b, chunk) in x.chunks(QK).enumerate() {
            let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
            for (j, v) in chunk.iter().enumerate() {
                q[b * QK + j] = (v * inv).round() as i8;
            }
            d.push(scale);
        }
        QuantizedActivations { d, q, cols: x.len() }
    }

    /// The values the integer paths compute with.
    pub fn values(&self) -> Vec<f32> {
        (0..self.cols).map(|i| f32::from(self.q[i]) * self.d[i / QK]).collect()
    }
}

/// How Q8_0 and Q4_0 rows meet the activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activations {
    /// f32 activations, each block's values widened: the GPU's and transformers' arithmetic
    /// (the models use this: CPU and GPU logits agree to f32 rounding).
    F32,
    /// Activations quantized to 8 bits per 32-value block and integer dot products, as ggml's
    /// CPU backend does: fewer instructions, logits ~1e-1 further from transformers' on the
    /// K-quant fixtures.
    Int8,
}

/// Whether rows of `dtype` take the integer path under `mode`.
pub fn quantizes_activations(dtype: WeightDType, mode: Activations) -> bool {
    mode == Activations::Int8 && matches!(dtype, WeightDType::Block(BlockType::Q8_0 | BlockType::Q4_0))
}

/// Rows per task: enough work to amortise a task, enough tasks to balance the threads.
fn rows_per_task(rows: usize, threads: usize) -> usize {
    rows.div_ceil(threads * 4).clamp(8, 256)
}

/// `y [m, w.rows] = x [m, w.cols] · W^T` with f32 activations.
pub fn matvec(pool: &Pool, w: &CpuMatrix, x: &[f32], m: usize, y: &mut [f32]) {
    matvec_into(pool, w, x, m, y, w.rows, 0, Activations::F32)
}

/// As [`matvec`], token t's rows written at `y[t * y_stride + y_offset..]` (a matrix stored as
/// several runs of rows writes each run at its offset).
#[allow(clippy::too_many_arguments)]
pub fn matvec_into(pool: &Pool, w: &CpuMatrix, x: &[f32], m: usize, y: &mut [f32], y_stride: usize, y_offset: usize, mode: Activations) {
    assert!(x.len() >= m * w.cols && y_offset + w.rows <= y_stride && y.len() >= m * y_stride, "matvec shapes");
    let acts: Vec<QuantizedActivations> = match quantizes_activations(w.dtype, mode) {
        true => (0..m).map(|t| QuantizedActivations::new(&x[t * w.cols..(t + 1) * w.cols])).collect(),
        false => Vec::new(),
    };
    let per = rows_per_task(w.rows, pool.threads());
    let tasks = w.rows.div_ceil(per);
    let out = SharedOut(y.as_mut_ptr());
    let kernel = Kernel::best();
    if m >= GEMM_TOKENS && acts.is_empty() {
        pool.run(tasks, &|task| kernel.gemm(w, x, m, task * per..((task + 1) * per).min(w.rows), out, y_stride, y_offset));
        return;
    }
    pool.run(tasks, &|task| {
        let rows = task * per..((task + 1) * per).min(w.rows);
        for t in 0..m {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            // SAFETY: each task writes its own rows of each token's output, disjoint.
            let yt = unsafe { std::slice::from_raw_parts_mut(out.get().add(t * y_stride + y_offset + rows.start), rows.len()) };
            kernel.rows(w, xt, acts.get(t), rows.clone(), yt);
        }
    });
}


/// The instruction set the row loops were compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    /// The best the running CPU offers.
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("f16c") {
            return Kernel::Avx2;
        }
        Kernel::Portable
    }

    /// Every kernel this CPU can run (tests compare them all).
    pub fn available() -> Vec<Kernel> {
        #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
        let mut all = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        if Kernel::best() == Kernel::Avx2 {
            all.push(Kernel::Avx2);
        }
        all
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable if cfg!(target_feature = "simd128") => "wasm simd128",
            Kernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2+fma+f16c",
        }
    }

    /// Rows `rows` of every token's output (token t's at `out[t * y_stride + y_offset..]`),
    /// the multi-token way ([`gemm_generic`]).
    #[allow(clippy::too_many_arguments)]
    fn gemm(self, w: &CpuMatrix, x: &[f32], m: usize, rows: std::ops::Range<usize>, out: SharedOut, y_stride: usize, y_offset: usize) {
        match self {
            Kernel::Portable => gemm_generic(w, x, m, rows, out, y_stride, y_offset),
            // SAFETY: only chosen when the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { gemm_avx2(w, x, m, rows, out, y_stride, y_offset) },
        }
    }

    /// y[i] = row(rows.start + i) · x.
    pub fn rows(self, w: &CpuMatrix, x: &[f32], act: Option<&QuantizedActivations>, rows: std::ops::Range<usize>, y: &mut [f32]) {
        match self {
            Kernel::Portable => rows_generic(w, x, act, rows, y),
            // SAFETY: only chosen when the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { rows_avx2(w, x, act, rows, y) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_avx2(w: &CpuMatrix, x: &[f32], m: usize, rows: std::ops::Range<usize>, out: SharedOut, y_stride: usize, y_offset: usize) {
    gemm_generic(w, x, m, rows, out, y_stride, y_offset)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_avx2(w: &CpuMatrix, x: &[f32], act: Option<&QuantizedActivations>, rows: std::ops::Range<usize>, y: &mut [f32]) {
    rows_generic(w, x, act, rows, y)
}

/// The row loops, written so that the compiler vectorizes them for whatever target features the
/// calling function enables (inlined into each).
#[inline(always)]
fn rows_generic(w: &CpuMatrix, x: &[f32], act: Option<&QuantizedActivations>, rows: std::ops::Range<usize>, y: &mut [f32]) {
    for (out, r) in y.iter_mut().zip(rows) {
        let row = w.row(r);
        *out = match w.dtype {
            WeightDType::F32 => dot_f32(bytemuck::cast_slice(row), x),
            WeightDType::F16 => dot_f16(row, x),
            WeightDType::BF16 => dot_bf16(row, x),
            WeightDType::Block(t) => match (t, act) {
                (BlockType::Q8_0, Some(a)) => dot_q8_0(row, a),
                (BlockType::Q4_0, Some(a)) => dot_q4_0(row, a),
                _ => specialised!(t, dot_decoded(row, x)),
            },
        };
    }
}

/// Eight independent sums: the compiler keeps them in one vector register.
#[inline(always)]
pub(crate) fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let (w, x) = (&w[..n], &x[..n]);
    let mut acc = [0f32; 8];
    let (wc, xc) = (w.chunks_exact(8), x.chunks_exact(8));
    let (wr, xr) = (wc.remainder(), xc.remainder());
    for (a, b) in wc.zip(xc) {
        for j in 0..8 {
            acc[j] += a[j] * b[j];
        }
    }
    let mut tail = 0f32;
    for (a, b) in wr.iter().zip(xr) {
        tail += a * b;
    }
    acc.iter().sum::<f32>() + tail
}

/// 16-bit rows widened 64 values at a time into a stack buffer, then the f32 dot product.
#[inline(always)]
fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    let halves: &[u16] = bytemuck::cast_slice(row);
    let mut buf = [0f32; 64];
    let mut acc = 0f32;
    for (h, xc) in halves[..x.len()].chunks(64).zip(x.chunks(64)) {
        for (o, &v) in buf.iter_mut().zip(h) {
            *o = f16_to_f32(v);
        }
        acc += dot_f32(&buf[..h.len()], xc);
    }
    acc
}

/// IEEE half to single, branch-free for finite values so that it vectorizes: the exponent and
/// mantissa moved into place and rebiased by a multiply by 2^112 (which also normalises
/// subnormals); infinities and NaN (exponent 31) selected apart. Exact for every half.
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000); // 2^112
    let special = f32::from_bits(0x7f80_0000 | ((h & 0x3ff) << 13));
    let v = if h & 0x7c00 == 0x7c00 { special } else { magnitude };
    f32::from_bits(v.to_bits() | sign)
}

#[inline(always)]
fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    let halves: &[u16] = bytemuck::cast_slice(row);
    let mut buf = [0f32; 64];
    let mut acc = 0f32;
    for (h, xc) in halves[..x.len()].chunks(64).zip(x.chunks(64)) {
        for (o, &v) in buf.iter_mut().zip(h) {
            *o = f32::from_bits(u32::from(v) << 16);
        }
        acc += dot_f32(&buf[..h.len()], xc);
    }
    acc
}

#[inline(always)]
fn half_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Sum of 32 products of 8-bit values: each product fits 16 bits (|q| <= 127, 4-bit weights
/// <= 8), summed pairwise into 32 bits, the shape of pmaddwd.
#[inline(always)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let (a, b) = (&a[..QK], &b[..QK]);
    let mut s = 0i32;
    for j in 0..QK {
        s += i32::from(i16::from(a[j]) * i16::from(b[j]));
    }
    s
}

/// Q8_0 block (f16 d, 32 i8) · an activation block: an i32 sum, one scale product.
#[inline(always)]
fn dot_q8_0(row: &[u8], a: &QuantizedActivations) -> f32 {
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(34).enumerate() {
        let qs: &[i8] = bytemuck::cast_slice(&blk[2..34]);
        let s = dot_i8(qs, &a.q[b * QK..(b + 1) * QK]);
        acc += s as f32 * (half_at(blk, 0) * a.d[b]);
    }
    acc
}

/// Q4_0 block (f16 d, 16 bytes: value j in the low nibble of byte j, value j + 16 in the high
/// one, both offset by 8).
#[inline(always)]
fn dot_q4_0(row: &[u8], a: &QuantizedActivations) -> f32 {
    let mut acc = 0f32;
    let mut w = [0i8; QK];
    for (b, blk) in row.chunks_exact(18).enumerate() {
        // Unpacked to bytes first: both loops then vectorize (byte shifts, then the same i8
        // dot product as Q8_0).
        for j in 0..16 {
            w[j] = (blk[2 + j] & 0xF) as i8 - 8;
            w[j + 16] = (blk[2 + j] >> 4) as i8 - 8;
        }
        let s = dot_i8(&w, &a.q[b * QK..(b + 1) * QK]);
        acc += s as f32 * (half_at(blk, 0) * a.d[b]);
    }
    acc
}

/// Values per sub-block of the block types with their own decoder: their dot products are
/// summed 32 values at a time (the others a block at a time).
fn sub_values(t: BlockType) -> usize {
    match t {
        BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q5_0 | BlockType::Q5_1 | BlockType::Q4_K | BlockType::Q6_K => QK,
        _ => t.block_values(),
    }
}

/// One block of `t` decoded to f32 values (`out`: [`BlockType::block_values`] long): Q8_0;
/// Q4_0, Q4_1, Q5_0 and Q5_1 (f16 d, Q4_1/Q5_1 also f16 m; Q5_* four bytes of fifth bits; 16
/// bytes of nibbles, value j the low nibble of byte j, value j + 16 its high one) widened in
/// registers; Q4_K (f16 d and dmin, twelve bytes of 6-bit scales and mins, 256 4-bit quants)
/// and Q6_K (128 bytes of low nibbles, 64 of high bit pairs, 16 i8 scales, f16 d) a 32-value
/// sub-block at a time with its constants hoisted; any other type by the reference dequantizer.
#[inline(always)]
fn decode_block(t: BlockType, blk: &[u8], out: &mut [f32]) {
    match t {
        BlockType::Q8_0 => {
            let d = half_at(blk, 0);
            for (o, &q) in out[..QK].iter_mut().zip(&blk[2..34]) {
                *o = d * f32::from(q as i8);
            }
        }
        BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q5_0 | BlockType::Q5_1 => {
            let (fifth, offset, bias) = match t {
                BlockType::Q4_0 => (false, false, 8.0),
                BlockType::Q4_1 => (false, true, 0.0),
                BlockType::Q5_0 => (true, false, 16.0),
                _ => (true, true, 0.0),
            };
            let d = half_at(blk, 0);
            let (m, rest) = if offset { (half_at(blk, 2), &blk[4..]) } else { (0.0, &blk[2..]) };
            let (qh, qs) = if fifth { (u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]), &rest[4..20]) } else { (0, &rest[..16]) };
            for j in 0..16 {
                let (lo, hi) = (u32::from(qs[j] & 0xF) | (((qh >> j) & 1) << 4), u32::from(qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
                out[j] = d * (lo as f32 - bias) + m;
                out[j + 16] = d * (hi as f32 - bias) + m;
            }
        }
        BlockType::Q4_K => {
            let (d, dmin, scales, qs) = (half_at(blk, 0), half_at(blk, 2), &blk[4..16], &blk[16..144]);
            for sb in 0..8 {
                let (sc, m) = crate::quant::ggml::scale_min_k4(sb, scales);
                let (ds, dm) = (d * f32::from(sc), dmin * f32::from(m));
                let (q, shift) = (&qs[(sb / 2) * QK..(sb / 2 + 1) * QK], 4 * (sb % 2));
                for (o, &q) in out[sb * QK..(sb + 1) * QK].iter_mut().zip(q) {
                    *o = ds * f32::from((q >> shift) & 0xF) - dm;
                }
            }
        }
        BlockType::Q6_K => {
            let (ql, qh, scales, d) = (&blk[..128], &blk[128..192], &blk[192..208], half_at(blk, 208));
            for h in 0..2 {
                for k in 0..4 {
                    let low = &ql[h * 64 + (k % 2) * QK..][..QK];
                    let high = &qh[h * 32..][..QK];
                    let (shift_low, shift_high) = (4 * (k / 2), 2 * k);
                    let s0 = d * f32::from(scales[h * 8 + k * 2] as i8);
                    let s1 = d * f32::from(scales[h * 8 + k * 2 + 1] as i8);
                    let o = &mut out[h * 128 + k * QK..][..QK];
                    for l in 0..QK {
                        let q = ((low[l] >> shift_low) & 0xF) | (((high[l] >> shift_high) & 3) << 4);
                        o[l] = if l < 16 { s0 } else { s1 } * f32::from(q as i8 - 32);
                    }
                }
            }
        }
        _ => t.dequantize_block(blk, out),
    }
}

/// A row of blocks with f32 activations: each block decoded ([`decode_block`]), then f32 dot
/// products over its sub-blocks.
#[inline(always)]
fn dot_decoded(t: BlockType, row: &[u8], x: &[f32]) -> f32 {
    let (values, bytes, sub) = (t.block_values(), t.block_bytes(), sub_values(t));
    let mut buf = [0f32; 256];
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(bytes).enumerate() {
        decode_block(t, blk, &mut buf[..values]);
        for s in (0..values).step_by(sub) {
            let start = b * values + s;
            if start >= x.len() {
                break;
            }
            let n = sub.min(x.len() - start);
            acc += dot_f32(&buf[s..s + n], &x[start..start + n]);
        }
    }
    acc
}

/// Row `r` of `w` as f32 values into `out` (`w.cols` long, or the whole blocks' values).
#[inline(always)]
fn decode_row(w: &CpuMatrix, r: usize, out: &mut [f32]) {
    let row = w.row(r);
    match w.dtype {
        WeightDType::F32 => out[..w.cols].copy_from_slice(&bytemuck::cast_slice::<u8, f32>(row)[..w.cols]),
        WeightDType::F16 => out.iter_mut().zip(bytemuck::cast_slice::<u8, u16>(row)).for_each(|(o, &h)| *o = f16_to_f32(h)),
        WeightDType::BF16 => out.iter_mut().zip(bytemuck::cast_slice::<u8, u16>(row)).for_each(|(o, &h)| *o = f32::from_bits(u32::from(h) << 16)),
        WeightDType::Block(t) => specialised!(t, decode_blocks(row, out)),
    }
}

/// A row of blocks of `t` decoded into `out` (its first `out.len()` values).
#[inline(always)]
fn decode_blocks(t: BlockType, row: &[u8], out: &mut [f32]) {
    let values = t.block_values();
    for (blk, o) in row.chunks_exact(t.block_bytes()).zip(out.chunks_mut(values)) {
        if o.len() == values {
            decode_block(t, blk, o);
        } else {
            let mut buf = [0f32; 256];
            decode_block(t, blk, &mut buf[..values]);
            o.copy_from_slice(&buf[..o.len()]);
        }
    }
}

/// Rows decoded per group of the multi-token path, and tokens per pass over them: 4 x 2 dot
/// products share each load (8 vector accumulators).
const GEMM_ROWS: usize = 4;
const GEMM_TOKENS: usize = 2;

/// The multi-token product (prefill): each group of [`GEMM_ROWS`] rows is decoded to f32 once,
/// then multiplied by every token, [`GEMM_TOKENS`] at a time: the decoding no longer repeats
/// per token, and each loaded value feeds several products.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gemm_generic(w: &CpuMatrix, x: &[f32], m: usize, rows: std::ops::Range<usize>, out: SharedOut, y_stride: usize, y_offset: usize) {
    let cols = w.cols;
    let mut decoded = vec![0f32; GEMM_ROWS * cols];
    for r0 in rows.clone().step_by(GEMM_ROWS) {
        let nr = GEMM_ROWS.min(rows.end - r0);
        for (i, d) in decoded.chunks_exact_mut(cols).enumerate() {
            if i < nr {
                decode_row(w, r0 + i, d);
            } else {
                d.fill(0.0);
            }
        }
        for t0 in (0..m).step_by(GEMM_TOKENS) {
            let nt = GEMM_TOKENS.min(m - t0);
            let xs: [&[f32]; GEMM_TOKENS] = std::array::from_fn(|j| &x[(t0 + j.min(nt - 1)) * cols..][..cols]);
            let sums = dot_4x2(&decoded, xs, cols);
            for (j, row_sums) in sums.iter().enumerate().take(nt) {
                // SAFETY: each task writes its own rows of each token's output, disjoint.
                let y = unsafe { std::slice::from_raw_parts_mut(out.get().add((t0 + j) * y_stride + y_offset + r0), nr) };
                y.copy_from_slice(&row_sums[..nr]);
            }
        }
    }
}

/// sums[t][r] = decoded row r · xs[t], eight lanes per accumulator as [`dot_f32`] sums. Written
/// on fixed-size arrays (no bounds checks in the loop) so that each lane loop becomes one vector
/// operation and the eight accumulators stay in registers.
#[inline(always)]
fn dot_4x2(decoded: &[f32], xs: [&[f32]; GEMM_TOKENS], cols: usize) -> [[f32; GEMM_ROWS]; GEMM_TOKENS] {
    let w: [&[f32]; GEMM_ROWS] = std::array::from_fn(|i| &decoded[i * cols..(i + 1) * cols]);
    let whole = cols / 8 * 8;
    let (mut a00, mut a01, mut a02, mut a03) = ([0f32; 8], [0f32; 8], [0f32; 8], [0f32; 8]);
    let (mut a10, mut a11, mut a12, mut a13) = ([0f32; 8], [0f32; 8], [0f32; 8], [0f32; 8]);
    let lanes = |v: &[f32]| -> [f32; 8] { v.try_into().expect("8 lanes") };
    for c in (0..whole).step_by(8) {
        let (x0, x1) = (lanes(&xs[0][c..c + 8]), lanes(&xs[1][c..c + 8]));
        let (w0, w1, w2, w3) = (lanes(&w[0][c..c + 8]), lanes(&w[1][c..c + 8]), lanes(&w[2][c..c + 8]), lanes(&w[3][c..c + 8]));
        for j in 0..8 {
            a00[j] += w0[j] * x0[j];
            a01[j] += w1[j] * x0[j];
            a02[j] += w2[j] * x0[j];
            a03[j] += w3[j] * x0[j];
            a10[j] += w0[j] * x1[j];
            a11[j] += w1[j] * x1[j];
            a12[j] += w2[j] * x1[j];
            a13[j] += w3[j] * x1[j];
        }
    }
    let acc = [[a00, a01, a02, a03], [a10, a11, a12, a13]];
    std::array::from_fn(|t| {
        std::array::from_fn(|i| {
            let tail: f32 = (whole..cols).map(|c| w[i][c] * xs[t][c]).sum();
            acc[t][i].iter().sum::<f32>() + tail
        })
    })
}

/// f64 reference of the integer paths: the row's values · the activations as quantized.
pub fn reference_q8(w_values: &[f32], x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let xq = QuantizedActivations::new(x).values();
    crate::ops::matvec::reference(&xq, w_values, 1, rows, cols)
}

/// Every weight type, at shapes that cut 32- and 256-value blocks and the 64-value widening
/// chunks, rows not a multiple of the task size, several tokens; every kernel this CPU runs
/// (natively; in a browser, the wasm32 SIMD build), both activation modes, alone and through a
/// pool, against the f64 reference on the values each path computes with.
pub fn check(seed: u64) -> Result<(), crate::ops::check::Mismatch> {
    use crate::ops::check::{compare, tolerance, DType, Rng};
    let mut rng = Rng::new(seed);
    let pool = Pool::new(3);
    for &(m, rows, cols) in &[(1usize, 1usize, 1usize), (1, 3, 17), (2, 37, 70), (1, 255, 257), (3, 100, 512), (1, 9, 96), (2, 513, 160)] {
        for dtype in WeightDType::ALL {
            let (w, values) = CpuMatrix::random(&mut rng, dtype, rows, cols);
            let x = rng.normals(m * cols, 1.0 / (cols as f32).sqrt());
            for (kernel, mode) in Kernel::available().into_iter().flat_map(|k| [(k, Activations::F32), (k, Activations::Int8)]) {
                let quantized = quantizes_activations(dtype, mode);
                let mut y = vec![f32::NAN; m * rows];
                for t in 0..m {
                    let act = quantized.then(|| QuantizedActivations::new(&x[t * cols..(t + 1) * cols]));
                    kernel.rows(&w, &x[t * cols..(t + 1) * cols], act.as_ref(), 0..rows, &mut y[t * rows..(t + 1) * rows]);
                }
                let mut pooled = vec![f32::NAN; m * rows];
                matvec_into(&pool, &w, &x, m, &mut pooled, rows, 0, mode);
                let want: Vec<f32> = (0..m)
                    .flat_map(|t| {
                        let xt = &x[t * cols..(t + 1) * cols];
                        match quantized {
                            true => reference_q8(&values, xt, rows, cols),
                            false => crate::ops::matvec::reference(xt, &values, 1, rows, cols),
                        }
                    })
                    .collect();
                let what = format!("cpu matvec {} {} {mode:?} {m}x{rows}x{cols}", kernel.name(), dtype.name());
                compare(&what, seed, &y, &want, tolerance(DType::F32))?;
                compare(&format!("{what} (pool)"), seed, &pooled, &want, tolerance(DType::F32))?;
            }
        }
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::ops::check::{compare, Rng, Tolerance};

    #[test]
    fn every_weight_type_matches_the_reference() {
        let seed = crate::ops::check::seed();
        check(seed).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The widening every f16 path uses, against the `half` crate on all 65,536 halves.
    #[test]
    fn f16_widening_is_exact_for_every_half() {
        for bits in 0..=u16::MAX {
            let (got, want) = (f16_to_f32(bits), half::f16::from_bits(bits).to_f32());
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{bits:#06x}: {got} vs {want}");
        }
    }

    /// What quantizing the activations costs the integer paths, against f32 activations: within
    /// a few parts in a thousand of the outputs' scale, as in ggml.
    #[test]
    fn quantized_activations_stay_close_to_f32() {
        let mut rng = Rng::new(7);
        let (rows, cols) = (64, 1024);
        for dtype in [WeightDType::Q8_0, WeightDType::Q4_0] {
            let (w, values) = CpuMatrix::random(&mut rng, dtype, rows, cols);
            let x = rng.normals(cols, 1.0 / (cols as f32).sqrt());
            let mut y = vec![0f32; rows];
            matvec_into(&Pool::new(1), &w, &x, 1, &mut y, rows, 0, Activations::Int8);
            let exact = crate::ops::matvec::reference(&x, &values, 1, rows, cols);
            let scale = exact.iter().map(|v| v.abs()).fold(0f32, f32::max);
            compare(dtype.name(), 7, &y, &exact, Tolerance { abs: 1e-2 * scale, rel: 0.0 }).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
