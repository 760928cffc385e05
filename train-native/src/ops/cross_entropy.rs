//! Fused softmax + cross-entropy (llm.c `crossentropy_softmax_backward`, HF `CrossEntropyLoss`
//! with mean reduction): one pass yields the per-row loss and the logits' gradient.

use super::Scalar;
use rayon::prelude::*;

/// losses (N) = logsumexp(logits[r]) - logits[r][targets[r]];
/// dlogits (N, V) = (softmax(logits[r]) - onehot(targets[r])) * dscale   (WRITES).
/// `dscale` is d(total loss)/d(loss[r]): 1/(N * grad_accum) for a mean over the batch.
pub fn softmax_cross_entropy_fused<T: Scalar>(
    losses: &mut [T], dlogits: &mut [T], logits: &[T], targets: &[u32], v: usize, dscale: T,
) {
    losses.par_iter_mut().zip(dlogits.par_chunks_mut(v)).zip(logits.par_chunks(v)).zip(targets.par_iter()).for_each(
        |(((loss, dl), lg), &tgt)| {
            let max = lg.iter().fold(T::neg_infinity(), |m, &x| m.max(x));
            let mut sum = T::zero();
            for (d, &x) in dl.iter_mut().zip(lg) {
                let e = (x - max).exp();
                *d = e;
                sum = sum + e;
            }
            let tgt = tgt as usize;
            *loss = sum.ln() + max - lg[tgt];
            let inv = dscale / sum;
            for d in dl.iter_mut() {
                *d = *d * inv;
            }
            dl[tgt] = dl[tgt] - dscale;
        },
    );
}
