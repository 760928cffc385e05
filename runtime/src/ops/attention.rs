//! Causal grouped-query attention over a KV cache: a prefill kernel (many queries, causal
//! mask) and a split-K decode kernel (one query, keys spread over workgroups, then combined).
//! q [n, n_heads, head_dim] f32; a [`KvCache`]: K and V [positions, n_kv_heads, head_dim] in
//! f16 (the default: half the memory and half the reads of f32, as llama.cpp's default cache;
//! native `f16` storage where the device has shader-f16, packed u32 pairs elsewhere) or f32.
//! Reference: HF `modeling_llama.eager_attention_forward` with `repeat_kv` and a causal mask.

use super::check::{compare, tolerance, CheckFailure, DType, Rng};
use super::{grid, need};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Prelude, Recorder, Variant};

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvDType {
    #[default]
    F16,
    F32,
}

impl KvDType {
    pub const ALL: [KvDType; 2] = [KvDType::F16, KvDType::F32];

    /// Bytes per cached value.
    pub fn bytes(self) -> usize {
        match self {
            KvDType::F16 => 2,
            KvDType::F32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvDType::F16 => "f16",
            KvDType::F32 => "f32",
        }
    }

    /// Parses a name as the CLI spells it: f16, f32.
    pub fn parse(name: &str) -> Result<KvDType> {
        let lower = name.to_ascii_lowercase();
        Self::ALL.into_iter().find(|t| t.name() == lower).ok_or_else(|| Error::Unsupported {
            what: format!("KV cache type `{name}`"),
            hint: "choose f16 (the default) or f32".into(),
        })
    }

    /// The shader prelude that reads and writes this cache on `gpu`.
    pub fn prelude(self, gpu: &Gpu) -> Prelude {
        match self {
            KvDType::F16 if gpu.features.shader_f16 => Prelude::F16Native,
            KvDType::F16 => Prelude::F16Packed,
            KvDType::F32 => Prelude::F32,
        }
    }

    /// `values` as the cache holds them (CPU reference input).
    pub fn round(self, values: &[f32]) -> Vec<f32> {
        match self {
            KvDType::F16 => values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
            KvDType::F32 => values.to_vec(),
        }
    }
}

/// One layer's KV cache: K and V [positions, n_kv_heads, head_dim] of `dtype`.
#[derive(Debug)]
pub struct KvCache {
    pub k: GpuBuffer,
    pub v: GpuBuffer,
    pub dtype: KvDType,
}

impl KvCache {
    /// A zeroed cache for `positions` tokens.
    pub fn new(gpu: &Gpu, label: &str, heads: Heads, positions: usize, dtype: KvDType) -> Result<KvCache> {
        let bytes = heads.cache_bytes(positions, dtype);
        Ok(KvCache { k: GpuBuffer::zeroed(gpu, &format!("{label} k"), bytes)?, v: GpuBuffer::zeroed(gpu, &format!("{label} v"), bytes)?, dtype })
    }

    /// A cache holding `k` and `v` (rounded to `dtype`).
    pub fn from_values(gpu: &Gpu, k: &[f32], v: &[f32], dtype: KvDType) -> Result<KvCache> {
        let upload = |label: &str, values: &[f32]| match dtype {
            KvDType::F16 => GpuBuffer::from_halves(gpu, label, values),
            KvDType::F32 => GpuBuffer::from_slice(gpu, label, values),
        };
        Ok(KvCache { k: upload("k cache", k)?, v: upload("v cache", v)?, dtype })
    }

    /// (K, V) as f32 values.
    pub async fn read(&self, gpu: &Gpu) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok(match self.dtype {
            KvDType::F16 => (self.k.read_halves(gpu).await?, self.v.read_halves(gpu).await?),
            KvDType::F32 => (self.k.read_f32(gpu).await?, self.v.read_f32(gpu).await?),
        })
    }

    /// Checks the cache holds `positions` tokens of `heads`.
    pub(crate) fn need(&self, op: &'static str, heads: Heads, positions: usize) -> Result<()> {
        let want = heads.cache_bytes(positions, self.dtype);
        for (what, buf) in [("k cache", &self.k), ("v cache", &self.v)] {
            if buf.len < want {
                return Err(Error::shape(op, format!("{what} bytes ({positions} positions, {})", self.dtype.name()), format!(">= {want}"), buf.len));
            }
        }
        Ok(())
    }
}

/// Largest head_dim the kernels hold per workgroup (WG 64 x MAXD 4).
pub const MAX_HEAD_DIM: usize = 256;
/// Keys per decode split: long enough to amortise the combine, short enough that a 2k cache
/// spreads over 8 workgroups per head.
pub const DECODE_CHUNK: usize = 256;

