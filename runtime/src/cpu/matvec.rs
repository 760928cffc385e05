//! Matrix-vector products on the CPU: y [m, rows] = x [m, cols] · W^T for weights in every type
//! Cria reads, multi-threaded over rows ([`Pool`]), SIMD for the best instruction set found at
//! run time (AVX2 + FMA + F16C on x86-64, with AVX-512 VNNI's byte dot product where present;
//! the plain build elsewhere, `simd128` on wasm32 when enabled): loops the compiler vectorizes,
//! and intrinsics where it does not find the instructions (F16C widening, byte products).
//!
//! Every ggml block type is integers times a scale per 16 or 32 values, some plus an offset:
//! one decoder per type ([`decode_block_int`]) serves every path. Products with such rows
//! quantize the activations to 8 bits per 32 values and sum integer products, as ggml's CPU
//! backend does ([`Activations::Int8`]): a single token (decode) row by row (Q4_0 and Q4_K
//! eight rows at a time, stored interleaved at load on x86-64: [`interleave_rows`]), several
//! (prefill) as an integer GEMM that decodes each row once for all of them
//! ([`gemm_int_generic`]; on x86-64 eight rows interleaved, `avx2::gemm_int`). f32/f16/bf16
//! rows (and the exact f32 mode) meet f32 activations; several tokens at once decode each row
//! to f32 once ([`gemm_generic`]; on x86-64 sixteen rows interleaved, `avx2::gemm_f32`).
//! Reference: `ops::matvec::reference` (f64), on the activations each path sees
//! (`reference_q8` for the integer paths).

use super::pool::Pool;
use super::{CpuMatrix, SharedOut};
use crate::ops::WeightDType;
use crate::quant::ggml::{BlockType, KVALUES_IQ4NL};

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
            BlockType::Q2_K => $f(BlockType::Q2_K, $($arg),*),
            BlockType::Q3_K => $f(BlockType::Q3_K, $($arg),*),
            BlockType::Q4_K => $f(BlockType::Q4_K, $($arg),*),
            BlockType::Q5_K => $f(BlockType::Q5_K, $($arg),*),
            BlockType::Q6_K => $f(BlockType::Q6_K, $($arg),*),
            BlockType::IQ4_NL => $f(BlockType::IQ4_NL, $($arg),*),
            BlockType::IQ4_XS => $f(BlockType::IQ4_XS, $($arg),*),
        }
    };
}

/// Activations quantized as ggml's `quantize_row_q8_0`: per 32 values, d = max|x| / 127 and
/// q = round(x / d); zero-padded to whole 256-value blocks, so that a row of any block type
/// (its last block padded) meets quantized values everywhere.
pub struct QuantizedActivations {
    pub d: Vec<f32>,
    pub q: Vec<i8>,
    /// Per 16 values, the sum of the values as quantized (d · Σq): the blocks with a per-group
    /// offset (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) multiply it by the offset.
    pub sums: Vec<f32>,
    /// The same per 32 values.
    pub sums32: Vec<f32>,
    pub cols: usize,
}

impl QuantizedActivations {
    pub fn new(x: &[f32]) -> QuantizedActivations {
        let padded = x.len().div_ceil(256) * 256;
        let (mut d, mut q, mut sums) = (vec![0f32; padded / QK], vec![0i8; padded], vec![0f32; padded / 16]);
        for (b, chunk) in x.chunks(QK).enumerate() {
            let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale != 0.0 { 1.0 / scale } else { 0.0 };
            // Rounded to nearest, ties to even (as ggml's SIMD quantizers round), by adding and
            // taking back 1.5 * 2^23: exact for |v| <= 127, and it vectorizes everywhere.
            const ROUND: f32 = 12_582_912.0;
            for (j, v) in chunk.iter().enumerate() {
                q[b * QK + j] = ((v * inv + ROUND) - ROUND) as i8;
            }
            d[b] = scale;
            for g in 0..2 {
                let s: i32 = q[b * QK + 16 * g..][..16].iter().map(|&v| i32::from(v)).sum();
                sums[2 * b + g] = scale * s as f32;
            }
        }
        let sums32 = sums.chunks_exact(2).map(|p| p[0] + p[1]).collect();
        QuantizedActivations { d, q, sums, sums32, cols: x.len() }
    }

    /// The values the integer paths compute with.
    pub fn values(&self) -> Vec<f32> {
        (0..self.cols).map(|i| f32::from(self.q[i]) * self.d[i / QK]).collect()
    }
}

/// Several tokens' activations quantized ([`QuantizedActivations`]), once per product, as
/// `kernel`'s multi-token integer path reads them.
pub struct QuantizedTokens {
    pub tokens: Vec<QuantizedActivations>,
    /// The x86-64 integer GEMM's layout: its tiles of tokens, interleaved.
    #[cfg(target_arch = "x86_64")]
    tiles: Vec<avx2::TokenTile>,
}

impl QuantizedTokens {
    /// Tokens `x [m, cols]`, quantized across the pool's threads.
    pub fn new(pool: &Pool, x: &[f32], m: usize, cols: usize, kernel: Kernel) -> QuantizedTokens {
        let cells: Vec<std::sync::OnceLock<QuantizedActivations>> = (0..m).map(|_| std::sync::OnceLock::new()).collect();
        pool.run(m, &|t| {
            let _ = cells[t].set(QuantizedActivations::new(&x[t * cols..(t + 1) * cols]));
        });
        let tokens: Vec<QuantizedActivations> = cells.into_iter().map(|c| c.into_inner().expect("every token quantized")).collect();
        #[cfg(target_arch = "x86_64")]
        let tiles = match kernel {
            Kernel::Portable => Vec::new(),
            Kernel::Avx2 => avx2::TokenTile::all(&tokens, false),
            Kernel::Avx512Vnni => avx2::TokenTile::all(&tokens, true),
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = kernel;
        QuantizedTokens {
            tokens,
            #[cfg(target_arch = "x86_64")]
            tiles,
        }
    }
}

/// How rows of ggml blocks meet the activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activations {
    /// f32 activations, each block's values widened: the GPU's and transformers' arithmetic.
    F32,
    /// Activations quantized to 8 bits per 32-value block and integer dot products, as ggml's
    /// CPU backend does: a quarter of the bytes and far fewer instructions per value. ggml
    /// quantizes the K types' activations per 256 values (`q8_K`); 32 here, so the rounding is
    /// no coarser than llama.cpp's. A single token (decode) takes the row loops; several
    /// (prefill) the integer GEMM, each row decoded to integers once for all of them.
    Int8,
}

/// Whether a product with rows of `dtype` takes the integer path under `mode`: every block type
/// does, for any number of tokens.
pub fn quantizes_activations(dtype: WeightDType, mode: Activations) -> bool {
    mode == Activations::Int8 && dtype.block().is_some()
}

/// Rows per task: enough work to amortise a task, enough tasks to balance the threads; whole
/// groups of the integer GEMM's [`GEMM_INT_ROWS`].
fn rows_per_task(rows: usize, threads: usize) -> usize {
    rows.div_ceil(threads * 4).clamp(8, 256).next_multiple_of(GEMM_INT_ROWS)
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
    let per = rows_per_task(w.rows, pool.threads());
    let tasks = w.rows.div_ceil(per);
    let out = SharedOut(y.as_mut_ptr());
    let kernel = Kernel::best();
    let acts = quantizes_activations(w.dtype, mode).then(|| QuantizedTokens::new(pool, x, m, w.cols, kernel));
    let acts = acts.as_ref();
    if m >= GEMM_TOKENS {
        pool.run(tasks, &|task| kernel.gemm(w, x, acts, m, task * per..((task + 1) * per).min(w.rows), out, y_stride, y_offset));
        return;
    }
    pool.run(tasks, &|task| {
        let rows = task * per..((task + 1) * per).min(w.rows);
        for t in 0..m {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            // SAFETY: each task writes its own rows of each token's output, disjoint.
            let yt = unsafe { std::slice::from_raw_parts_mut(out.get().add(t * y_stride + y_offset + rows.start), rows.len()) };
            kernel.rows(w, xt, acts.map(|a| &a.tokens[t]), rows.clone(), yt);
        }
    });
}


/// The instruction set the row loops were compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 with AVX-512's byte dot product (VNNI `vpdpbusd`, on 256-bit registers): one
    /// instruction where AVX2 takes two for the integer path.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
    /// NEON (every aarch64 CPU) with the Armv8.2 byte dot product (`sdot`, FEAT_DotProd) for
    /// the integer row loops.
    #[cfg(target_arch = "aarch64")]
    NeonDotprod,
}

