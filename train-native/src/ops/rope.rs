//! Rotary position embedding in HF's rotate_half layout (`apply_rotary_pos_emb`):
//! x' = x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[D/2..], x[..D/2]).

use super::Scalar;
use rayon::prelude::*;

/// cos, sin tables (T, D/2) for positions 0..T. Computed in f32 exactly as HF's
/// `LlamaRotaryEmbedding` does (inv_freq and t * inv_freq in f32, even for f64 models),
/// so the trainer, transformers and the runtime agree to the last bit of the table.
pub fn rope_tables<T: Scalar>(t: usize, d: usize, theta: f64) -> (Vec<T>, Vec<T>) {
    let half = d / 2;
    let theta = theta as f32;
    let inv_freq: Vec<f32> = (0..half).map(|i| 1.0 / theta.powf((2 * i) as f32 / d as f32)).collect();
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for pos in 0..t {
        for &f in &inv_freq {
            let a = pos as f32 * f;
            cos.push(T::from_f(a.cos() as f64));
            sin.push(T::from_f(a.sin() as f64));
        }
    }
    (cos, sin)
}

/// In place on x (B, T, heads, D): rotate each head's pair (x[i], x[i + D/2]) by angle pos*inv_freq[i].
pub fn rope_forward<T: Scalar>(x: &mut [T], cos: &[T], sin: &[T], t: usize, heads: usize, d: usize) {
    rope_apply(x, cos, sin, t, heads, d, false)
}

/// In place on dx (B, T, heads, D): the inverse rotation (rotation by -angle); RoPE is orthogonal.
pub fn rope_backward<T: Scalar>(dx: &mut [T], cos: &[T], sin: &[T], t: usize, heads: usize, d: usize) {
    rope_apply(dx, cos, sin, t, heads, d, true)
}

fn rope_apply<T: Scalar>(x: &mut [T], cos: &[T], sin: &[T], t: usize, heads: usize, d: usize, inverse: bool) {
    let half = d / 2;
    x.par_chunks_mut(heads * d).enumerate().for_each(|(row, xr)| {
        let pos = row % t;
        let (c, s) = (&cos[pos * half..(pos + 1) * half], &sin[pos * half..(pos + 1) * half]);
        for h in xr.chunks_mut(d) {
            for i in 0..half {
                let (x1, x2) = (h[i], h[i + half]);
                let si = if inverse { -s[i] } else { s[i] };
                h[i] = x1 * c[i] - x2 * si;
                h[i + half] = x2 * c[i] + x1 * si;
            }
        }
    });
}