const SOURCE: &str = include_str!("../../../shaders/attention.wgsl");
const BINDINGS: &[Binding] = &[Binding::ReadOnly, Binding::ReadOnly, Binding::ReadOnly, Binding::ReadWrite];

fn spec(entry: &'static str) -> KernelSpec {
    KernelSpec { name: entry, source: SOURCE, entry, bindings: BINDINGS }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    start_pos: u32,
    n_keys: u32,
    chunk: u32,
    n_splits: u32,
    scale: f32,
    window: u32,
    first_key: u32,
}

/// How a layer's queries score the keys: the scale of q·k, and for a sliding-window layer how
/// many of the latest keys each query sees (itself included).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    pub scale: f32,
    pub window: Option<usize>,
}

impl Scores {
    /// Every earlier key, scaled by 1/sqrt(head_dim) (Llama, Qwen): formed in f64 and rounded
    /// once, as transformers' `head_dim**-0.5` is.
    pub fn causal(head_dim: usize) -> Scores {
        Scores { scale: (head_dim as f64).powf(-0.5) as f32, window: None }
    }

    /// The first key a query that sees keys `..end` attends to.
    pub fn first_key(&self, end: usize) -> usize {
        self.window.map_or(0, |w| end.saturating_sub(w))
    }
}

/// Head layout of one attention layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl Heads {
    pub fn validate(&self) -> Result<()> {
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(Error::shape("attention", "num_attention_heads / num_key_value_heads", "a whole number", format!("{} / {}", self.n_heads, self.n_kv_heads)));
        }
        if self.head_dim == 0 || self.head_dim > MAX_HEAD_DIM || !self.head_dim.is_multiple_of(2) {
            return Err(Error::Unsupported { what: format!("head_dim {}", self.head_dim), hint: format!("attention kernels support even head_dim 2..={MAX_HEAD_DIM}") });
        }
        Ok(())
    }
    /// Bytes of one layer's K (or V) cache for `positions` tokens.
    pub fn cache_bytes(&self, positions: usize, dtype: KvDType) -> u64 {
        // In u64: a huge requested context must not overflow wasm32's usize before the check.
        positions as u64 * (self.n_kv_heads * self.head_dim * dtype.bytes()) as u64
    }

    fn params(&self, scores: Scores, n_tokens: usize, start_pos: usize, n_keys: usize, n_splits: usize) -> Params {
        Params {
            n_tokens: n_tokens as u32,
            n_heads: self.n_heads as u32,
            n_kv_heads: self.n_kv_heads as u32,
            head_dim: self.head_dim as u32,
            start_pos: start_pos as u32,
            n_keys: n_keys as u32,
            chunk: DECODE_CHUNK as u32,
            n_splits: n_splits as u32,
            scale: scores.scale,
            // A window of 0 keys would see nothing: the config refuses it; 1 at least here.
            window: scores.window.map_or(0, |w| w.max(1) as u32),
            first_key: scores.first_key(n_keys) as u32,
        }
    }
}

/// Prefill: `n_tokens` queries at positions `start_pos..`, whose keys and values are already in
/// the caches (positions `0..start_pos + n_tokens`). `out` [n_tokens, n_heads, head_dim].
#[allow(clippy::too_many_arguments)]
pub fn encode_prefill(
    rec: &mut Recorder<'_>,
    heads: Heads,
    scores: Scores,
    q: &GpuBuffer,
    cache: &KvCache,
    out: &GpuBuffer,
    n_tokens: usize,
    start_pos: usize,
) -> Result<()> {
    heads.validate()?;
    let n_keys = start_pos + n_tokens;
    need("attention", "q", q, n_tokens * heads.n_heads * heads.head_dim)?;
    cache.need("attention", heads, n_keys)?;
    need("attention", "out", out, n_tokens * heads.n_heads * heads.head_dim)?;
    let kernel = rec.gpu().kernel(&spec("attn_prefill"), &Variant::default().with_prelude(cache.dtype.prelude(rec.gpu())))?;
    let params = heads.params(scores, n_tokens, start_pos, n_keys, 1);
    rec.dispatch(&kernel, &params, &[q, &cache.k, &cache.v, out], grid(rec, (n_tokens * heads.n_heads) as u32))
}

/// Scratch for split decode, allocated once for the longest cache.
#[derive(Debug)]
pub struct DecodeScratch {
    pub partials: GpuBuffer,
    pub max_keys: usize,
}