impl Kernel {
    /// The kernel the CPU device runs: the best the running CPU offers, or the portable one
    /// when `CRIA_CPU_KERNEL=portable` (the arithmetic of the wasm32 build, to compare with a
    /// browser's results, or to rule out a SIMD path).
    pub fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| match std::env::var("CRIA_CPU_KERNEL").as_deref() {
            Ok("portable") => Kernel::Portable,
            _ => Kernel::detected(),
        })
    }

    /// The best the running CPU offers.
    fn detected() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") && has!("f16c") {
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni") {
                    return Kernel::Avx512Vnni;
                }
                return Kernel::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            return Kernel::NeonDotprod;
        }
        Kernel::Portable
    }

    /// Every kernel this CPU can run (tests compare them all).
    pub fn available() -> Vec<Kernel> {
        #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(unused_mut))]
        let mut all = vec![Kernel::Portable];
        #[cfg(target_arch = "aarch64")]
        if Kernel::detected() == Kernel::NeonDotprod {
            all.push(Kernel::NeonDotprod);
        }
        #[cfg(target_arch = "x86_64")]
        {
            if Kernel::detected() != Kernel::Portable {
                all.push(Kernel::Avx2);
            }
            if Kernel::detected() == Kernel::Avx512Vnni {
                all.push(Kernel::Avx512Vnni);
            }
        }
        all
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable if cfg!(target_feature = "simd128") => "wasm simd128",
            Kernel::Portable if cfg!(target_arch = "aarch64") => "neon",
            Kernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2+fma+f16c",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => "avx2+fma+f16c+avx512vnni",
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDotprod => "neon+dotprod",
        }
    }

    /// Rows `rows` of every token's output (token t's at `out[t * y_stride + y_offset..]`),
    /// the multi-token way: with quantized activations `acts` the integer GEMM
    /// ([`gemm_int_generic`], or on x86-64 eight rows interleaved), else the f32 one
    /// ([`gemm_generic`]).
    #[allow(clippy::too_many_arguments)]
    fn gemm(self, w: &CpuMatrix, x: &[f32], acts: Option<&QuantizedTokens>, m: usize, rows: std::ops::Range<usize>, out: SharedOut, y_stride: usize, y_offset: usize) {
        let out = Out { ptr: out, stride: y_stride, offset: y_offset };
        match (self, acts) {
            (Kernel::Portable, None) => gemm_generic(w, x, m, rows, out),
            (Kernel::Portable, Some(acts)) => gemm_int_generic(w, &acts.tokens, rows, out),
            #[cfg(target_arch = "aarch64")]
            (Kernel::NeonDotprod, None) => gemm_generic(w, x, m, rows, out),
            #[cfg(target_arch = "aarch64")]
            (Kernel::NeonDotprod, Some(acts)) => gemm_int_generic(w, &acts.tokens, rows, out),
            // SAFETY: only chosen when the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2, None) => unsafe { gemm_avx2(w, x, m, rows, out) },
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx512Vnni, None) => unsafe { gemm_avx512(w, x, m, rows, out) },
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2, Some(acts)) => unsafe { gemm_int_avx2(w, &acts.tiles, rows, out) },
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx512Vnni, Some(acts)) => unsafe { gemm_int_avx512_vnni(w, &acts.tiles, rows, out) },
        }
    }

    /// y[i] = row(rows.start + i) · x.
    pub fn rows(self, w: &CpuMatrix, x: &[f32], act: Option<&QuantizedActivations>, rows: std::ops::Range<usize>, y: &mut [f32]) {
        match self {
            Kernel::Portable => rows_generic(w, x, act, rows, y, Kernel::Portable),
            // SAFETY: only chosen when the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { rows_avx2(w, x, act, rows, y) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => unsafe { rows_avx512_vnni(w, x, act, rows, y) },
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDotprod => unsafe { rows_neon_dotprod(w, x, act, rows, y) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_avx2(w: &CpuMatrix, x: &[f32], m: usize, rows: std::ops::Range<usize>, out: Out) {
    unsafe { avx2::gemm_f32::<4>(w, x, m, rows, out) }
}

/// AVX-512's 32 registers hold 8 tokens' sums of 16 rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_avx512(w: &CpuMatrix, x: &[f32], m: usize, rows: std::ops::Range<usize>, out: Out) {
    unsafe { avx2::gemm_f32::<8>(w, x, m, rows, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm_int_avx2(w: &CpuMatrix, tiles: &[avx2::TokenTile], rows: std::ops::Range<usize>, out: Out) {
    unsafe { avx2::gemm_int::<false>(w, tiles, rows, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_int_avx512_vnni(w: &CpuMatrix, tiles: &[avx2::TokenTile], rows: std::ops::Range<usize>, out: Out) {
    unsafe { avx2::gemm_int::<true>(w, tiles, rows, out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_avx2(w: &CpuMatrix, x: &[f32], act: Option<&QuantizedActivations>, rows: std::ops::Range<usize>, y: &mut [f32]) {
    rows_generic(w, x, act, rows, y, Kernel::Avx2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn rows_avx512_vnni(w: &CpuMatrix, x: &[f32], act: Option<&QuantizedActivations>, rows: std::ops::Range<usize>, y: &mut [f32]) {
    rows_generic(w, x, act, rows, y, Kernel::Avx512Vnni)
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon,dotprod")]
unsafe fn rows_neon_dotprod(w: &CpuMatrix, x: &[f32], act: Option<&QuantizedActivations>, rows: std::ops::Range<usize>, y: &mut [f32]) {
    rows_generic(w, x, act, rows, y, Kernel::NeonDotprod)
}

/// The row loops, written so that the compiler vectorizes them for whatever target features the
/// calling function enables (inlined into each); for the x86-64 kernels, the dot products the
/// compiler does not find by itself (F16C widening, byte products) written with intrinsics.
#[inline(always)]
fn rows_generic(w: &CpuMatrix, x: &[f32], act: Option<&QuantizedActivations>, rows: std::ops::Range<usize>, y: &mut [f32], kernel: Kernel) {
    use WeightDType::{Block, BF16, F16, F32};
    #[cfg(target_arch = "x86_64")]
    use {BlockType::*, Kernel::*};
    // Rows interleaved in groups of eight: eight at a time, the lanes being the rows.
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(a), Avx2 | Avx512Vnni) = (w.interleaved, act, kernel)
        && rows.start.is_multiple_of(8)
        && rows.len().is_multiple_of(8)
    {
        for (g, out) in y.chunks_exact_mut(8).enumerate() {
            let group = &w.data[(rows.start + 8 * g) * w.row_bytes..][..8 * w.row_bytes];
            // SAFETY: as below.
            let sums = unsafe {
                match (w.dtype, kernel) {
                    (Block(Q4_0), Avx2) => avx2::dot_q4_0_x8::<false>(group, a),
                    (Block(Q4_0), _) => avx2::dot_q4_0_x8::<true>(group, a),
                    (_, Avx2) => avx2::dot_q4_k_x8::<false>(group, a),
                    _ => avx2::dot_q4_k_x8::<true>(group, a),
                }
            };
            out.copy_from_slice(&sums);
        }
        return;
    }
    for (out, r) in y.iter_mut().zip(rows) {
        let row = w.row(r);
        let row = &row[..];
        // SAFETY (the x86-64 arms): `kernel` is only Avx2 or Avx512Vnni inside `rows_avx2` and
        // `rows_avx512_vnni`, which run when the CPU has those features.
        *out = match (w.dtype, act, kernel) {
            #[cfg(target_arch = "x86_64")]
            (F32, _, Avx2 | Avx512Vnni) => unsafe { avx2::dot_f32(bytemuck::cast_slice(row), x) },
            #[cfg(target_arch = "x86_64")]
            (F16, _, Avx2 | Avx512Vnni) => unsafe { avx2::dot_half::<false>(row, x) },
            #[cfg(target_arch = "x86_64")]
            (BF16, _, Avx2 | Avx512Vnni) => unsafe { avx2::dot_half::<true>(row, x) },
            #[cfg(target_arch = "x86_64")]
            (Block(t @ (Q8_0 | Q4_0)), Some(a), Avx2) => unsafe { avx2::dot_q8_0_q4_0::<false>(t == Q8_0, row, a) },
            #[cfg(target_arch = "x86_64")]
            (Block(t @ (Q8_0 | Q4_0)), Some(a), Avx512Vnni) => unsafe { avx2::dot_q8_0_q4_0::<true>(t == Q8_0, row, a) },
            #[cfg(target_arch = "x86_64")]
            (Block(Q4_K), Some(a), Avx2) => unsafe { avx2::dot_q4_k::<false>(row, a) },
            #[cfg(target_arch = "x86_64")]
            (Block(Q4_K), Some(a), Avx512Vnni) => unsafe { avx2::dot_q4_k::<true>(row, a) },
            (F32, _, _) => dot_f32(bytemuck::cast_slice(row), x),
            (F16, _, _) => dot_f16(row, x),
            (BF16, _, _) => dot_bf16(row, x),
            (Block(t), Some(a), _) => specialised!(t, dot_int(row, a, kernel)),
            (Block(t), None, _) => specialised!(t, dot_decoded(row, x)),
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

/// One block of `t` as f32 values (`out`: [`BlockType::block_values`] long): the integers and
/// constants of [`decode_block_int`] multiplied out, in the reference dequantizer's order.
#[inline(always)]
fn decode_block(t: BlockType, blk: &[u8], out: &mut [f32]) {
    let mut ints = IntBlock::new();
    decode_block_int(t, blk, &mut ints);
    for (g, o) in out.chunks_exact_mut(16).enumerate() {
        let (scale, min) = (ints.scale[g], ints.min[g]);
        for (v, &q) in o.iter_mut().zip(&ints.q[g * 16..(g + 1) * 16]) {
            *v = scale * f32::from(q) + min;
        }
    }
}

/// A row of blocks with f32 activations: each block decoded ([`decode_block`]), then f32 dot
/// products 32 values at a time.
#[inline(always)]
fn dot_decoded(t: BlockType, row: &[u8], x: &[f32]) -> f32 {
    let (values, bytes) = (t.block_values(), t.block_bytes());
    let mut buf = [0f32; 256];
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(bytes).enumerate() {
        decode_block(t, blk, &mut buf[..values]);
        for s in (0..values).step_by(QK) {
            let start = b * values + s;
            if start >= x.len() {
                break;
            }
            let n = QK.min(x.len() - start);
            acc += dot_f32(&buf[s..s + n], &x[start..start + n]);
        }
    }
    acc
}

/// A block decoded to integers: value j = `scale[j / 16]` · `q[j]` + `min[j / 16]` (every
/// block type is integers times a scale per 16 or 32 values, some plus an offset).
struct IntBlock {
    q: [i8; 256],
    scale: [f32; 16],
    min: [f32; 16],
}

impl IntBlock {
    fn new() -> IntBlock {
        IntBlock { q: [0; 256], scale: [0.0; 16], min: [0.0; 16] }
    }
}

/// Whether `t`'s values carry a per-group offset ([`IntBlock::min`]).
#[inline(always)]
fn has_min(t: BlockType) -> bool {
    matches!(t, BlockType::Q4_1 | BlockType::Q5_1 | BlockType::Q2_K | BlockType::Q4_K | BlockType::Q5_K)
}

/// One block of `t` as integers and per-16-value constants ([`IntBlock`]); the layouts as
/// [`BlockType::dequantize_block`] reads them (ggml's `dequantize_row_*`).
#[inline(always)]
fn decode_block_int(t: BlockType, b: &[u8], out: &mut IntBlock) {
    let (q, scale, min) = (&mut out.q, &mut out.scale, &mut out.min);
    match t {
        BlockType::Q8_0 => {
            for (o, &v) in q[..QK].iter_mut().zip(&b[2..34]) {
                *o = v as i8;
            }
            scale[..2].fill(half_at(b, 0));
        }
        BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q5_0 | BlockType::Q5_1 | BlockType::IQ4_NL => {
            let (fifth, offset) = (matches!(t, BlockType::Q5_0 | BlockType::Q5_1), matches!(t, BlockType::Q4_1 | BlockType::Q5_1));
            let rest = if offset { &b[4..] } else { &b[2..] };
            let (qh, qs) = if fifth { (u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]), &rest[4..20]) } else { (0, &rest[..16]) };
            let bias = match t {
                BlockType::Q4_0 => 8,
                BlockType::Q5_0 => 16,
                _ => 0,
            };
            for j in 0..16 {
                let (lo, hi) = (qs[j] & 0xF | (((qh >> j) & 1) << 4) as u8, qs[j] >> 4 | (((qh >> (j + 16)) & 1) << 4) as u8);
                (q[j], q[j + 16]) = match t {
                    BlockType::IQ4_NL => (KVALUES_IQ4NL[lo as usize], KVALUES_IQ4NL[hi as usize]),
                    _ => (lo as i8 - bias, hi as i8 - bias),
                };
            }
            scale[..2].fill(half_at(b, 0));
            min[..2].fill(if offset { half_at(b, 2) } else { 0.0 });
        }
        // The K types: each loop over l makes every value that byte l feeds, so that every
        // shift is a constant and the loop vectorizes.
        BlockType::Q4_K | BlockType::Q5_K => {
            let (d, dmin, scales) = (half_at(b, 0), half_at(b, 2), &b[4..16]);
            let (qh, qs) = (&b[16..48], if t == BlockType::Q5_K { &b[48..176] } else { &b[16..144] });
            for sb in 0..8 {
                let (sc, m) = crate::quant::ggml::scale_min_k4(sb, scales);
                scale[2 * sb..2 * sb + 2].fill(d * f32::from(sc));
                min[2 * sb..2 * sb + 2].fill(-dmin * f32::from(m));
            }
            for l in 0..QK {
                for c in 0..4 {
                    let v = qs[c * QK + l];
                    let (mut lo, mut hi) = (v & 0xF, v >> 4);
                    if t == BlockType::Q5_K {
                        lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                        hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
                    }
                    (q[2 * c * QK + l], q[(2 * c + 1) * QK + l]) = (lo as i8, hi as i8);
                }
            }
        }
        BlockType::Q6_K => {
            let (ql, qh, scales, d) = (&b[..128], &b[128..192], &b[192..208], half_at(b, 208));
            for h in 0..2 {
                for l in 0..QK {
                    let (l0, l1, hb) = (ql[h * 64 + l], ql[h * 64 + QK + l], qh[h * 32 + l]);
                    let o = &mut q[h * 128..][..128];
                    o[l] = ((l0 & 0xF) | ((hb & 3) << 4)) as i8 - 32;
                    o[QK + l] = ((l1 & 0xF) | (((hb >> 2) & 3) << 4)) as i8 - 32;
                    o[2 * QK + l] = ((l0 >> 4) | (((hb >> 4) & 3) << 4)) as i8 - 32;
                    o[3 * QK + l] = ((l1 >> 4) | (((hb >> 6) & 3) << 4)) as i8 - 32;
                }
            }
            for (s, &v) in scale.iter_mut().zip(scales) {
                *s = d * f32::from(v as i8);
            }
        }
        BlockType::Q2_K | BlockType::Q3_K => {
            let (qs, hmask) = if t == BlockType::Q2_K { (&b[16..80], &b[..0]) } else { (&b[32..96], &b[..32]) };
            for l in 0..QK {
                for h in 0..2 {
                    for j in 0..4 {
                        let v = ((qs[h * 32 + l] >> (2 * j)) & 3) as i8;
                        // Q3_K: a clear bit of hmask subtracts 4.
                        q[h * 128 + j * QK + l] = if t == BlockType::Q3_K { v - 4 * (1 - ((hmask[l] >> (4 * h + j)) & 1) as i8) } else { v };
                    }
                }
            }
            if t == BlockType::Q2_K {
                let (scales, d, dmin) = (&b[..16], half_at(b, 80), half_at(b, 82));
                for g in 0..16 {
                    scale[g] = d * f32::from(scales[g] & 0xF);
                    min[g] = -dmin * f32::from(scales[g] >> 4);
                }
            } else {
                let (scales, d) = (&b[96..108], half_at(b, 108));
                for (g, s) in scale.iter_mut().enumerate() {
                    let low = (scales[g % 8] >> (4 * (g / 8))) & 0xF;
                    let high = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
                    *s = d * f32::from((low | (high << 4)) as i8 - 32);
                }
            }
        }
        BlockType::IQ4_XS => {
            let (d, scales_h, scales_l, qs) = (half_at(b, 0), u16::from_le_bytes([b[2], b[3]]), &b[4..8], &b[8..136]);
            for ib in 0..8 {
                let ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((((scales_h >> (2 * ib)) & 3) as u8) << 4);
                scale[2 * ib..2 * ib + 2].fill(d * f32::from(ls as i8 - 32));
                for j in 0..16 {
                    let v = qs[ib * 16 + j];
                    q[ib * QK + j] = KVALUES_IQ4NL[(v & 0xF) as usize];
                    q[ib * QK + j + 16] = KVALUES_IQ4NL[(v >> 4) as usize];
                }
            }
        }
    }
}

/// A row of blocks · quantized activations: each block decoded to integers
/// ([`decode_block_int`]), then per 16 values an integer dot product times the block's scale
/// and the activations' (plus the block's offset times the activations' sum).
#[inline(always)]
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(unused_variables))]
fn dot_int(t: BlockType, row: &[u8], a: &QuantizedActivations, kernel: Kernel) -> f32 {
    let (values, bytes) = (t.block_values(), t.block_bytes());
    let mut blk = IntBlock::new();
    let (mut acc, mut offsets) = (0f32, 0f32);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: all-zero bits are eight 0.0 lanes.
    let mut lanes: std::arch::x86_64::__m256 = unsafe { std::mem::zeroed() };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: all-zero bits are four 0.0 lanes.
    let mut lanes: std::arch::aarch64::float32x4_t = unsafe { std::mem::zeroed() };
    for (b, block) in row.chunks_exact(bytes).enumerate() {
        decode_block_int(t, block, &mut blk);
        let (q, d) = (&a.q[b * values..][..values], &a.d[b * values / QK..][..values / QK]);
        // The scale of each 16 values, the block's times the activations'.
        let mut sd = [0f32; 16];
        for g in 0..values / 16 {
            sd[g] = blk.scale[g] * d[g / 2];
        }
        if has_min(t) {
            let sums = &a.sums[b * values / 16..][..values / 16];
            offsets += blk.min.iter().zip(sums).map(|(m, s)| m * s).sum::<f32>();
        }
        // SAFETY: the x86-64 kernels run where the CPU has their features (`rows_generic`).
        #[cfg(target_arch = "x86_64")]
        match kernel {
            Kernel::Avx2 => {
                lanes = unsafe { avx2::dot_i8_scaled::<false>(&blk.q[..values], q, &sd, lanes) };
                continue;
            }
            Kernel::Avx512Vnni => {
                lanes = unsafe { avx2::dot_i8_scaled::<true>(&blk.q[..values], q, &sd, lanes) };
                continue;
            }
            Kernel::Portable => {}
        }
        // SAFETY: the dot-product kernel runs where the CPU has it (`rows_generic`).
        #[cfg(target_arch = "aarch64")]
        if kernel == Kernel::NeonDotprod {
            lanes = unsafe { neon::dot_i8_scaled(&blk.q[..values], q, &sd, lanes) };
            continue;
        }
        for g in 0..values / 16 {
            let s: i32 = blk.q[g * 16..][..16].iter().zip(&q[g * 16..][..16]).map(|(&w, &v)| i32::from(i16::from(w) * i16::from(v))).sum();
            acc += sd[g] * s as f32;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Portable {
        // SAFETY: as above.
        acc += unsafe { avx2::sum(lanes) };
    }
    #[cfg(target_arch = "aarch64")]
    if kernel == Kernel::NeonDotprod {
        // SAFETY: NEON is every aarch64 CPU's.
        acc += unsafe { std::arch::aarch64::vaddvq_f32(lanes) };
    }
    acc + offsets
}

/// The integer dot product for aarch64's dot-product kernel: Armv8.2's `sdot` (FEAT_DotProd),
/// written as inline assembly (its intrinsic is not stable in Rust 1.95).
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    /// `acc` + per 32-bit lane, the sum of four products of signed bytes.
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    fn sdot(mut acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
        // SAFETY: one register instruction, no memory; the feature as the attribute says.
        unsafe { std::arch::asm!("sdot {acc:v}.4s, {w:v}.16b, {x:v}.16b", acc = inout(vreg) acc, w = in(vreg) w, x = in(vreg) x, options(pure, nomem, nostack)) };
        acc
    }

    /// `acc` + per 16 values, `scale[g]` · Σ w·x (signed bytes), four lanes.
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    pub(super) fn dot_i8_scaled(w: &[i8], x: &[i8], scale: &[f32; 16], mut acc: float32x4_t) -> float32x4_t {
        assert!(x.len() >= w.len() && w.len().is_multiple_of(16) && w.len() <= 256);
        for (g, &s) in scale.iter().enumerate().take(w.len() / 16) {
            // SAFETY: 16 bytes at 16g of each, in bounds (asserted).
            let (wv, xv) = unsafe { (vld1q_s8(w.as_ptr().add(16 * g)), vld1q_s8(x.as_ptr().add(16 * g))) };
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(sdot(vdupq_n_s32(0), wv, xv)), s);
        }
        acc
    }
}

/// The dot products the compiler does not find by itself, for the x86-64 kernels. The integer
/// ones take `VNNI` (AVX-512's byte dot product) and carry no target features of their own:
/// they are inlined into `rows_avx2` or `rows_avx512_vnni`, whose features their intrinsics get.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::BlockType;
    use std::arch::x86_64::*;

    /// Values per scale of `t`'s blocks: 16 for the types with a scale per 16 values (Q2_K,
    /// Q3_K, Q6_K), else 32 (those [`super::decode_block_int`] gives the same scale and offset
    /// for both halves).
    #[inline(always)]
    fn scale_group(t: BlockType) -> usize {
        match t {
            BlockType::Q2_K | BlockType::Q3_K | BlockType::Q6_K => 16,
            _ => 32,
        }
    }

    /// Rows per group of [`gemm_int`]: one 32-bit lane each.
    const LANES: usize = super::GEMM_INT_ROWS;

    /// Per 32-bit lane, the sum of four products of bytes, `w` unsigned and `x` signed (no
    /// saturation within our ranges: |w| <= 128, |x| <= 127): one `vpdpbusd` with VNNI, else
    /// pairs to 16 bits (`maddubs`), then pairs to 32 (`madd`).
    #[inline(always)]
    unsafe fn byte_dot<const VNNI: bool>(w: __m256i, x: __m256i) -> __m256i {
        unsafe {
            match VNNI {
                true => _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x),
                false => _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)),
            }
        }
    }

    /// [`byte_dot`] of signed weights: w's magnitude unsigned, its sign moved onto x.
    #[inline(always)]
    unsafe fn signed_byte_dot<const VNNI: bool>(w: __m256i, x: __m256i) -> __m256i {
        unsafe { byte_dot::<VNNI>(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)) }
    }

    /// The eight lanes summed.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// `acc` + per 16 values, `scale[g]` · Σ w·x (signed bytes), eight lanes.
    #[inline(always)]
    pub(super) unsafe fn dot_i8_scaled<const VNNI: bool>(w: &[i8], x: &[i8], scale: &[f32; 16], mut acc: __m256) -> __m256 {
        assert!(x.len() >= w.len() && w.len().is_multiple_of(32));
        for k in 0..w.len() / 32 {
            // SAFETY: 32 bytes at 32k of each, in bounds (asserted); the features as the module says.
            unsafe {
                let (wv, xv) = (_mm256_loadu_si256(w.as_ptr().add(32 * k).cast()), _mm256_loadu_si256(x.as_ptr().add(32 * k).cast()));
                let sums = _mm256_cvtepi32_ps(signed_byte_dot::<VNNI>(wv, xv));
                let s = _mm256_set_m128(_mm_set1_ps(scale[2 * k + 1]), _mm_set1_ps(scale[2 * k]));
                acc = _mm256_fmadd_ps(sums, s, acc);
            }
        }
        acc
    }

    /// A Q8_0 or Q4_0 row straight from its bytes (ggml's `ggml_vec_dot_q4_0_q8_0`): each
    /// block's 32 weights unpacked in a register, one integer dot product with the activations'
    /// block, scaled by both d. Q4_0's nibbles stay unsigned (0..15, the byte product's unsigned
    /// side): the 8 they stand above their values comes out once per eight blocks, as 8 · d times
    /// the activations' sums. Eight blocks at a time: their eight f16 d widened in one
    /// instruction and multiplied by the activations' eight, each block then broadcasting its
    /// own from memory.
    #[inline(always)]
    pub(super) unsafe fn dot_q8_0_q4_0<const VNNI: bool>(q8: bool, row: &[u8], a: &super::QuantizedActivations) -> f32 {
        let bytes = if q8 { 34 } else { 18 };
        let blocks = row.len() / bytes;
        // `a.d` and `a.sums32` hold whole groups of eight (the activations are padded to 256
        // values).
        assert!(a.q.len() >= blocks * 32 && a.d.len() >= blocks.div_ceil(8) * 8 && a.sums32.len() >= blocks.div_ceil(8) * 8);
        // SAFETY: block b's bytes and activations are in bounds (asserted); the features as the
        // module says.
        unsafe {
            let low = _mm256_set1_epi8(0xF);
            let (mut acc, mut offsets) = ([_mm256_setzero_ps(); 2], _mm256_setzero_ps());
            for first in (0..blocks).step_by(8) {
                let n = (blocks - first).min(8);
                let mut halves = [0u16; 8];
                for (i, h) in halves.iter_mut().enumerate().take(n) {
                    let at = (first + i) * bytes;
                    *h = u16::from_le_bytes([row[at], row[at + 1]]);
                }
                let d = _mm256_cvtph_ps(_mm_loadu_si128(halves.as_ptr().cast()));
                let mut sd = [0f32; 8];
                _mm256_storeu_ps(sd.as_mut_ptr(), _mm256_mul_ps(d, _mm256_loadu_ps(a.d.as_ptr().add(first))));
                if !q8 {
                    offsets = _mm256_fmadd_ps(d, _mm256_loadu_ps(a.sums32.as_ptr().add(first)), offsets);
                }
                for (i, s) in sd.iter().enumerate().take(n) {
                    let b = first + i;
                    let (blk, xv) = (row.as_ptr().add(b * bytes + 2), _mm256_loadu_si256(a.q.as_ptr().add(32 * b).cast()));
                    let dot = if q8 {
                        signed_byte_dot::<VNNI>(_mm256_loadu_si256(blk.cast()), xv)
                    } else {
                        let v = _mm_loadu_si128(blk.cast());
                        byte_dot::<VNNI>(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), low), xv)
                    };
                    acc[i % 2] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_broadcast_ss(s), acc[i % 2]);
                }
            }
            sum(_mm256_add_ps(acc[0], acc[1])) - 8.0 * sum(offsets)
        }
    }

    /// One step of the interleaved 4-bit kernels: `dots[0]` + the low nibbles of `v` (unsigned,
    /// 4 columns of each of 8 rows) · the 4 activation bytes at `xlo` broadcast, `dots[1]` + the
    /// high nibbles · those at `xhi`.
    #[inline(always)]
    unsafe fn nibble_dots<const VNNI: bool>(dots: &mut [__m256i; 2], v: __m256i, xlo: *const i8, xhi: *const i8) {
        // SAFETY: the caller's: 4 bytes at `xlo` and at `xhi`; the features as the module says.
        unsafe {
            let low = _mm256_set1_epi8(0xF);
            let halves = [(_mm256_and_si256(v, low), xlo), (_mm256_and_si256(_mm256_srli_epi16(v, 4), low), xhi)];
            for (d, (w, x)) in dots.iter_mut().zip(halves) {
                let xv = _mm256_set1_epi32(x.cast::<i32>().read_unaligned());
                *d = match VNNI {
                    true => _mm256_dpbusd_epi32(*d, w, xv),
                    false => _mm256_add_epi32(*d, byte_dot::<false>(w, xv)),
                };
            }
        }
    }

    /// Eight Q4_0 rows interleaved ([`super::interleave_rows`]) · quantized activations: the
    /// idea of llama.cpp's repacked `gemv_q4_0_8x8`. Per block, four registers each hold 4
    /// bytes of every row: their low nibbles (unsigned 0..15) are 4 columns of the 8 rows, and
    /// meet the activations' 4 bytes broadcast, their high nibbles the 4 columns 16 on. The
    /// lanes are the rows, so the block's integer sums are converted, scaled by the 8 rows' d
    /// (widened in one instruction) times the activations' d, and offset by 8 (the nibbles'
    /// bias) times d times the activations' sum once per block for all eight rows.
    #[inline(always)]
    pub(super) unsafe fn dot_q4_0_x8<const VNNI: bool>(group: &[u8], a: &super::QuantizedActivations) -> [f32; 8] {
        let blocks = group.len() / (8 * 18);
        assert!(group.len() == blocks * 8 * 18 && a.q.len() >= blocks * 32 && a.d.len() >= blocks && a.sums32.len() >= blocks);
        // SAFETY: block b's 144 bytes and its activations are in bounds (asserted); the features
        // as the module says.
        unsafe {
            let (mut acc, mut offsets) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for b in 0..blocks {
                let (p, x) = (group.as_ptr().add(b * 144), a.q.as_ptr().add(32 * b));
                let mut dots = [_mm256_setzero_si256(); 2];
                for k in 0..4 {
                    nibble_dots::<VNNI>(&mut dots, _mm256_loadu_si256(p.add(16 + 32 * k).cast()), x.add(4 * k), x.add(16 + 4 * k));
                }
                let d = _mm256_cvtph_ps(_mm_loadu_si128(p.cast()));
                let dot = _mm256_cvtepi32_ps(_mm256_add_epi32(dots[0], dots[1]));
                acc = _mm256_fmadd_ps(dot, _mm256_mul_ps(d, _mm256_set1_ps(*a.d.get_unchecked(b))), acc);
                offsets = _mm256_fmadd_ps(d, _mm256_set1_ps(*a.sums32.get_unchecked(b)), offsets);
            }
            let mut out = [0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), _mm256_fnmadd_ps(_mm256_set1_ps(8.0), offsets, acc));
            out
        }
    }

    /// Eight Q4_K rows interleaved ([`super::interleave_rows`]) · quantized activations: the
    /// idea of llama.cpp's repacked `gemv_q4_K_8x8`. Per block, the eight rows' packed 6-bit
    /// scales and mins are unpacked at once (ggml's mask trick on three vectors, one lane per
    /// row); per 64 values, eight registers each hold 4 bytes of every row: their low nibbles
    /// are 4 columns of a sub-block, their high nibbles 4 columns of the next, each meeting the
    /// activations' 4 bytes broadcast. The lanes are the rows: each sub-block's scaling and
    /// offset is one vector operation for all eight.
    #[inline(always)]
    pub(super) unsafe fn dot_q4_k_x8<const VNNI: bool>(group: &[u8], a: &super::QuantizedActivations) -> [f32; 8] {
        let blocks = group.len() / (8 * 144);
        assert!(group.len() == blocks * 8 * 144 && a.q.len() >= blocks * 256 && a.d.len() >= blocks * 8 && a.sums32.len() >= blocks * 8);
        // SAFETY: block b's 1152 bytes and its activations are in bounds (asserted); the features
        // as the module says.
        unsafe {
            let (m6, m4, m2) = (_mm256_set1_epi32(0x3f3f_3f3f), _mm256_set1_epi32(0x0f0f_0f0f), _mm256_set1_epi32(0x0303_0303));
            let (mut acc, mut offsets) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for b in 0..blocks {
                let (p, x) = (group.as_ptr().add(b * 1152), a.q.as_ptr().add(256 * b));
                let (d, dmin) = (_mm256_cvtph_ps(_mm_loadu_si128(p.cast())), _mm256_cvtph_ps(_mm_loadu_si128(p.add(16).cast())));
                let u: [__m256i; 3] = std::array::from_fn(|k| _mm256_loadu_si256(p.add(32 + 32 * k).cast()));
                // Per lane (row), the scales of sub-blocks 0-3 and 4-7, one byte each; the mins
                // likewise (`scale_min_k4` for all eight rows).
                let scales = [_mm256_and_si256(u[0], m6), _mm256_or_si256(_mm256_and_si256(u[2], m4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u[0], 6), m2), 4))];
                let mins = [_mm256_and_si256(u[1], m6), _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u[2], 4), m4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(u[1], 6), m2), 4))];
                let byte = |v: __m256i, k: usize| _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(v, _mm256_set1_epi32(8 * k as i32)), _mm256_set1_epi32(0xFF)));
                for c in 0..4 {
                    let mut dots = [_mm256_setzero_si256(); 2];
                    for k in 0..8 {
                        nibble_dots::<VNNI>(&mut dots, _mm256_loadu_si256(p.add(128 + 256 * c + 32 * k).cast()), x.add(64 * c + 4 * k), x.add(64 * c + 32 + 4 * k));
                    }
                    for (h, &dot) in dots.iter().enumerate() {
                        let sb = 2 * c + h;
                        let (sc, mn) = (byte(scales[sb / 4], sb % 4), byte(mins[sb / 4], sb % 4));
                        let ad = _mm256_set1_ps(*a.d.get_unchecked(8 * b + sb));
                        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(_mm256_mul_ps(d, sc), ad), acc);
                        offsets = _mm256_fmadd_ps(_mm256_mul_ps(dmin, mn), _mm256_set1_ps(*a.sums32.get_unchecked(8 * b + sb)), offsets);
                    }
                }
            }
            let mut out = [0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), _mm256_sub_ps(acc, offsets));
            out
        }
    }

    /// A Q4_K row straight from its bytes (ggml's `ggml_vec_dot_q4_K_q8_K`, on 32-value
    /// activation blocks): per 64 values, 32 bytes whose low nibbles are one sub-block and high
    /// nibbles the next, unsigned 0..15. Per block, the eight 6-bit scales and mins are unpacked
    /// at once (ggml's mask trick), and each sub-block's d·scale times its activations' d is one
    /// lane of a vector made for the block; the offsets (−dmin·min times the activations' sums)
    /// accumulate in a vector too.
    #[inline(always)]
    pub(super) unsafe fn dot_q4_k<const VNNI: bool>(row: &[u8], a: &super::QuantizedActivations) -> f32 {
        let blocks = row.len() / 144;
        assert!(a.q.len() >= blocks * 256 && a.d.len() >= blocks * 8 && a.sums32.len() >= blocks * 8);
        // SAFETY: bytes 16 + 32c.. of a 144-byte block; activations in bounds (asserted); the
        // features as the module says.
        unsafe {
            let low = _mm256_set1_epi8(0xF);
            let (mut acc, mut offsets) = ([_mm256_setzero_ps(); 2], _mm256_setzero_ps());
            for (b, blk) in row.chunks_exact(144).enumerate() {
                let (d, dmin) = (super::half_at(blk, 0), super::half_at(blk, 2));
                let word = |i: usize| u32::from_le_bytes([blk[4 + 4 * i], blk[5 + 4 * i], blk[6 + 4 * i], blk[7 + 4 * i]]);
                let (u0, u1, u2) = (word(0), word(1), word(2));
                // Scales of sub-blocks 0-3 then 4-7, mins likewise (`scale_min_k4` for all eight).
                let scales = [u0 & 0x3f3f_3f3f, (u2 & 0x0f0f_0f0f) | (((u0 >> 6) & 0x0303_0303) << 4)];
                let mins = [u1 & 0x3f3f_3f3f, ((u2 >> 4) & 0x0f0f_0f0f) | (((u1 >> 6) & 0x0303_0303) << 4)];
                let widen = |v: [u32; 2]| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, v[1] as i32, v[0] as i32)));
                let ad = _mm256_loadu_ps(a.d.as_ptr().add(8 * b));
                let sd = _mm256_mul_ps(_mm256_mul_ps(widen(scales), _mm256_set1_ps(d)), ad);
                offsets = _mm256_fmadd_ps(_mm256_mul_ps(widen(mins), _mm256_set1_ps(dmin)), _mm256_loadu_ps(a.sums32.as_ptr().add(8 * b)), offsets);
                for c in 0..4 {
                    let v = _mm256_loadu_si256(blk.as_ptr().add(16 + 32 * c).cast());
                    for (h, w) in [(0, _mm256_and_si256(v, low)), (1, _mm256_and_si256(_mm256_srli_epi16(v, 4), low))] {
                        let sb = 2 * c + h;
                        let x = _mm256_loadu_si256(a.q.as_ptr().add(32 * (8 * b + sb)).cast());
                        let sums = _mm256_cvtepi32_ps(byte_dot::<VNNI>(w, x));
                        let scale = _mm256_permutevar8x32_ps(sd, _mm256_set1_epi32(sb as i32));
                        acc[h] = _mm256_fmadd_ps(sums, scale, acc[h]);
                    }
                }
            }
            sum(_mm256_add_ps(acc[0], acc[1])) - sum(offsets)
        }
    }

    /// [`GEMM_INT_ROWS`] rows decoded to integers and interleaved for [`gemm_int`]: per 4
    /// columns, 4 bytes of each row (32 bytes, one register), optionally each value plus 128 as
    /// an unsigned byte; per 16 columns, each row's scale and offset (8 lanes). Rows past the
    /// matrix are zero.
    pub(super) struct Interleaved {
        q: Vec<u32>,
        scale: Vec<f32>,
        min: Vec<f32>,
        /// Columns, whole blocks.
        cols: usize,
        rows: Vec<super::IntRow>,
        /// For matrices stored interleaved: the group's rows as stored, and the table that
        /// gives them back ([`super::interleave_table`]).
        stored: Vec<u8>,
        table: Vec<usize>,
    }

    impl Interleaved {
        fn new(t: BlockType, cols: usize) -> Interleaved {
            let rows: Vec<super::IntRow> = (0..LANES).map(|_| super::IntRow::new(t, cols)).collect();
            let n = rows[0].q.len();
            Interleaved { q: vec![0; LANES * n / 4], scale: vec![0.0; LANES * n / 16], min: vec![0.0; LANES * n / 16], cols: n, rows, stored: Vec::new(), table: super::interleave_table(t) }
        }

        /// Rows `r0..r0 + n` of `w` (n <= [`LANES`]); `unsigned`: each value plus 128.
        #[inline(always)]
        fn pack(&mut self, t: BlockType, w: &super::CpuMatrix, r0: usize, n: usize, unsigned: bool) {
            if w.interleaved {
                // A whole group (interleaved matrices have whole groups of eight).
                self.stored.resize(LANES * w.row_bytes, 0);
                super::deinterleave_group(t, &w.data[r0 * w.row_bytes..][..LANES * w.row_bytes], w.row_bytes, &self.table, &mut self.stored);
            }
            for (i, row) in self.rows.iter_mut().enumerate() {
                if i < n && w.interleaved {
                    row.decode(t, &self.stored[i * w.row_bytes..(i + 1) * w.row_bytes]);
                } else if i < n {
                    row.decode(t, &w.row(r0 + i));
                } else {
                    row.q.fill(0);
                    row.scale.fill(0.0);
                    row.min.fill(0.0);
                }
                // Stored plus 128: the offset takes 128 times the scale back out.
                let bias = if unsigned { 128.0 } else { 0.0 };
                for (g, (&s, &m)) in row.scale.iter().zip(&row.min).enumerate() {
                    self.scale[g * LANES + i] = s;
                    self.min[g * LANES + i] = m - bias * s;
                }
            }
            // Per 32 columns, the 8 rows' 8 words transposed (the 8x8 32-bit transpose: pairs of
            // words, then of pairs, then halves), plus 128 in every byte by flipping its top bit.
            assert!(self.rows.iter().all(|r| r.q.len() == self.cols) && self.q.len() * 4 == LANES * self.cols && self.cols.is_multiple_of(32));
            // SAFETY: 32 bytes at c of each row and 8 words at 8c/4 of `q`, in bounds (asserted);
            // the features as the module says.
            unsafe {
                let flip = _mm256_set1_epi8(if unsigned { -128 } else { 0 });
                for c in (0..self.cols).step_by(32) {
                    let words = transpose8(std::array::from_fn(|i| _mm256_loadu_si256(self.rows[i].q.as_ptr().add(c).cast())));
                    for (k, v) in words.into_iter().enumerate() {
                        _mm256_storeu_si256(self.q.as_mut_ptr().add(2 * c + 8 * k).cast(), _mm256_xor_si256(v, flip));
                    }
                }
            }
        }
    }

    /// The 8x8 transpose of 32-bit words: `r[i]` holds 8 words of row i; vector k of the result
    /// holds word k of the 8 rows (pairs of words, then pairs of pairs, then 128-bit halves).
    #[inline(always)]
    unsafe fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
        // SAFETY: the features as the module says.
        unsafe {
            let a = [_mm256_unpacklo_epi32(r[0], r[1]), _mm256_unpackhi_epi32(r[0], r[1]), _mm256_unpacklo_epi32(r[2], r[3]), _mm256_unpackhi_epi32(r[2], r[3])];
            let b = [_mm256_unpacklo_epi32(r[4], r[5]), _mm256_unpackhi_epi32(r[4], r[5]), _mm256_unpacklo_epi32(r[6], r[7]), _mm256_unpackhi_epi32(r[6], r[7])];
            // Words k (low half) and 4 + k (high half) of rows 0-3 and of rows 4-7, k = 0..3.
            let half = [
                (_mm256_unpacklo_epi64(a[0], a[2]), _mm256_unpacklo_epi64(b[0], b[2])),
                (_mm256_unpackhi_epi64(a[0], a[2]), _mm256_unpackhi_epi64(b[0], b[2])),
                (_mm256_unpacklo_epi64(a[1], a[3]), _mm256_unpacklo_epi64(b[1], b[3])),
                (_mm256_unpackhi_epi64(a[1], a[3]), _mm256_unpackhi_epi64(b[1], b[3])),
            ];
            std::array::from_fn(|k| {
                let (lo, hi) = half[k % 4];
                match k < 4 {
                    true => _mm256_permute2x128_si256(lo, hi, 0x20),
                    false => _mm256_permute2x128_si256(lo, hi, 0x31),
                }
            })
        }
    }

    /// Rows per group of [`gemm_f32`]: two registers of 8 lanes.
    const FLOAT_ROWS: usize = 16;

    /// The f32 multi-token product laid out as [`gemm_int`]'s: 16 rows decoded to f32 and
    /// interleaved (per column, the 16 rows' values: two registers), a tile of T tokens
    /// interleaved (per column, each token's value); per column two loads, and per token one
    /// broadcast and two FMAs, the lanes being the rows: no horizontal sums, and each weight
    /// loaded feeds T products.
    #[inline(always)]
    pub(super) unsafe fn gemm_f32<const T: usize>(w: &super::CpuMatrix, x: &[f32], m: usize, rows: std::ops::Range<usize>, out: super::Out) {
        let (cols, padded) = (w.cols, w.cols.next_multiple_of(8));
        let tiles: Vec<(usize, usize, Vec<f32>)> = (0..m)
            .step_by(T)
            .map(|first| {
                let n = T.min(m - first);
                let mut v = vec![0f32; padded * T];
                for j in 0..T {
                    for (c, &value) in x[(first + j.min(n - 1)) * cols..][..cols].iter().enumerate() {
                        v[c * T + j] = value;
                    }
                }
                (first, n, v)
            })
            .collect();
        let (mut decoded, mut interleaved) = (vec![0f32; FLOAT_ROWS * padded], vec![0f32; FLOAT_ROWS * padded]);
        for r0 in rows.clone().step_by(FLOAT_ROWS) {
            let nr = FLOAT_ROWS.min(rows.end - r0);
            for (i, row) in decoded.chunks_exact_mut(padded).enumerate() {
                match i < nr {
                    true => super::decode_row(w, r0 + i, &mut row[..cols]),
                    false => row.fill(0.0),
                }
            }
            // SAFETY: 8 values at c of each row, 8 at 16(c + k) + 8h of `interleaved`, in
            // bounds (c + 8 <= padded); the features as the module says.
            unsafe {
                for h in 0..2 {
                    for c in (0..padded).step_by(8) {
                        let words = transpose8(std::array::from_fn(|i| _mm256_loadu_si256(decoded.as_ptr().add((8 * h + i) * padded + c).cast())));
                        for (k, v) in words.into_iter().enumerate() {
                            _mm256_storeu_si256(interleaved.as_mut_ptr().add(FLOAT_ROWS * (c + k) + 8 * h).cast(), v);
                        }
                    }
                }
            }
            for (first, n, tile) in &tiles {
                // SAFETY: the features as the caller's.
                let sums = unsafe { float_tile::<T>(&interleaved, tile, padded) };
                for (j, halves) in sums.iter().enumerate().take(*n) {
                    let mut row_sums = [0f32; FLOAT_ROWS];
                    // SAFETY: 16 floats; the caller's task owns rows r0..r0 + nr.
                    unsafe {
                        _mm256_storeu_ps(row_sums.as_mut_ptr(), halves[0]);
                        _mm256_storeu_ps(row_sums.as_mut_ptr().add(8), halves[1]);
                        out.rows(first + j, r0, nr).copy_from_slice(&row_sums[..nr]);
                    }
                }
            }
        }
    }

    /// 16 interleaved rows · T interleaved tokens: per token, the 16 rows' sums (two vectors).
    #[inline(always)]
    unsafe fn float_tile<const T: usize>(w: &[f32], x: &[f32], cols: usize) -> [[__m256; 2]; T] {
        assert!(w.len() >= FLOAT_ROWS * cols && x.len() >= T * cols);
        // SAFETY: in bounds (asserted); the features as the module says.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; T];
            for c in 0..cols {
                let (w0, w1) = (_mm256_loadu_ps(w.as_ptr().add(FLOAT_ROWS * c)), _mm256_loadu_ps(w.as_ptr().add(FLOAT_ROWS * c + 8)));
                for (j, a) in acc.iter_mut().enumerate() {
                    let xv = _mm256_set1_ps(*x.get_unchecked(c * T + j));
                    a[0] = _mm256_fmadd_ps(w0, xv, a[0]);
                    a[1] = _mm256_fmadd_ps(w1, xv, a[1]);
                }
            }
            acc
        }
    }

    /// [`Interleaved::pack`], each block type's decoder specialised.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn pack(p: &mut Interleaved, t: BlockType, w: &super::CpuMatrix, r0: usize, n: usize, unsigned: bool) {
        specialised!(t, pack_rows(p, w, r0, n, unsigned))
    }

    #[inline(always)]
    fn pack_rows(t: BlockType, p: &mut Interleaved, w: &super::CpuMatrix, r0: usize, n: usize, unsigned: bool) {
        p.pack(t, w, r0, n, unsigned)
    }

    /// Tokens per pass of [`gemm_int`] over a group of rows: with AVX-512 (VNNI) 32 vector
    /// registers hold eight tokens' sums, AVX2's 16 hold four.
    const fn tokens(vnni: bool) -> usize {
        if vnni { 8 } else { 4 }
    }

    /// A tile of [`tokens`] tokens' quantized activations, interleaved so that one pointer
    /// reaches all of them: per 4 columns, each token's 4 bytes; per 32 (or 16) columns, each
    /// token's scale and sum. A tile past the last token repeats it.
    pub(super) struct TokenTile {
        q: Vec<u32>,
        d: Vec<f32>,
        sums: Vec<f32>,
        sums32: Vec<f32>,
        /// Columns (the activations' padded length), and tokens in the tile.
        cols: usize,
        width: usize,
        first: usize,
        n: usize,
    }

    impl TokenTile {
        /// Every token in tiles of [`tokens`]`(vnni)`.
        pub(super) fn all(acts: &[super::QuantizedActivations], vnni: bool) -> Vec<TokenTile> {
            let width = tokens(vnni);
            (0..acts.len()).step_by(width).map(|first| TokenTile::new(acts, first, width)).collect()
        }

        fn new(acts: &[super::QuantizedActivations], first: usize, width: usize) -> TokenTile {
            let n = width.min(acts.len() - first);
            let token = |j: usize| &acts[first + j.min(n - 1)];
            let cols = token(0).q.len();
            let (mut q, mut d, mut sums, mut sums32) = (vec![0u32; cols / 4 * width], vec![0f32; cols / 32 * width], vec![0f32; cols / 16 * width], vec![0f32; cols / 32 * width]);
            for j in 0..width {
                let x = token(j);
                for (c, four) in x.q.chunks_exact(4).enumerate() {
                    q[c * width + j] = u32::from_le_bytes([four[0] as u8, four[1] as u8, four[2] as u8, four[3] as u8]);
                }
                for (out, from) in [(&mut d, &x.d), (&mut sums, &x.sums), (&mut sums32, &x.sums32)] {
                    for (g, &v) in from.iter().enumerate() {
                        out[g * width + j] = v;
                    }
                }
            }
            TokenTile { q, d, sums, sums32, cols, width, first, n }
        }
    }

    /// The integer multi-token product (the idea of llama.cpp's repacked `gemm_q4_0_8x8_q8_0`,
    /// for every block type): eight rows interleaved ([`Interleaved`]) so that one register
    /// holds four columns of each, times a tile of tokens ([`TokenTile`]). Per 4 columns, each
    /// token's 4 activation bytes are broadcast and multiplied with the register, the 8 lanes
    /// being the 8 rows: no horizontal sums. Per scale group (16 or 32 values), each token's
    /// integer sums are converted once and scaled by the rows' scales (a vector) times the
    /// token's, plus the rows' offsets times the token's sum. VNNI multiplies unsigned by signed
    /// bytes in one instruction: its rows are stored plus 128 and their offsets less 128 times
    /// their scale; without it, signed bytes and the sign trick ([`signed_byte_dot`]).
    #[inline(always)]
    pub(super) unsafe fn gemm_int<const VNNI: bool>(w: &super::CpuMatrix, tiles: &[TokenTile], rows: std::ops::Range<usize>, out: super::Out) {
        let super::WeightDType::Block(t) = w.dtype else { unreachable!("the integer path takes rows of blocks") };
        assert!(tiles.iter().all(|x| x.width == tokens(VNNI)), "token tiles for this kernel");
        // SAFETY: the caller's (the features; disjoint rows of `out`).
        unsafe {
            match (VNNI, scale_group(t), super::has_min(t)) {
                (true, 16, _) => gemm_int_t::<true, 16, true, { tokens(true) }>(t, w, tiles, rows, out),
                (true, _, _) => gemm_int_t::<true, 32, true, { tokens(true) }>(t, w, tiles, rows, out),
                (false, 16, false) => gemm_int_t::<false, 16, false, { tokens(false) }>(t, w, tiles, rows, out),
                (false, 16, true) => gemm_int_t::<false, 16, true, { tokens(false) }>(t, w, tiles, rows, out),
                (false, _, false) => gemm_int_t::<false, 32, false, { tokens(false) }>(t, w, tiles, rows, out),
                (false, _, true) => gemm_int_t::<false, 32, true, { tokens(false) }>(t, w, tiles, rows, out),
            }
        }
    }

    #[inline(always)]
    unsafe fn gemm_int_t<const VNNI: bool, const G: usize, const OFFSET: bool, const T: usize>(t: BlockType, w: &super::CpuMatrix, tiles: &[TokenTile], rows: std::ops::Range<usize>, out: super::Out) {
        let mut packed = Interleaved::new(t, w.cols);
        for r0 in rows.clone().step_by(LANES) {
            let nr = LANES.min(rows.end - r0);
            // SAFETY: the features as the caller's.
            unsafe { pack(&mut packed, t, w, r0, nr, VNNI) };
            for x in tiles {
                // SAFETY: the features as the caller's.
                let sums = unsafe { tile::<VNNI, G, OFFSET, T>(&packed, x) };
                for (j, v) in sums.iter().enumerate().take(x.n) {
                    let mut row_sums = [0f32; LANES];
                    // SAFETY: 8 floats; the caller's task owns rows r0..r0 + nr.
                    unsafe {
                        _mm256_storeu_ps(row_sums.as_mut_ptr(), *v);
                        out.rows(x.first + j, r0, nr).copy_from_slice(&row_sums[..nr]);
                    }
                }
            }
        }
    }

    /// Eight interleaved rows · a tile of T tokens: one vector of 8 row sums per token.
    #[inline(always)]
    unsafe fn tile<const VNNI: bool, const G: usize, const OFFSET: bool, const T: usize>(p: &Interleaved, x: &TokenTile) -> [__m256; T] {
        let cols = p.cols;
        assert!(p.q.len() >= 2 * cols && p.scale.len() >= cols / 2 && p.min.len() >= cols / 2);
        assert!(x.width == T && x.cols >= cols && x.q.len() >= cols / 4 * T && x.d.len() >= cols / 32 * T && x.sums.len() >= cols / 16 * T && x.sums32.len() >= cols / 32 * T);
        let (wq, xq) = (p.q.as_ptr(), x.q.as_ptr());
        let (xd, xsums) = (x.d.as_ptr(), if G == 32 { x.sums32.as_ptr() } else { x.sums.as_ptr() });
        // SAFETY: every index below is within the lengths asserted; the features as the module
        // says.
        unsafe {
            let mut acc = [_mm256_setzero_ps(); T];
            for g in 0..cols / G {
                let mut dots = [_mm256_setzero_si256(); T];
                for c in (g * G..(g + 1) * G).step_by(4) {
                    // Columns c..c + 4 of the 8 rows, and of each token.
                    let wv = _mm256_loadu_si256(wq.add(2 * c).cast());
                    for (j, d) in dots.iter_mut().enumerate() {
                        let xv = _mm256_set1_epi32(*xq.add(c / 4 * T + j) as i32);
                        *d = match VNNI {
                            true => _mm256_dpbusd_epi32(*d, wv, xv),
                            false => _mm256_add_epi32(*d, signed_byte_dot::<false>(wv, xv)),
                        };
                    }
                }
                let at = 8 * (g * G / 16);
                let (scale, min) = (_mm256_loadu_ps(p.scale.as_ptr().add(at)), _mm256_loadu_ps(p.min.as_ptr().add(at)));
                for (j, (a, &dot)) in acc.iter_mut().zip(&dots).enumerate() {
                    let sd = _mm256_mul_ps(scale, _mm256_set1_ps(*xd.add(g * G / 32 * T + j)));
                    *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), sd, *a);
                    if OFFSET {
                        *a = _mm256_fmadd_ps(min, _mm256_set1_ps(*xsums.add(g * T + j)), *a);
                    }
                }
            }
            acc
        }
    }

    /// f32 · f32, four accumulators (the adds' latency hidden).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_f32(w: &[f32], x: &[f32]) -> f32 {
        let n = w.len().min(x.len());
        let mut acc = [_mm256_setzero_ps(); 4];
        let whole = n / 32 * 32;
        for c in (0..whole).step_by(32) {
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: c + 8j + 8 <= whole <= n.
                let (wv, xv) = unsafe { (_mm256_loadu_ps(w.as_ptr().add(c + 8 * j)), _mm256_loadu_ps(x.as_ptr().add(c + 8 * j))) };
                *a = _mm256_fmadd_ps(wv, xv, *a);
            }
        }
        let total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        sum(total) + w[whole..n].iter().zip(&x[whole..n]).map(|(a, b)| a * b).sum::<f32>()
    }

    /// Eight 16-bit values at `p` as f32: F16C's conversion, or bf16 shifted into the high half.
    #[inline(always)]
    unsafe fn widen<const BF16: bool>(p: *const u16) -> __m256 {
        // SAFETY: the caller's: 16 bytes at `p`; the features as the module says.
        unsafe {
            let v = _mm_loadu_si128(p.cast());
            match BF16 {
                true => _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)),
                false => _mm256_cvtph_ps(v),
            }
        }
    }

    /// f16 (or bf16) · f32: eight values widened per step, four accumulators.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) fn dot_half<const BF16: bool>(row: &[u8], x: &[f32]) -> f32 {
        let h: &[u16] = bytemuck::cast_slice(row);
        let n = h.len().min(x.len());
        let mut acc = [_mm256_setzero_ps(); 4];
        let whole = n / 32 * 32;
        for c in (0..whole).step_by(32) {
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: c + 8j + 8 <= whole <= n.
                let (wv, xv) = unsafe { (widen::<BF16>(h.as_ptr().add(c + 8 * j)), _mm256_loadu_ps(x.as_ptr().add(c + 8 * j))) };
                *a = _mm256_fmadd_ps(wv, xv, *a);
            }
        }
        let total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let value = |v: u16| if BF16 { f32::from_bits(u32::from(v) << 16) } else { super::f16_to_f32(v) };
        sum(total) + h[whole..n].iter().zip(&x[whole..n]).map(|(&a, b)| value(a) * b).sum::<f32>()
    }
}

