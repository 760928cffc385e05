//! The decoder's other operations on the CPU, each the counterpart of an `ops` module (same
//! shapes, same f32 arithmetic as its kernel) and checked against that module's reference:
//! RMSNorm (alone, fused with the residual add, with the branch normalised first), the gated
//! activation over gate/up pairs, the embedding lookup, RoPE fused with the KV-cache append
//! (biases and per-head norms first), causal attention (windowed, any scale) over an f16 cache,
//! and the greedy choice.

use super::{CpuWeights, Pool};
use crate::ops::attention::{Heads, Scores};
use crate::ops::glu::Activation;
use half::f16;

/// RMSNorm of each `dim`-value row of `x` into `out`, in f32 (the kernel's arithmetic).
pub fn rms_norm(x: &[f32], w: &[f32], out: &mut [f32], dim: usize, eps: f32) {
    for (row, o) in x.chunks(dim).zip(out.chunks_mut(dim)) {
        let scale = inv_rms(row, eps);
        for ((o, &v), &w) in o.iter_mut().zip(row).zip(w) {
            *o = v * scale * w;
        }
    }
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ss: f32 = row.iter().map(|v| v * v).sum();
    1.0 / (ss / row.len() as f32 + eps).sqrt()
}

/// `x += delta` (with `delta_w`: `x += rms_norm(delta) * delta_w`), then `out = rms_norm(x) * w`.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_add(x: &mut [f32], delta: &[f32], delta_w: Option<&[f32]>, w: &[f32], out: &mut [f32], dim: usize, eps: f32) {
    for ((xr, dr), o) in x.chunks_mut(dim).zip(delta.chunks(dim)).zip(out.chunks_mut(dim)) {
        match delta_w {
            Some(dw) => {
                let s = inv_rms(dr, eps);
                xr.iter_mut().zip(dr).zip(dw).for_each(|((x, &d), &w)| *x += d * s * w);
            }
            None => xr.iter_mut().zip(dr).for_each(|(x, &d)| *x += d),
        }
        let scale = inv_rms(xr, eps);
        for ((o, &v), &w) in o.iter_mut().zip(xr.iter()).zip(w) {
            *o = v * scale * w;
        }
    }
}

/// `out[i] = act(gu[2i]) * gu[2i + 1]` (the interleaved gate/up matrix's output).
pub fn glu_pairs(gu: &[f32], out: &mut [f32], act: Activation) {
    for (o, pair) in out.iter_mut().zip(gu.chunks_exact(2)) {
        *o = act_f32(pair[0], act) * pair[1];
    }
}

/// The activations in f32 as shaders/activation.wgsl forms them.
fn act_f32(g: f32, act: Activation) -> f32 {
    match act {
        Activation::Silu => g / (1.0 + (-g).exp()),
        Activation::GeluTanh => {
            let u = 0.797_884_6 * (g + 0.044715 * g * g * g);
            g / (1.0 + (-2.0 * u).exp())
        }
    }
}

/// `out[t] = table[ids[t]] * scale`. Ids are validated by the caller (`embedding::validate_ids`).
pub fn embedding(table: &CpuWeights, ids: &[u32], out: &mut [f32], scale: f32) {
    for (&id, o) in ids.iter().zip(out.chunks_mut(table.cols)) {
        for (o, v) in o.iter_mut().zip(table.row_values(id as usize)) {
            *o = v * scale;
        }
    }
}

/// One layer's KV cache: K and V [positions, n_kv_heads, head_dim] in f16 (llama.cpp's default,
/// and the GPU's).
pub struct CpuKvCache {
    pub k: Vec<f16>,
    pub v: Vec<f16>,
}

impl CpuKvCache {
    pub fn new(heads: Heads, positions: usize) -> CpuKvCache {
        let n = positions * heads.n_kv_heads * heads.head_dim;
        CpuKvCache { k: vec![f16::ZERO; n], v: vec![f16::ZERO; n] }
    }
}

/// What [`rope_append`] applies to the projection first (Qwen2's biases, Qwen3's and Gemma's
/// per-head norms with their epsilon).
pub struct Pre<'a> {
    pub bias: Option<&'a [f32]>,
    pub qk_norm: Option<(&'a [f32], f32)>,
}

