//! AdamW with decoupled weight decay, exactly PyTorch's `torch.optim.AdamW` (amsgrad=False).

use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub struct AdamWParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1-based step count, for bias correction.
    pub t: u64,
}

/// In place on params, m, v (P); grads (P). `decay` false for norm weights (no weight decay).
/// p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * m̂ / (sqrt(v̂) + eps).
pub fn adamw_step(params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32], h: AdamWParams, decay: bool) {
    let bc1 = 1.0 - (h.beta1 as f64).powi(h.t as i32);
    let bc2 = 1.0 - (h.beta2 as f64).powi(h.t as i32);
    let (bc1, bc2) = (bc1 as f32, bc2 as f32);
    let wd = if decay { h.weight_decay } else { 0.0 };
    params.par_chunks_mut(4096).zip(grads.par_chunks(4096)).zip(m.par_chunks_mut(4096).zip(v.par_chunks_mut(4096))).for_each(
        |((p, g), (m, v))| {
            for i in 0..p.len() {
                p[i] -= h.lr * wd * p[i];
                m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g[i];
                v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g[i] * g[i];
                let mhat = m[i] / bc1;
                let vhat = v[i] / bc2;
                p[i] -= h.lr * mhat / (vhat.sqrt() + h.eps);
            }
        },
    );
}
