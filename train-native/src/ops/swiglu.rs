//! SwiGLU gate of HF `LlamaMLP`: act = silu(gate) * up, silu(g) = g * sigmoid(g).

use super::Scalar;
use rayon::prelude::*;

const CHUNK: usize = 4096;

/// out (N, I) = silu(gate (N, I)) * up (N, I)
pub fn swiglu_forward<T: Scalar>(out: &mut [T], gate: &[T], up: &[T]) {
    out.par_chunks_mut(CHUNK).zip(gate.par_chunks(CHUNK)).zip(up.par_chunks(CHUNK)).for_each(|((o, g), u)| {
        for ((oi, &gi), &ui) in o.iter_mut().zip(g).zip(u) {
            let s = T::one() / (T::one() + (-gi).exp());
            *oi = gi * s * ui;
        }
    });
}

/// WRITES dgate (N, I), dup (N, I) from dout (N, I):
/// dup = dout * silu(g); dgate = dout * up * s * (1 + g * (1 - s)), s = sigmoid(g).
pub fn swiglu_backward<T: Scalar>(dgate: &mut [T], dup: &mut [T], dout: &[T], gate: &[T], up: &[T]) {
    dgate
        .par_chunks_mut(CHUNK)
        .zip(dup.par_chunks_mut(CHUNK))
        .zip(dout.par_chunks(CHUNK))
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(((dg, du), d), (g, u))| {
            for i in 0..d.len() {
                let s = T::one() / (T::one() + (-g[i]).exp());
                du[i] = d[i] * g[i] * s;
                dg[i] = d[i] * u[i] * s * (T::one() + g[i] * (T::one() - s));
            }
        });
}