/// From the fused projection qkv [n, q_dim + 2 kv_dim]: q rotated into `q_out` [n, q_dim], k
/// rotated and v as is into the cache rows start..start + n. `cos_sin`: the (cos, sin) pairs of
/// `ops::rope::cos_sin`, [positions, head_dim / 2].
#[allow(clippy::too_many_arguments)]
pub fn rope_append(qkv: &[f32], q_out: &mut [f32], cache: &mut CpuKvCache, cos_sin: &[f32], pre: &Pre<'_>, heads: Heads, n: usize, start: usize) {
    let Heads { n_heads, n_kv_heads, head_dim: hd } = heads;
    let (q_dim, kv_dim, half) = (n_heads * hd, n_kv_heads * hd, hd / 2);
    let row = q_dim + 2 * kv_dim;
    let mut buf = vec![0f32; row];
    for t in 0..n {
        buf.copy_from_slice(&qkv[t * row..(t + 1) * row]);
        if let Some(b) = pre.bias {
            buf.iter_mut().zip(b).for_each(|(x, b)| *x += b);
        }
        if let Some((w, eps)) = pre.qk_norm {
            for (h, head) in buf[..q_dim + kv_dim].chunks_mut(hd).enumerate() {
                let w = &w[if h < n_heads { 0 } else { hd }..][..hd];
                let s = inv_rms(head, eps);
                head.iter_mut().zip(w).for_each(|(x, &w)| *x = *x * s * w);
            }
        }
        let pos = start + t;
        let cs = &cos_sin[pos * hd..(pos + 1) * hd];
        let rotate = |head: &[f32], out: &mut dyn FnMut(usize, f32)| {
            for i in 0..half {
                let (c, s) = (cs[2 * i], cs[2 * i + 1]);
                let (a, b) = (head[i], head[i + half]);
                out(i, a * c - b * s);
                out(i + half, b * c + a * s);
            }
        };
        for (h, head) in buf[..q_dim].chunks(hd).enumerate() {
            let q = &mut q_out[t * q_dim + h * hd..][..hd];
            rotate(head, &mut |i, v| q[i] = v);
        }
        let cache_row = pos * kv_dim;
        for (h, head) in buf[q_dim..q_dim + kv_dim].chunks(hd).enumerate() {
            let k = &mut cache.k[cache_row + h * hd..][..hd];
            rotate(head, &mut |i, v| k[i] = f16::from_f32(v));
        }
        for (c, &v) in cache.v[cache_row..cache_row + kv_dim].iter_mut().zip(&buf[q_dim + kv_dim..]) {
            *c = f16::from_f32(v);
        }
    }
}

