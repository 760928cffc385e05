//! Shared pieces of the kernel checks: a seeded random generator, the tolerance table, and a
//! comparison that reports max abs error, mean error and the worst index.
//!
//! The checks are library code (not `cfg(test)`) so the same checks run natively under
//! `cargo test` and in the browser under `wasm-bindgen-test`.

use std::fmt;

/// Numeric type a result was computed in; each has one tolerance (see [`tolerance`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
}

/// `|got - want| <= abs + rel * |want|` passes.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub abs: f32,
    pub rel: f32,
}

/// The one tolerance table. f32: results of f32 kernels against f64 references; the error is
/// accumulation order over at most a few thousand terms of O(1) values (~1e-6 relative), so
/// 1e-4 leaves room without hiding indexing bugs (those give O(1) errors). f16: results that
/// went through f16 storage or arithmetic (11-bit mantissa, ~5e-4 relative per rounding).
pub fn tolerance(dtype: DType) -> Tolerance {
    match dtype {
        DType::F32 => Tolerance { abs: 1e-4, rel: 1e-4 },
        DType::F16 => Tolerance { abs: 4e-3, rel: 4e-3 },
    }
}

/// Whole-model logits against transformers (both in f32): rounding differences compound over
/// layers and differ in summation order (cuBLAS/MKL vs our kernels), so allow 1e-3; a wrong
/// op gives errors of O(1).
pub const MODEL_TOLERANCE: Tolerance = Tolerance { abs: 1e-3, rel: 1e-3 };

/// Whole-model logits with the f16 KV cache (the default) against transformers' f32 cache:
/// every cached key and value is rounded to 11 bits (2^-12 relative) in every layer. On the
/// golden fixtures (logit std ~1.5) that moves logits by at most 1.5e-2, mean ~1.5e-3; allow
/// 3e-2 + 1e-2 relative. Greedy choices must still be identical.
pub const KV16_MODEL_TOLERANCE: Tolerance = Tolerance { abs: 3e-2, rel: 1e-2 };

/// How far a model's logits may drift from f32 arithmetic's, per position of a prefill or per
/// step of a teacher-forced decode: the rms difference over the reference's logit standard
/// deviation (median and largest over the positions). A position may pick another greedy id
/// only where the reference's margin for its own pick is within `flip_margin` times that
/// position's rms difference: a near-tie that rounding decides, not a wrong result.
#[derive(Clone, Copy, Debug)]
pub struct DriftBudget {
    pub median: f32,
    pub max: f32,
    pub flip_margin: f32,
}

/// The CPU device on the golden fixtures' quantized files: it quantizes activations to 8 bits
/// per 32 values on rows of ggml blocks (decode and prefill), as llama.cpp's CPU backend does
/// (per 256 for the K types), so logits move about as much as Q8_0 weights move them (measured
/// on the fixtures: rms/std median 0.015-0.05; Q8_0 weights: 0.03-0.05). The fixtures are
/// random models (weights of std 0.2 on the K-quant ones) whose attention amplifies rounding:
/// single positions reached 0.23, and greedy picks flipped where the margin was up to 3 times
/// the position's rms difference (up to 5 of 32 positions on the mixed-type fixture).
pub const INT8_BUDGET: DriftBudget = DriftBudget { median: 0.06, max: 0.3, flip_margin: 5.0 };


/// The whole-model tolerance for a KV cache of `dtype`.
pub fn model_tolerance(kv: crate::ops::attention::KvDType) -> Tolerance {
    match kv {
        crate::ops::attention::KvDType::F32 => MODEL_TOLERANCE,
        crate::ops::attention::KvDType::F16 => KV16_MODEL_TOLERANCE,
    }
}

/// A failed comparison, with what a person needs to debug it.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub what: String,
    pub seed: u64,
    pub len: usize,
    pub bad: usize,
    pub max_abs: f32,
    pub mean_abs: f32,
    pub worst: usize,
    pub got: f32,
    pub want: f32,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} of {} values outside tolerance; max abs error {:.3e}, mean abs error {:.3e}, \
             worst at index {} (got {}, want {}); seed {} (rerun with CRIA_TEST_SEED={})",
            self.what, self.bad, self.len, self.max_abs, self.mean_abs, self.worst, self.got, self.want, self.seed, self.seed
        )
    }
}

