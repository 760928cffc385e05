//! Causal scaled-dot-product attention with grouped-query heads, HF `eager_attention_forward`
//! with `repeat_kv`: query head h reads key/value head h / (H / KVH).

use super::{gemm, Mat, Scalar};
use rayon::prelude::*;

/// out (B, T, H*D), att (B, H, T, T) = softmax(q k^T / sqrt(D) + causal mask) v;
/// q (B, T, H*D), k, v (B, T, KVH*D) already rotated. `att` keeps the probabilities for backward
/// (zeros above the diagonal).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward<T: Scalar>(
    out: &mut [T], att: &mut [T], q: &[T], k: &[T], v: &[T],
    b: usize, t: usize, h: usize, kvh: usize, d: usize,
) {
    let (qc, kc) = (h * d, kvh * d);
    assert_eq!(out.len(), b * t * qc);
    assert_eq!(att.len(), b * h * t * t);
    assert_eq!(q.len(), b * t * qc);
    assert_eq!(k.len(), b * t * kc);
    assert_eq!(v.len(), b * t * kc);
    let group = h / kvh;
    let scale = T::one() / T::from_usize(d).unwrap().sqrt();
    out.par_chunks_mut(t * qc).zip(att.par_chunks_mut(h * t * t)).enumerate().for_each(|(bi, (out_b, att_b))| {
        let q_b = &q[bi * t * qc..(bi + 1) * t * qc];
        let k_b = &k[bi * t * kc..(bi + 1) * t * kc];
        let v_b = &v[bi * t * kc..(bi + 1) * t * kc];
        for (hh, p) in att_b.chunks_mut(t * t).enumerate() {
            let g = hh / group;
            // S = scale * Q_h K_g^T  (T, T); the masked upper triangle is overwritten below.
            let qa = Mat { data: &q_b[hh * d..], rs: qc, cs: 1 };
            let kb = Mat { data: &k_b[g * d..], rs: 1, cs: kc };
            gemm(t, d, t, scale, qa, kb, T::zero(), p, t, 1);
            for (i, row) in p.chunks_mut(t).enumerate() {
                let max = row[..=i].iter().fold(T::neg_infinity(), |m, &x| m.max(x));
                let mut sum = T::zero();
                for x in row[..=i].iter_mut() {
                    *x = (*x - max).exp();
                    sum = sum + *x;
                }
                let inv = T::one() / sum;
                for x in row[..=i].iter_mut() {
                    *x = *x * inv;
                }
                for x in row[i + 1..].iter_mut() {
                    *x = T::zero();
                }
            }
            // O_h = P V_g  (T, D), written into the head's columns of out.
            let pa = Mat { data: &*p, rs: t, cs: 1 };
            let vb = Mat { data: &v_b[g * d..], rs: kc, cs: 1 };
            gemm(t, t, d, T::one(), pa, vb, T::zero(), &mut out_b[hh * d..], qc, 1);
        }
    });
}

/// WRITES dq (B, T, H*D), dk, dv (B, T, KVH*D) from dout (B, T, H*D) and the forward's
/// att, q, k, v. Per head: dP = dO V^T; dS = P * (dP - rowsum(P * dP)); dQ = dS K / sqrt(D);
/// dK += dS^T Q / sqrt(D); dV += P^T dO (the += sums the query heads sharing one kv head).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Scalar>(
    dq: &mut [T], dk: &mut [T], dv: &mut [T], dout: &[T], att: &[T], q: &[T], k: &[T], v: &[T],
    b: usize, t: usize, h: usize, kvh: usize, d: usize,
) {
    let (qc, kc) = (h * d, kvh * d);
    assert_eq!(dq.len(), b * t * qc);
    assert_eq!(dk.len(), b * t * kc);
    assert_eq!(dv.len(), b * t * kc);
    assert_eq!(dout.len(), b * t * qc);
    assert_eq!(att.len(), b * h * t * t);
    let group = h / kvh;
    let scale = T::one() / T::from_usize(d).unwrap().sqrt();
    dq.par_chunks_mut(t * qc)
        .zip(dk.par_chunks_mut(t * kc).zip(dv.par_chunks_mut(t * kc)))
        .enumerate()
        .for_each(|(bi, (dq_b, (dk_b, dv_b)))| {
            dk_b.fill(T::zero());
            dv_b.fill(T::zero());
            let q_b = &q[bi * t * qc..(bi + 1) * t * qc];
            let k_b = &k[bi * t * kc..(bi + 1) * t * kc];
            let v_b = &v[bi * t * kc..(bi + 1) * t * kc];
            let do_b = &dout[bi * t * qc..(bi + 1) * t * qc];
            let mut ds = vec![T::zero(); t * t];
            for hh in 0..h {
                let g = hh / group;
                let p = &att[(bi * h + hh) * t * t..(bi * h + hh + 1) * t * t];
                let doa = Mat { data: &do_b[hh * d..], rs: qc, cs: 1 };
                // dP = dO_h V_g^T (T, T)
                gemm(t, d, t, T::one(), doa, Mat { data: &v_b[g * d..], rs: 1, cs: kc }, T::zero(), &mut ds, t, 1);
                for (prow, dsrow) in p.chunks(t).zip(ds.chunks_mut(t)) {
                    let dot = prow.iter().zip(dsrow.iter()).fold(T::zero(), |acc, (&pp, &dp)| acc + pp * dp);
                    for (x, &pp) in dsrow.iter_mut().zip(prow) {
                        *x = pp * (*x - dot);
                    }
                }
                let dsm = Mat { data: &ds, rs: t, cs: 1 };
                let dst = Mat { data: &ds, rs: 1, cs: t };
                gemm(t, t, d, scale, dsm, Mat { data: &k_b[g * d..], rs: kc, cs: 1 }, T::zero(), &mut dq_b[hh * d..], qc, 1);
                gemm(t, t, d, scale, dst, Mat { data: &q_b[hh * d..], rs: qc, cs: 1 }, T::one(), &mut dk_b[g * d..], kc, 1);
                let pt = Mat { data: p, rs: 1, cs: t };
                gemm(t, t, d, T::one(), pt, doa, T::one(), &mut dv_b[g * d..], kc, 1);
            }
        });
}
