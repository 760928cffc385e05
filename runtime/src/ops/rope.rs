//! Rotary position embedding (HF `rotate_half` convention) applied in place to Q and K with
//! grouped-query head counts. q [n, n_heads, head_dim], k [n, n_kv_heads, head_dim].
//! Reference: HF `modeling_llama.apply_rotary_pos_emb` / `LlamaRotaryEmbedding`.

use super::check::{compare, tolerance, CheckFailure, DType, Rng};
use super::{grid, need};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder, Variant};

const WG: u32 = 256;
const SPEC: KernelSpec = KernelSpec {
    name: "rope",
    source: include_str!("../../../shaders/rope.wgsl"),
    entry: "rope",
    bindings: &[Binding::ReadWrite, Binding::ReadWrite, Binding::ReadOnly],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    start_pos: u32,
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

/// Rotates `n_tokens` tokens of q and k in place, token t at position `start_pos + t`.
#[allow(clippy::too_many_arguments)]
pub fn encode(
    rec: &mut Recorder<'_>,
    q: &GpuBuffer,
    k: &GpuBuffer,
    table: &RopeTable,
    n_tokens: usize,
    n_heads: usize,
    n_kv_heads: usize,
    start_pos: usize,
) -> Result<()> {
    let head_dim = table.head_dim;
    if start_pos + n_tokens > table.max_pos {
        return Err(Error::shape("rope", "last position", format!("< {} (max_position_embeddings)", table.max_pos), start_pos + n_tokens - 1));
    }
    need("rope", "q", q, n_tokens * n_heads * head_dim)?;
    need("rope", "k", k, n_tokens * n_kv_heads * head_dim)?;
    let kernel = rec.gpu().kernel(&SPEC, &Variant::constants(&[("WG", WG as f64)]))?;
    let params = Params {
        n_tokens: n_tokens as u32,
        n_heads: n_heads as u32,
        n_kv_heads: n_kv_heads as u32,
        head_dim: head_dim as u32,
        start_pos: start_pos as u32,
    };
    let threads = (n_tokens * (n_heads + n_kv_heads) * head_dim / 2) as u32;
    rec.dispatch(&kernel, &params, &[q, k, &table.buffer], grid(rec, threads.div_ceil(WG)))
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

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    // (tokens, heads, kv heads, head_dim, start): GQA ratios 1, 4 and 8, long positions.
    for &(n, h, kv, hd, start) in &[(1usize, 1usize, 1usize, 2usize, 0usize), (3, 4, 1, 18, 5), (17, 8, 1, 64, 1000), (5, 8, 2, 6, 2041), (2, 32, 4, 64, 77)] {
        let theta = [10_000.0, 500_000.0][rng.below(2) as usize];
        let inv_freq = default_inv_freq(hd, theta);
        let table = RopeTable::new(gpu, &inv_freq, start + n)?;
        let q = rng.normals(n * h * hd, 1.0);
        let k = rng.normals(n * kv * hd, 1.0);
        let qb = GpuBuffer::from_slice(gpu, "q", &q)?;
        let kb = GpuBuffer::from_slice(gpu, "k", &k)?;
        let mut rec = Recorder::new(gpu, 4);
        encode(&mut rec, &qb, &kb, &table, n, h, kv, start)?;
        rec.submit()?;
        let what = format!("rope n {n} heads {h}/{kv} head_dim {hd} start {start}");
        compare(&format!("{what} q"), seed, &qb.read_f32(gpu).await?, &reference(&q, h, hd, &inv_freq, start), tolerance(DType::F32))?;
        compare(&format!("{what} k"), seed, &kb.read_f32(gpu).await?, &reference(&k, kv, hd, &inv_freq, start), tolerance(DType::F32))?;
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::testing::{gpu, run};
    use super::*;

    #[test]
    fn matches_cpu_reference() {
        run(gpu(), |g, s| check(g, s));
    }

    #[test]
    fn positions_past_the_table_are_a_typed_error() {
        let Some(g) = gpu() else { return };
        let table = RopeTable::new(g, &default_inv_freq(4, 10_000.0), 8).unwrap();
        let q = GpuBuffer::zeroed(g, "q", 64).unwrap();
        let mut rec = Recorder::new(g, 1);
        let err = encode(&mut rec, &q, &q, &table, 2, 1, 1, 7).unwrap_err();
        assert!(err.to_string().contains("max_position_embeddings"), "{err}");
    }
}