/// Compares `got` with `want` element by element under `tol`.
pub fn compare(what: &str, seed: u64, got: &[f32], want: &[f32], tol: Tolerance) -> Result<(), Mismatch> {
    let mismatch = |bad, max_abs, mean_abs, worst: usize| Mismatch {
        what: what.to_string(),
        seed,
        len: want.len(),
        bad,
        max_abs,
        mean_abs,
        worst,
        got: got.get(worst).copied().unwrap_or(f32::NAN),
        want: want.get(worst).copied().unwrap_or(f32::NAN),
    };
    if got.len() != want.len() {
        return Err(Mismatch { what: format!("{what} (length {} vs {})", got.len(), want.len()), ..mismatch(want.len(), f32::INFINITY, f32::INFINITY, 0) });
    }
    let (mut bad, mut max_abs, mut sum, mut worst, mut worst_excess) = (0, 0f32, 0f64, 0, f32::NEG_INFINITY);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let allowed = tol.abs + tol.rel * w.abs();
        // NaN anywhere is a failure, and a NaN error must win the "worst" slot.
        let excess = if err.is_nan() { f32::INFINITY } else { err - allowed };
        if err.is_nan() || err > allowed {
            bad += 1;
        }
        if excess > worst_excess {
            worst_excess = excess;
            worst = i;
        }
        max_abs = if err.is_nan() { f32::NAN } else { max_abs.max(err) };
        sum += f64::from(err);
    }
    if bad > 0 {
        return Err(mismatch(bad, max_abs, (sum / want.len().max(1) as f64) as f32, worst));
    }
    Ok(())
}

/// Compares integers exactly (argmax, token ids, copied words).
pub fn compare_exact(what: &str, seed: u64, got: &[u32], want: &[u32]) -> Result<(), Mismatch> {
    let bad: Vec<usize> = (0..want.len().max(got.len())).filter(|&i| got.get(i) != want.get(i)).collect();
    match bad.first() {
        None => Ok(()),
        Some(&worst) => Err(Mismatch {
            what: what.to_string(),
            seed,
            len: want.len(),
            bad: bad.len(),
            max_abs: f32::NAN,
            mean_abs: f32::NAN,
            worst,
            got: got.get(worst).map_or(f32::NAN, |&v| v as f32),
            want: want.get(worst).map_or(f32::NAN, |&v| v as f32),
        }),
    }
}

/// Seed for a check: `CRIA_TEST_SEED` if set, otherwise fresh from the clock, so every run
/// tries new inputs and a failure prints the seed that reproduces it.
pub fn seed() -> u64 {
    if let Some(s) = option_env_seed() {
        return s;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::time::{SystemTime, UNIX_EPOCH};
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        (t as u64) ^ ((t >> 64) as u64)
    }
    #[cfg(target_arch = "wasm32")]
    {
        (js_sys::Date::now() * 1000.0) as u64
    }
}

fn option_env_seed() -> Option<u64> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::env::var("CRIA_TEST_SEED").ok().and_then(|s| s.parse().ok())
    }
    #[cfg(target_arch = "wasm32")]
    {
        None
    }
}

pub use crate::rng::Rng;

/// Why a check failed: wrong numbers, or the GPU path returned an error.
#[derive(Debug)]
pub enum CheckFailure {
    Mismatch(Mismatch),
    Gpu(crate::Error),
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Mismatch(m) => m.fmt(f),
            CheckFailure::Gpu(e) => write!(f, "GPU error: {e}"),
        }
    }
}

impl From<Mismatch> for CheckFailure {
    fn from(m: Mismatch) -> Self {
        CheckFailure::Mismatch(m)
    }
}

impl From<crate::Error> for CheckFailure {
    fn from(e: crate::Error) -> Self {
        CheckFailure::Gpu(e)
    }
}
