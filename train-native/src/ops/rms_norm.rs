//! RMSNorm with weight, HF `LlamaRMSNorm`: y = w * x / sqrt(mean(x^2) + eps).

use super::Scalar;
use rayon::prelude::*;

/// out (N, C), rstd (N) = rms_norm(inp (N, C); weight (C)); rstd = 1/sqrt(mean(x^2) + eps) is kept for backward.
pub fn rms_norm_forward<T: Scalar>(out: &mut [T], rstd: &mut [T], inp: &[T], weight: &[T], c: usize, eps: f64) {
    let eps = T::from_f(eps);
    let cf = T::from_usize(c).unwrap();
    out.par_chunks_mut(c).zip(rstd.par_iter_mut()).zip(inp.par_chunks(c)).for_each(|((o, r), x)| {
        let ms = x.iter().fold(T::zero(), |acc, &v| acc + v * v) / cf;
        let rs = T::one() / (ms + eps).sqrt();
        *r = rs;
        for ((oi, &xi), &wi) in o.iter_mut().zip(x).zip(weight) {
            *oi = wi * (xi * rs);
        }
    });
}

/// dinp (N, C) += d rms_norm / d inp · dout;  dweight (C) += sum_rows dout * x * rstd.
/// With xh = x * r: dx = r * (dout*w) - x * r^3 / C * sum(dout * w * x).
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward<T: Scalar>(
    dinp: &mut [T], dweight: &mut [T], dout: &[T], inp: &[T], weight: &[T], rstd: &[T], c: usize,
) {
    let cf = T::from_usize(c).unwrap();
    dinp.par_chunks_mut(c).zip(dout.par_chunks(c)).zip(inp.par_chunks(c)).zip(rstd.par_iter()).for_each(
        |(((dx, dy), x), &r)| {
            let dot = dy.iter().zip(weight).zip(x).fold(T::zero(), |acc, ((&g, &w), &xi)| acc + g * w * xi);
            let k = dot * r * r * r / cf;
            for (((dxi, &g), &w), &xi) in dx.iter_mut().zip(dy).zip(weight).zip(x) {
                *dxi = *dxi + g * w * r - xi * k;
            }
        },
    );
    // dweight reduces over rows: sequential in row order, so the sum is reproducible.
    for ((dy, x), &r) in dout.chunks(c).zip(inp.chunks(c)).zip(rstd) {
        for ((dw, &g), &xi) in dweight.iter_mut().zip(dy).zip(x) {
            *dw = *dw + g * xi * r;
        }
    }
}
