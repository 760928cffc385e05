//! Token embedding lookup, HF `nn.Embedding` (`model.embed_tokens`).

use super::Scalar;

/// out (N, C) = table (V, C)[tokens (N)]. Token ids are validated by the caller (data loader).
pub fn embedding_forward<T: Scalar>(out: &mut [T], tokens: &[u32], table: &[T], c: usize) {
    for (o, &tok) in out.chunks_mut(c).zip(tokens) {
        let t = tok as usize;
        o.copy_from_slice(&table[t * c..(t + 1) * c]);
    }
}

/// dtable (V, C)[tokens[r]] += dout[r]. Sequential: repeated tokens must add in a fixed order.
pub fn embedding_backward<T: Scalar>(dtable: &mut [T], dout: &[T], tokens: &[u32], c: usize) {
    for (g, &tok) in dout.chunks(c).zip(tokens) {
        let t = tok as usize;
        for (d, &v) in dtable[t * c..(t + 1) * c].iter_mut().zip(g) {
            *d = *d + v;
        }
    }
}