impl DecodeScratch {
    /// Bytes [`DecodeScratch::new`] allocates.
    pub fn bytes(heads: Heads, max_keys: usize) -> u64 {
        let splits = max_keys.div_ceil(DECODE_CHUNK).max(1);
        splits as u64 * (heads.n_heads * (heads.head_dim + 2) * 4) as u64
    }

    pub fn new(gpu: &Gpu, heads: Heads, max_keys: usize) -> Result<DecodeScratch> {
        Ok(DecodeScratch { partials: GpuBuffer::zeroed(gpu, "attention partials", Self::bytes(heads, max_keys))?, max_keys })
    }
}

/// Decode: one query `q` [n_heads, head_dim] attending to keys `0..n_keys` of the caches (the
/// last `window` of them for a sliding-window layer: only those are read).
#[allow(clippy::too_many_arguments)]
pub fn encode_decode(
    rec: &mut Recorder<'_>,
    heads: Heads,
    scores: Scores,
    q: &GpuBuffer,
    cache: &KvCache,
    scratch: &DecodeScratch,
    out: &GpuBuffer,
    n_keys: usize,
) -> Result<()> {
    heads.validate()?;
    if n_keys == 0 || n_keys > scratch.max_keys {
        return Err(Error::shape("attention decode", "cached positions", format!("1..={}", scratch.max_keys), n_keys));
    }
    need("attention", "q", q, heads.n_heads * heads.head_dim)?;
    cache.need("attention", heads, n_keys)?;
    need("attention", "out", out, heads.n_heads * heads.head_dim)?;
    let n_splits = (n_keys - scores.first_key(n_keys)).div_ceil(DECODE_CHUNK);
    let params = heads.params(scores, 1, n_keys - 1, n_keys, n_splits);
    let variant = Variant::default().with_prelude(cache.dtype.prelude(rec.gpu()));
    let partial = rec.gpu().kernel(&spec("attn_decode_partial"), &variant)?;
    let combine = rec.gpu().kernel(&spec("attn_decode_combine"), &variant)?;
    rec.dispatch(&partial, &params, &[q, &cache.k, &cache.v, &scratch.partials], grid(rec, (heads.n_heads * n_splits) as u32))?;
    rec.dispatch(&combine, &params, &[&scratch.partials, &cache.k, &cache.v, out], [heads.n_heads as u32, 1, 1])
}

