//! Rotary position embedding (HF `rotate_half` convention) fused with the KV-cache append: from
//! the fused projection qkv [n, q_dim + 2 kv_dim], rotated q goes to q [n, n_heads, head_dim],
//! rotated k and plain v to rows start_pos.. of a [`KvCache`] [context, n_kv_heads, head_dim]
//! (f16 or f32).
//! One pass instead of rope, two copies and three separate projections' outputs.
//! Reference: HF `modeling_llama.apply_rotary_pos_emb` / `LlamaRotaryEmbedding`.

use super::check::{compare, tolerance, CheckFailure, DType, Rng};
use super::attention::{Heads, KvCache, KvDType};
use super::{grid, need};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder, Variant};

const WG: u32 = 256;
const SPEC: KernelSpec = KernelSpec {
    name: "rope_append",
    source: include_str!("../../../shaders/rope.wgsl"),
    entry: "rope_append",
    bindings: &[Binding::ReadOnly, Binding::ReadWrite, Binding::ReadWrite, Binding::ReadWrite, Binding::ReadOnly, Binding::ReadOnly, Binding::ReadOnly],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    start_pos: u32,
    eps: f32,
}

/// HF's default inverse frequencies: `1 / theta^(2i / head_dim)` for i < head_dim / 2.
/// Scaled variants (linear, llama3) transform this vector; see the model config.
pub fn default_inv_freq(head_dim: usize, theta: f64) -> Vec<f32> {
    (0..head_dim / 2).map(|i| (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32).collect()
}

/// Host-computed (cos, sin) of `pos * inv_freq[i]` for every position below `max_pos`, on the GPU.
#[derive(Debug)]
pub struct RopeTable {
    pub buffer: GpuBuffer,
    pub max_pos: usize,
    pub head_dim: usize,
}

impl RopeTable {
    /// Bytes [`RopeTable::new`] allocates.
    pub fn bytes(head_dim: usize, max_pos: usize) -> u64 {
        max_pos as u64 * (head_dim / 2 * 2 * 4) as u64
    }

    pub fn new(gpu: &Gpu, inv_freq: &[f32], max_pos: usize) -> Result<RopeTable> {
        let table = cos_sin(inv_freq, max_pos);
        Ok(RopeTable { buffer: GpuBuffer::from_slice(gpu, "rope cos/sin", &table)?, max_pos, head_dim: inv_freq.len() * 2 })
    }
}

/// [(cos, sin); max_pos * half] interleaved. The angle is formed in f32 as HF does
/// (`inv_freq.float() @ position_ids.float()`), then cos/sin are taken in f64.
pub fn cos_sin(inv_freq: &[f32], max_pos: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(max_pos * inv_freq.len() * 2);
    for pos in 0..max_pos {
        for &f in inv_freq {
            let angle = f64::from(pos as f32 * f);
            out.push(angle.cos() as f32);
            out.push(angle.sin() as f32);
        }
    }
    out
}

/// Where [`encode`] reads and writes: the fused projection, and the outputs; and what a family
/// applies to the projection first.
pub struct RopeIo<'a> {
    pub qkv: &'a GpuBuffer,
    pub q: &'a GpuBuffer,
    pub cache: &'a KvCache,
    /// The q, k and v projections' biases, [q_dim + 2 kv_dim] (Qwen2).
    pub bias: Option<&'a GpuBuffer>,
    /// RMSNorm of each q and k head: weights [2 head_dim] (q's, then k's) and epsilon (Qwen3).
    pub qk_norm: Option<(&'a GpuBuffer, f32)>,
}

/// Rotates q and k of `n_tokens` tokens (token t at position `start_pos + t`) and appends k and
/// v to the caches.
pub fn encode(rec: &mut Recorder<'_>, io: &RopeIo<'_>, table: &RopeTable, n_tokens: usize, n_heads: usize, n_kv_heads: usize, start_pos: usize) -> Result<()> {
    let head_dim = table.head_dim;
    if !head_dim.is_multiple_of(2) {
        return Err(Error::shape("rope", "head_dim", "an even number (RoPE rotates halves)", head_dim));
    }
    if start_pos + n_tokens > table.max_pos {
        return Err(Error::shape("rope", "last position", format!("< {} (max_position_embeddings)", table.max_pos), start_pos + n_tokens - 1));
    }
    let (q_dim, kv_dim) = (n_heads * head_dim, n_kv_heads * head_dim);
    need("rope", "qkv", io.qkv, n_tokens * (q_dim + 2 * kv_dim))?;
    need("rope", "q", io.q, n_tokens * q_dim)?;
    io.cache.need("rope", Heads { n_heads, n_kv_heads, head_dim }, start_pos + n_tokens)?;
    if let Some(b) = io.bias {
        need("rope", "bias", b, q_dim + 2 * kv_dim)?;
    }
    if let Some((w, _)) = io.qk_norm {
        need("rope", "qk_norm", w, 2 * head_dim)?;
    }
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    let constants = [("WG", WG as f64), ("BIAS", flag(io.bias.is_some())), ("QK_NORM", flag(io.qk_norm.is_some()))];
    let kernel = rec.gpu().kernel(&SPEC, &Variant::constants(&constants).with_prelude(io.cache.dtype.prelude(rec.gpu())))?;
    let params = Params {
        n_tokens: n_tokens as u32,
        n_heads: n_heads as u32,
        n_kv_heads: n_kv_heads as u32,
        head_dim: head_dim as u32,
        start_pos: start_pos as u32,
        eps: io.qk_norm.map_or(0.0, |n| n.1),
    };
    let threads = (n_tokens * (n_heads * head_dim / 2 + kv_dim)) as u32;
    // Without a bias or norm weights their bindings hold qkv (read-only, never read).
    let (bias, norm) = (io.bias.unwrap_or(io.qkv), io.qk_norm.map_or(io.qkv, |n| n.0));
    rec.dispatch(&kernel, &params, &[io.qkv, io.q, &io.cache.k, &io.cache.v, &table.buffer, bias, norm], grid(rec, threads.div_ceil(WG)))
}

/// CPU reference on one tensor [n_tokens, heads, head_dim], in f64.
pub fn reference(x: &[f32], heads: usize, head_dim: usize, inv_freq: &[f32], start_pos: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = x.to_vec();
    for (t, token) in out.chunks_mut(heads * head_dim).enumerate() {
        let pos = (start_pos + t) as f32;
        for head in token.chunks_mut(head_dim) {
            for i in 0..half {
                let angle = f64::from(pos * inv_freq[i]);
                let (s, c) = angle.sin_cos();
                let (a, b) = (f64::from(head[i]), f64::from(head[i + half]));
                head[i] = (a * c - b * s) as f32;
                head[i + half] = (b * c + a * s) as f32;
            }
        }
    }
    out
}

/// CPU reference of what a family applies before RoPE, on rows of the fused projection
/// [n_tokens, q_dim + 2 kv_dim]: the biases added, then each q and k head RMS-normalized (f64)
/// and scaled by its weights (`norm`: q's head_dim weights, then k's).
pub fn reference_pre(qkv: &[f32], heads: usize, kv_heads: usize, head_dim: usize, bias: Option<&[f32]>, norm: Option<(&[f32], f32)>) -> Vec<f32> {
    let row = (heads + 2 * kv_heads) * head_dim;
    let mut out = qkv.to_vec();
    for token in out.chunks_mut(row) {
        if let Some(b) = bias {
            token.iter_mut().zip(b).for_each(|(x, b)| *x += b);
        }
        if let Some((w, eps)) = norm {
            for (h, head) in token[..(heads + kv_heads) * head_dim].chunks_mut(head_dim).enumerate() {
                let w = &w[if h < heads { 0 } else { head_dim }..][..head_dim];
                let ms = head.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / head_dim as f64;
                let inv = 1.0 / (ms + f64::from(eps)).sqrt();
                head.iter_mut().zip(w).for_each(|(x, &w)| *x = (f64::from(*x) * inv * f64::from(w)) as f32);
            }
        }
    }
    out
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    // (tokens, heads, kv heads, head_dim, start): GQA ratios 1, 4 and 8, long positions.
    let shapes = [(1usize, 1usize, 1usize, 2usize, 0usize), (3, 4, 1, 18, 5), (17, 8, 1, 64, 1000), (5, 8, 2, 6, 2041), (2, 32, 4, 64, 77)];
    for (case, &(n, h, kv, hd, start)) in shapes.iter().enumerate() {
        let theta = [10_000.0, 500_000.0][rng.below(2) as usize];
        let inv_freq = default_inv_freq(hd, theta);
        let table = RopeTable::new(gpu, &inv_freq, start + n + 1)?;
        let (q_dim, kv_dim) = (h * hd, kv * hd);
        let raw = rng.normals(n * (q_dim + 2 * kv_dim), 1.0);
        // Plain (Llama), with biases (Qwen2), with per-head norms (Qwen3), with both: every one
        // among the shapes, whatever the seed.
        let family = (case as u64 + seed) % 4;
        let bias = (family & 1 == 1).then(|| rng.normals(q_dim + 2 * kv_dim, 0.5));
        let norm = (family & 2 == 2).then(|| rng.normals(2 * hd, 1.0));
        let eps = 1e-6;
        let qkv = reference_pre(&raw, h, kv, hd, bias.as_deref(), norm.as_deref().map(|w| (w, eps)));
        let bias_b = bias.as_deref().map(|b| GpuBuffer::from_slice(gpu, "bias", b)).transpose()?;
        let norm_b = norm.as_deref().map(|w| GpuBuffer::from_slice(gpu, "qk_norm", w)).transpose()?;
        let split = |part: usize| -> Vec<f32> {
            let (off, len) = [(0, q_dim), (q_dim, kv_dim), (q_dim + kv_dim, kv_dim)][part];
            qkv.chunks(q_dim + 2 * kv_dim).flat_map(|t| t[off..off + len].to_vec()).collect()
        };
        let context = start + n + 1;
        let qkv_b = GpuBuffer::from_slice(gpu, "qkv", &raw)?;
        let k_before = rng.normals(context * kv_dim, 1.0);
        let v_before = rng.normals(context * kv_dim, 1.0);
        for dtype in KvDType::ALL {
            // Cache rows outside start..start+n must stay as they were.
            let cache = KvCache::from_values(gpu, &k_before, &v_before, dtype)?;
            let q_b = GpuBuffer::zeroed(gpu, "q", (n * q_dim * 4) as u64)?;
            let mut rec = Recorder::new(gpu, 4);
            let io = RopeIo { qkv: &qkv_b, q: &q_b, cache: &cache, bias: bias_b.as_ref(), qk_norm: norm_b.as_ref().map(|w| (w, eps)) };
            encode(&mut rec, &io, &table, n, h, kv, start)?;
            rec.submit()?;
            let rows = start * kv_dim..(start + n) * kv_dim;
            let (mut k_want, mut v_want) = (dtype.round(&k_before), dtype.round(&v_before));
            k_want[rows.clone()].copy_from_slice(&dtype.round(&reference(&split(1), kv, hd, &inv_freq, start)));
            v_want[rows].copy_from_slice(&dtype.round(&split(2)));
            let what = format!("rope n {n} heads {h}/{kv} head_dim {hd} start {start} {} cache, bias {} qk_norm {}", dtype.name(), bias.is_some(), norm.is_some());
            compare(&format!("{what} q"), seed, &q_b.read_f32(gpu).await?, &reference(&split(0), h, hd, &inv_freq, start), tolerance(DType::F32))?;
            // An f16 cache: the kernel rounds its f32 result once, the reference its f64 one, so
            // the two may sit one f16 step apart: f16's tolerance. v is copied, not computed: it
            // must be exact in either type.
            let k_tol = tolerance(if dtype == KvDType::F16 { DType::F16 } else { DType::F32 });
            let (k_got, v_got) = cache.read(gpu).await?;
            compare(&format!("{what} k cache"), seed, &k_got, &k_want, k_tol)?;
            compare(&format!("{what} v cache"), seed, &v_got, &v_want, crate::ops::check::Tolerance { abs: 0.0, rel: 0.0 })?;
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

    /// The floor path: the cache as u32 words packed by pack2x16float.
    #[test]
    fn matches_cpu_reference_without_shader_f16() {
        run(super::super::testing::floor_gpu(), check);
    }

    #[test]
    fn positions_past_the_table_are_a_typed_error() {
        let Some(g) = gpu() else { return };
        let table = RopeTable::new(g, &default_inv_freq(4, 10_000.0), 8).unwrap();
        let b = GpuBuffer::zeroed(g, "b", 256).unwrap();
        let cache = KvCache::new(g, "cache", Heads { n_heads: 1, n_kv_heads: 1, head_dim: 4 }, 16, KvDType::F16).unwrap();
        let mut rec = Recorder::new(g, 1);
        let err = encode(&mut rec, &RopeIo { qkv: &b, q: &b, cache: &cache, bias: None, qk_norm: None }, &table, 2, 1, 1, 7).unwrap_err();
        assert!(err.to_string().contains("max_position_embeddings"), "{err}");
    }
}