/// Row `r` of `w` as f32 values into `out` (`w.cols` long, or the whole blocks' values).
#[inline(always)]
fn decode_row(w: &CpuMatrix, r: usize, out: &mut [f32]) {
    let row = w.row(r);
    let row = &row[..];
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

/// The f32 multi-token product: each group of [`GEMM_ROWS`] rows is decoded to f32 once,
/// then multiplied by every token, [`GEMM_TOKENS`] at a time: the decoding no longer repeats
/// per token, and each loaded value feeds several products.
#[inline(always)]
fn gemm_generic(w: &CpuMatrix, x: &[f32], m: usize, rows: std::ops::Range<usize>, out: Out) {
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
                unsafe { out.rows(t0 + j, r0, nr) }.copy_from_slice(&row_sums[..nr]);
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

/// Where a multi-token product writes: token t's rows at `ptr[t * stride + offset..]`.
#[derive(Clone, Copy)]
struct Out {
    ptr: SharedOut,
    stride: usize,
    offset: usize,
}

impl Out {
    /// Token t's outputs for rows `r..r + len`.
    ///
    /// # Safety
    /// In bounds of the caller's output (`matvec_into` asserts its shape), and no other task
    /// writes these rows.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows(&self, t: usize, r: usize, len: usize) -> &mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.ptr.get().add(t * self.stride + self.offset + r), len) }
    }
}

/// A row of blocks decoded to integers once ([`decode_block_int`]) for a multi-token product:
/// its values (whole blocks) and per 16 of them a scale and an offset.
struct IntRow {
    q: Vec<i8>,
    scale: Vec<f32>,
    min: Vec<f32>,
}

impl IntRow {
    fn new(t: BlockType, cols: usize) -> IntRow {
        let n = cols.div_ceil(t.block_values()) * t.block_values();
        IntRow { q: vec![0; n], scale: vec![0.0; n / 16], min: vec![0.0; n / 16] }
    }

    #[inline(always)]
    fn decode(&mut self, t: BlockType, row: &[u8]) {
        let (values, mut blk) = (t.block_values(), IntBlock::new());
        for (b, block) in row.chunks_exact(t.block_bytes()).enumerate() {
            decode_block_int(t, block, &mut blk);
            self.q[b * values..][..values].copy_from_slice(&blk.q[..values]);
            self.scale[b * values / 16..][..values / 16].copy_from_slice(&blk.scale[..values / 16]);
            self.min[b * values / 16..][..values / 16].copy_from_slice(&blk.min[..values / 16]);
        }
    }

    /// This row · quantized activations, summed as [`dot_int`]'s portable loop sums: per block
    /// its offsets, per 16 values an integer dot product times both scales.
    #[inline(always)]
    fn dot(&self, t: BlockType, a: &QuantizedActivations) -> f32 {
        let values = t.block_values();
        let (mut acc, mut offsets) = (0f32, 0f32);
        for b in 0..self.q.len() / values {
            let groups = b * values / 16..(b + 1) * values / 16;
            if has_min(t) {
                offsets += self.min[groups.clone()].iter().zip(&a.sums[groups.clone()]).map(|(m, s)| m * s).sum::<f32>();
            }
            for g in groups {
                let s: i32 = self.q[g * 16..][..16].iter().zip(&a.q[g * 16..][..16]).map(|(&w, &v)| i32::from(i16::from(w) * i16::from(v))).sum();
                acc += self.scale[g] * a.d[g / 2] * s as f32;
            }
        }
        acc + offsets
    }
}

/// The integer multi-token product, plain: each row decoded to integers once, then multiplied
/// by every token's quantized activations.
#[inline(always)]
fn gemm_int_generic(w: &CpuMatrix, acts: &[QuantizedActivations], rows: std::ops::Range<usize>, out: Out) {
    let WeightDType::Block(t) = w.dtype else { unreachable!("the integer path takes rows of blocks") };
    specialised!(t, gemm_int_rows(w, acts, rows, out))
}

#[inline(always)]
fn gemm_int_rows(t: BlockType, w: &CpuMatrix, acts: &[QuantizedActivations], rows: std::ops::Range<usize>, out: Out) {
    let mut row = IntRow::new(t, w.cols);
    for r in rows {
        row.decode(t, &w.row(r));
        for (i, a) in acts.iter().enumerate() {
            // SAFETY: each task writes its own rows of each token's output, disjoint.
            let y = unsafe { out.rows(i, r, 1) };
            y[0] = row.dot(t, a);
        }
    }
}

/// Rows per group of the x86-64 integer GEMM: one 32-bit lane each.
const GEMM_INT_ROWS: usize = 8;

/// Whether `kernel` reads matrices of `dtype` with `rows` rows interleaved ([`interleave_rows`]):
/// Q4_0 and Q4_K in whole groups of eight, on x86-64.
pub fn interleaves(dtype: WeightDType, rows: usize, kernel: Kernel) -> bool {
    matches!(dtype, WeightDType::Block(BlockType::Q4_0 | BlockType::Q4_K)) && rows.is_multiple_of(8) && cfg!(target_arch = "x86_64") && kernel != Kernel::Portable
}

/// Where byte pair `pair` of row `i`'s block lands in its group's interleaved block (eight
/// blocks' bytes, reordered), for the kernels `avx2::dot_q4_0_x8` and `avx2::dot_q4_k_x8`:
/// - Q4_0 (18 bytes): the eight rows' f16 scales (16 bytes), then four times 32 bytes, each
///   holding 4 bytes of every row's nibbles (bytes 4k..4k + 4 of row i at 4i);
/// - Q4_K (144 bytes): the eight d (16 bytes), the eight dmin (16), the packed 6-bit scales as
///   three words of each row (word k of row i at 32 + 32k + 4i), then per 32 bytes of nibbles
///   (chunk c), eight times 32 bytes holding 4 bytes of every row (bytes 32c + 4k..32c + 4k + 4
///   of row i at 4i).
fn interleaved_at(t: BlockType, i: usize, pair: usize) -> usize {
    let j = 2 * pair;
    match t {
        BlockType::Q4_0 => match j {
            0 => 2 * i,
            _ => 16 + 32 * ((j - 2) / 4) + 4 * i + (j - 2) % 4,
        },
        _ => match j {
            0 => 2 * i,
            2 => 16 + 2 * i,
            4..16 => 32 + 32 * ((j - 4) / 4) + 4 * i + (j - 4) % 4,
            _ => 128 + 32 * ((j - 16) / 4) + 4 * i + (j - 16) % 4,
        },
    }
}

/// [`interleaved_at`] for every row and byte pair of a block of `t`: row i's pair p at
/// `[i * block_bytes / 2 + p]`.
fn interleave_table(t: BlockType) -> Vec<usize> {
    (0..8).flat_map(|i| (0..t.block_bytes() / 2).map(move |p| interleaved_at(t, i, p))).collect()
}

/// Rows of `t` (`row_bytes` each, a whole number of groups of eight) interleaved per group and
/// block ([`interleaved_at`]): the same bytes as the rows, reordered.
pub fn interleave_rows(t: BlockType, data: &[u8], row_bytes: usize) -> Vec<u8> {
    let (bytes, at) = (t.block_bytes(), interleave_table(t));
    let mut out = vec![0u8; data.len()];
    for (group, dst) in data.chunks_exact(8 * row_bytes).zip(out.chunks_exact_mut(8 * row_bytes)) {
        for (b, block) in dst.chunks_exact_mut(8 * bytes).enumerate() {
            for i in 0..8 {
                let src = &group[i * row_bytes + b * bytes..][..bytes];
                for (pair, &to) in src.chunks_exact(2).zip(&at[i * bytes / 2..(i + 1) * bytes / 2]) {
                    block[to..to + 2].copy_from_slice(pair);
                }
            }
        }
    }
    out
}

/// An interleaved group's eight rows ([`interleave_rows`]) as the file stores them, into `out`
/// (`8 * row_bytes`), through `at` ([`interleave_table`]).
fn deinterleave_group(t: BlockType, group: &[u8], row_bytes: usize, at: &[usize], out: &mut [u8]) {
    let bytes = t.block_bytes();
    for (b, block) in group.chunks_exact(8 * bytes).enumerate() {
        for i in 0..8 {
            let dst = &mut out[i * row_bytes + b * bytes..][..bytes];
            for (pair, &from) in dst.chunks_exact_mut(2).zip(&at[i * bytes / 2..(i + 1) * bytes / 2]) {
                pair.copy_from_slice(&block[from..from + 2]);
            }
        }
    }
}

/// Row `i` of an interleaved group ([`interleave_rows`]) as the file stores it.
pub fn interleaved_row(t: BlockType, group: &[u8], i: usize, row_bytes: usize) -> Vec<u8> {
    let mut rows = vec![0u8; 8 * row_bytes];
    deinterleave_group(t, group, row_bytes, &interleave_table(t), &mut rows);
    rows[i * row_bytes..(i + 1) * row_bytes].to_vec()
}

/// f64 reference of the integer paths: the row's values · the activations as quantized.
pub fn reference_q8(w_values: &[f32], x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let xq = QuantizedActivations::new(x).values();
    crate::ops::matvec::reference(&xq, w_values, 1, rows, cols)
}

/// Every weight type, at shapes that cut 32- and 256-value blocks and the 64-value widening
/// chunks, rows not a multiple of the task size or of the integer GEMM's row groups, token counts
/// not a multiple of its tiles; every kernel this CPU runs (natively; in a browser, the wasm32
/// SIMD build), both activation modes: each token alone (the row loops), all of them at once
/// (the multi-token products), and through a pool, against the f64 reference on the values each
/// path computes with.
pub fn check(seed: u64) -> Result<(), crate::ops::check::Mismatch> {
    use crate::ops::check::{compare, tolerance, DType, Rng};
    let mut rng = Rng::new(seed);
    let pool = Pool::new(3);
    for &(m, rows, cols) in &[(1usize, 1usize, 1usize), (1, 3, 17), (2, 37, 70), (1, 255, 257), (3, 100, 512), (1, 9, 96), (2, 513, 160), (5, 19, 288), (1, 64, 288), (3, 40, 96)] {
        for dtype in WeightDType::ALL {
            let (stored, values) = CpuMatrix::random(&mut rng, dtype, rows, cols);
            let x = rng.normals(m * cols, 1.0 / (cols as f32).sqrt());
            for (kernel, mode) in Kernel::available().into_iter().flat_map(|k| [(k, Activations::F32), (k, Activations::Int8)]) {
                // The matrix as the device loads it for this kernel (some rows interleaved).
                let w = CpuMatrix::from_bytes(dtype, rows, cols, stored.data.clone()).expect("the same shape").for_kernel(kernel);
                let quantized = quantizes_activations(dtype, mode);
                let want: Vec<f32> = (0..m)
                    .flat_map(|t| {
                        let xt = &x[t * cols..(t + 1) * cols];
                        match quantized {
                            true => reference_q8(&values, xt, rows, cols),
                            false => crate::ops::matvec::reference(xt, &values, 1, rows, cols),
                        }
                    })
                    .collect();
                let acts = quantized.then(|| QuantizedTokens::new(&pool, &x, m, cols, kernel));
                let what = format!("cpu matvec {} {}{} {mode:?} {m}x{rows}x{cols}", kernel.name(), dtype.name(), if w.interleaved { " (interleaved)" } else { "" });
                let mut y = vec![f32::NAN; m * rows];
                for t in 0..m {
                    kernel.rows(&w, &x[t * cols..(t + 1) * cols], acts.as_ref().map(|a| &a.tokens[t]), 0..rows, &mut y[t * rows..(t + 1) * rows]);
                }
                compare(&what, seed, &y, &want, tolerance(DType::F32))?;
                if m > 1 {
                    let mut all = vec![f32::NAN; m * rows];
                    kernel.gemm(&w, &x, acts.as_ref(), m, 0..rows, SharedOut(all.as_mut_ptr()), rows, 0);
                    compare(&format!("{what} (all tokens at once)"), seed, &all, &want, tolerance(DType::F32))?;
                }
                let mut pooled = vec![f32::NAN; m * rows];
                matvec_into(&pool, &w, &x, m, &mut pooled, rows, 0, mode);
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
        for t in BlockType::ALL {
            let dtype = WeightDType::Block(t);
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