/// CPU reference in f64: queries at positions `start_pos..start_pos + n_tokens`, causal (and
/// windowed, with a window).
#[allow(clippy::too_many_arguments)]
pub fn reference(q: &[f32], k: &[f32], v: &[f32], heads: Heads, how: Scores, n_tokens: usize, start_pos: usize) -> Vec<f32> {
    let Heads { n_heads, n_kv_heads, head_dim: hd } = heads;
    let group = n_heads / n_kv_heads;
    let scale = f64::from(how.scale);
    let mut out = vec![0f32; n_tokens * n_heads * hd];
    for t in 0..n_tokens {
        let n_keys = start_pos + t + 1;
        // Keys before the window are masked: as if absent.
        let lo = match how.window {
            Some(w) if t + start_pos + 1 > w => t + start_pos + 1 - w,
            _ => 0,
        };
        for h in 0..n_heads {
            let kvh = h / group;
            let qv = &q[(t * n_heads + h) * hd..][..hd];
            let scores: Vec<f64> = (lo..n_keys)
                .map(|j| {
                    let kv = &k[(j * n_kv_heads + kvh) * hd..][..hd];
                    qv.iter().zip(kv).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() * scale
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for d in 0..hd {
                let acc: f64 = (lo..n_keys).map(|j| weights[j - lo] * f64::from(v[(j * n_kv_heads + kvh) * hd + d])).sum();
                out[(t * n_heads + h) * hd + d] = (acc / total) as f32;
            }
        }
    }
    out
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    // (n_tokens, start_pos, heads, kv heads, head_dim): GQA 1/4/8, head dims that are not a
    // multiple of 4 or of the workgroup, key counts that cut the 64-key blocks and the 256-key
    // decode chunks.
    // Each case also runs with a sliding window (shorter than the keys, not a multiple of the
    // 64-key blocks; for the long caches longer than a decode chunk, so the window's first key
    // falls inside a chunk) and a scale other than 1/sqrt(head_dim).
    let cases = [(1usize, 0usize, 1usize, 1usize, 2usize), (3, 0, 4, 1, 18), (17, 5, 8, 1, 64), (5, 250, 8, 2, 34), (2, 300, 4, 4, 128), (1, 600, 2, 2, 254), (9, 0, 32, 4, 8), (40, 700, 4, 1, 256)];
    let windows = [Some(1usize), Some(2), Some(7), Some(70), Some(290), Some(333), Some(3), Some(517)];
    for (&(n, start, h, kv, hd), &window) in cases.iter().zip(&windows) {
        let heads = Heads { n_heads: h, n_kv_heads: kv, head_dim: hd };
        for scores in [Scores::causal(hd), Scores { scale: rng.range(0.05, 0.5), window }] {
            check_case(gpu, seed, &mut rng, heads, scores, n, start).await?;
        }
    }
    Ok(())
}

async fn check_case(gpu: &Gpu, seed: u64, rng: &mut Rng, heads: Heads, scores: Scores, n: usize, start: usize) -> Result<(), CheckFailure> {
    let Heads { n_heads: h, n_kv_heads: kv, head_dim: hd } = heads;
    let how = match scores.window {
        Some(w) => format!("window {w} scale {}", scores.scale),
        None => "causal".to_string(),
    };
    let keys = start + n;
    let q = rng.normals(n * h * hd, 1.0);
    let k = rng.normals(keys * kv * hd, 1.0);
    let v = rng.normals(keys * kv * hd, 1.0);
    let qb = GpuBuffer::from_slice(gpu, "q", &q)?;
    let want_f32_cache = reference(&q, &k, &v, heads, scores, n, start);
    for dtype in KvDType::ALL {
        let cache = KvCache::from_values(gpu, &k, &v, dtype)?;
        let out = GpuBuffer::zeroed(gpu, "out", (n * h * hd * 4) as u64)?;
        let mut rec = Recorder::new(gpu, 8);
        encode_prefill(&mut rec, heads, scores, &qb, &cache, &out, n, start)?;
        rec.submit()?;
        // Against the f64 reference on the values the cache holds: only the kernel's own
        // f32 arithmetic differs.
        let want = reference(&q, &dtype.round(&k), &dtype.round(&v), heads, scores, n, start);
        let what = format!("attn_prefill n {n} start {start} heads {h}/{kv} head_dim {hd} {} cache, {how}", dtype.name());
        let got = out.read_f32(gpu).await?;
        compare(&what, seed, &got, &want, tolerance(DType::F32))?;
        // And against the reference on the f32 values: what a 16-bit cache costs stays
        // within f16's tolerance (4e-3 abs + rel).
        compare(&format!("{what} vs an f32 cache"), seed, &got, &want_f32_cache, tolerance(DType::F16))?;

        // Decode of the last query against every key, through the split kernels; then with
        // every key and value before the window NaN: decode must not read them.
        let q_last = &q[(n - 1) * h * hd..];
        let qlb = GpuBuffer::from_slice(gpu, "q last", q_last)?;
        let scratch = DecodeScratch::new(gpu, heads, keys + 100)?;
        let first = scores.first_key(keys) * kv * hd;
        let poison = |x: &[f32]| -> Vec<f32> { x.iter().enumerate().map(|(i, &v)| if i < first { f32::NAN } else { v }).collect() };
        let poisoned = KvCache::from_values(gpu, &poison(&k), &poison(&v), dtype)?;
        for (cache, what) in [(&cache, ""), (&poisoned, ", keys before the window NaN")] {
            let out1 = GpuBuffer::zeroed(gpu, "out decode", (h * hd * 4) as u64)?;
            encode_decode(&mut rec, heads, scores, &qlb, cache, &scratch, &out1, keys)?;
            rec.submit()?;
            let what = format!("attn_decode keys {keys} heads {h}/{kv} head_dim {hd} {} cache, {how}{what}", dtype.name());
            compare(&what, seed, &out1.read_f32(gpu).await?, &want[(n - 1) * h * hd..], tolerance(DType::F32))?;
        }
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::testing::{gpu, run};
    use super::*;

    #[test]
    fn matches_cpu_reference() {
        run(gpu(), check);
    }

    /// The floor path: the cache as u32 words unpacked by unpack2x16float.
    #[test]
    fn matches_cpu_reference_without_shader_f16() {
        run(super::super::testing::floor_gpu(), check);
    }

    #[test]
    fn heads_that_do_not_divide_are_a_typed_error() {
        let err = Heads { n_heads: 6, n_kv_heads: 4, head_dim: 8 }.validate().unwrap_err();
        assert!(err.to_string().contains("num_key_value_heads"), "{err}");
        for head_dim in [512, 17] {
            let err = Heads { n_heads: 4, n_kv_heads: 4, head_dim }.validate().unwrap_err();
            assert!(matches!(err, Error::Unsupported { .. }) && err.to_string().contains("even head_dim"), "{err}");
        }
    }
}