/// Causal grouped-query attention of queries q [n, n_heads, head_dim] at positions start.. over
/// the cache (the window only, for a local layer) into `out` [n, n_heads, head_dim]; the (token,
/// head) pairs spread over the pool.
#[allow(clippy::too_many_arguments)]
pub fn attention(pool: &Pool, q: &[f32], cache: &CpuKvCache, heads: Heads, scores: Scores, n: usize, start: usize, out: &mut [f32]) {
    let Heads { n_heads, n_kv_heads, head_dim: hd } = heads;
    let (group, kv_dim) = (n_heads / n_kv_heads, n_kv_heads * hd);
    let out_ptr = super::SharedOut(out.as_mut_ptr());
    let kernel = super::matvec::Kernel::best();
    pool.run(n * n_heads, &|task| {
        // SAFETY: each task writes its own (token, head) row.
        let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(task * hd), hd) };
        let (t, h) = (task / n_heads, task % n_heads);
        let qv = &q[task * hd..(task + 1) * hd];
        let (first, end) = (scores.first_key(start + t + 1), start + t + 1);
        let offset = (h / group) * hd;
        match kernel {
            super::matvec::Kernel::Portable => attend(qv, cache, kv_dim, offset, scores.scale, first..end, o),
            // NEON is every aarch64 CPU's: the plain build vectorizes with it.
            #[cfg(target_arch = "aarch64")]
            super::matvec::Kernel::NeonDotprod => attend(qv, cache, kv_dim, offset, scores.scale, first..end, o),
            // SAFETY: only chosen when the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            super::matvec::Kernel::Avx2 | super::matvec::Kernel::Avx512Vnni => unsafe { attend_avx2(qv, cache, kv_dim, offset, scores.scale, first..end, o) },
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn attend_avx2(q: &[f32], cache: &CpuKvCache, kv_dim: usize, offset: usize, scale: f32, keys: std::ops::Range<usize>, o: &mut [f32]) {
    attend(q, cache, kv_dim, offset, scale, keys, o)
}

/// One query row over cached keys `keys` (each row's head at `offset`): each cached row widened
/// by the branch-free f16 decode (vectorized), then f32 arithmetic; softmax in f32.
#[inline(always)]
fn attend(q: &[f32], cache: &CpuKvCache, kv_dim: usize, offset: usize, scale: f32, keys: std::ops::Range<usize>, o: &mut [f32]) {
    let hd = q.len();
    let mut row = vec![0f32; hd];
    let widen = |cached: &[f16], row: &mut [f32]| row.iter_mut().zip(cached).for_each(|(r, c)| *r = super::matvec::f16_to_f32(c.to_bits()));
    let mut s: Vec<f32> = keys
        .clone()
        .map(|j| {
            widen(&cache.k[j * kv_dim + offset..][..hd], &mut row);
            super::matvec::dot_f32(q, &row) * scale
        })
        .collect();
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0f32;
    for v in &mut s {
        *v = (*v - max).exp();
        total += *v;
    }
    o.fill(0.0);
    for (j, &p) in keys.zip(&s) {
        widen(&cache.v[j * kv_dim + offset..][..hd], &mut row);
        o.iter_mut().zip(&row).for_each(|(o, v)| *o += p * v);
    }
    o.iter_mut().for_each(|o| *o /= total);
}

/// The index of the largest value (the first of equals; NaN never wins over a number).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] || x[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best as u32
}

/// RMSNorm (plain, with the residual, with the branch normalised first), gating, the embedding
/// of every weight type and argmax against the `ops` references at awkward shapes.
pub fn check_pointwise(seed: u64) -> Result<(), crate::ops::check::Mismatch> {
    use crate::ops;
    use crate::ops::check::{compare, compare_exact, tolerance, DType, Rng};
    let mut rng = Rng::new(seed);
    for &(rows, dim) in &[(1usize, 1usize), (3, 17), (5, 257), (2, 1000)] {
        let (x, delta) = (rng.normals(rows * dim, 2.0), rng.normals(rows * dim, 1.0));
        let (w, dw): (Vec<f32>, Vec<f32>) = ((0..dim).map(|_| rng.range(0.5, 1.5)).collect(), (0..dim).map(|_| rng.range(-1.0, 2.0)).collect());
        let mut out = vec![0f32; rows * dim];
        rms_norm(&x, &w, &mut out, dim, 1e-6);
        compare("cpu rms_norm", seed, &out, &ops::rms_norm::reference(&x, &w, dim, 1e-6), tolerance(DType::F32))?;
        let mut xs = x.clone();
        rms_norm_add(&mut xs, &delta, Some(&dw), &w, &mut out, dim, 1e-6);
        let normed = ops::rms_norm::reference(&delta, &dw, dim, 1e-6);
        let sum: Vec<f32> = x.iter().zip(&normed).map(|(a, b)| a + b).collect();
        compare("cpu rms_norm_add (normed delta) residual", seed, &xs, &sum, tolerance(DType::F32))?;
        compare("cpu rms_norm_add (normed delta)", seed, &out, &ops::rms_norm::reference(&sum, &w, dim, 1e-6), tolerance(DType::F32))?;
    }
    for act in Activation::ALL {
        let n = 257;
        let (mut gate, up) = (rng.normals(n, 3.0), rng.normals(n, 1.0));
        gate[0] = -100.0;
        gate[1] = 100.0;
        let pairs: Vec<f32> = gate.iter().zip(&up).flat_map(|(&g, &u)| [g, u]).collect();
        let mut out = vec![0f32; n];
        glu_pairs(&pairs, &mut out, act);
        compare(&format!("cpu glu {}", act.name()), seed, &out, &ops::glu::reference(&gate, &up, act), tolerance(DType::F32))?;
    }
    for dtype in ops::WeightDType::ALL {
        let (vocab, dim) = (40, 70);
        let (m, values) = super::CpuMatrix::random(&mut rng, dtype, vocab, dim);
        let table = CpuWeights { name: "table".into(), rows: vocab, cols: dim, runs: vec![(0, m)] };
        let ids: Vec<u32> = (0..5).map(|_| rng.below(vocab as u32)).collect();
        let mut out = vec![0f32; ids.len() * dim];
        embedding(&table, &ids, &mut out, 8.944_272);
        compare(&format!("cpu embedding {}", dtype.name()), seed, &out, &ops::embedding::reference(&values, dim, &ids, 8.944_272), tolerance(DType::F32))?;
    }
    let x = rng.normals(1001, 1.0);
    compare_exact("cpu argmax", seed, &[argmax(&x)], &ops::argmax::reference(&x, 1001))?;
    Ok(())
}

/// RoPE with the cache append (plain, biases, per-head norms, both) and attention (causal and
/// windowed, other scales, GQA) against the references on the values an f16 cache holds.
pub fn check_attention(seed: u64) -> Result<(), crate::ops::check::Mismatch> {
    use crate::ops::check::{compare, tolerance, DType, Rng, Tolerance};
    use crate::ops::{self, attention::KvDType};
    let mut rng = Rng::new(seed);
    let pool = Pool::new(3);
    let cases = [(1usize, 0usize, 1usize, 1usize, 2usize, None), (3, 0, 4, 1, 18, Some(2usize)), (17, 5, 8, 2, 64, None), (5, 250, 8, 2, 34, Some(70)), (2, 300, 4, 4, 128, Some(333))];
    for (case, &(n, start, h, kv, hd, window)) in cases.iter().enumerate() {
        let heads = Heads { n_heads: h, n_kv_heads: kv, head_dim: hd };
        let (q_dim, kv_dim) = (h * hd, kv * hd);
        let inv_freq = ops::rope::default_inv_freq(hd, 10_000.0);
        let positions = start + n;
        let cos_sin = ops::rope::cos_sin(&inv_freq, positions);
        // The cache before `start` holds earlier tokens' keys and values.
        let mut cache = CpuKvCache::new(heads, positions);
        let (k0, v0) = (rng.normals(start * kv_dim, 1.0), rng.normals(start * kv_dim, 1.0));
        cache.k[..start * kv_dim].iter_mut().zip(&k0).for_each(|(c, &v)| *c = f16::from_f32(v));
        cache.v[..start * kv_dim].iter_mut().zip(&v0).for_each(|(c, &v)| *c = f16::from_f32(v));
        let raw = rng.normals(n * (q_dim + 2 * kv_dim), 1.0);
        let bias = (case % 2 == 1).then(|| rng.normals(q_dim + 2 * kv_dim, 0.5));
        let norm = (case % 3 == 2).then(|| rng.normals(2 * hd, 1.0));
        let mut q = vec![0f32; n * q_dim];
        let pre = Pre { bias: bias.as_deref(), qk_norm: norm.as_deref().map(|w| (w, 1e-6)) };
        rope_append(&raw, &mut q, &mut cache, &cos_sin, &pre, heads, n, start);
        let qkv = ops::rope::reference_pre(&raw, h, kv, hd, bias.as_deref(), pre.qk_norm);
        let split = |off: usize, len: usize| -> Vec<f32> { qkv.chunks(q_dim + 2 * kv_dim).flat_map(|t| t[off..off + len].to_vec()).collect() };
        let what = format!("cpu rope n {n} start {start} heads {h}/{kv} head_dim {hd}");
        compare(&format!("{what} q"), seed, &q, &ops::rope::reference(&split(0, q_dim), h, hd, &inv_freq, start), tolerance(DType::F32))?;
        let k_want = KvDType::F16.round(&ops::rope::reference(&split(q_dim, kv_dim), kv, hd, &inv_freq, start));
        let k_got: Vec<f32> = cache.k[start * kv_dim..].iter().map(|v| v.to_f32()).collect();
        compare(&format!("{what} k cache"), seed, &k_got, &k_want, tolerance(DType::F16))?;
        let v_got: Vec<f32> = cache.v[start * kv_dim..].iter().map(|v| v.to_f32()).collect();
        compare(&format!("{what} v cache"), seed, &v_got, &KvDType::F16.round(&split(q_dim + kv_dim, kv_dim)), Tolerance { abs: 0.0, rel: 0.0 })?;

        let scores = Scores { scale: if window.is_some() { 0.3 } else { Scores::causal(hd).scale }, window };
        let mut out = vec![0f32; n * q_dim];
        attention(&pool, &q, &cache, heads, scores, n, start, &mut out);
        let (k, v): (Vec<f32>, Vec<f32>) = (cache.k.iter().map(|x| x.to_f32()).collect(), cache.v.iter().map(|x| x.to_f32()).collect());
        let want = ops::attention::reference(&q, &k, &v, heads, scores, n, start);
        compare(&format!("cpu attention n {n} start {start} heads {h}/{kv} head_dim {hd} window {window:?}"), seed, &out, &want, tolerance(DType::F32))?;
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    #[test]
    fn norms_gating_embedding_and_argmax_match_the_references() {
        super::check_pointwise(crate::ops::check::seed()).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn rope_and_attention_match_the_references() {
        super::check_attention(crate::ops::check::seed()).unwrap_or_else(|e| panic!("{e}"));
    }
}
