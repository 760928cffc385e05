//! Linear layer without bias, HF `nn.Linear(in, out, bias=False)`: weight is (OC, IC), y = x W^T.

use super::{gemm, Mat, Scalar};
use rayon::prelude::*;

/// Rows per parallel task. Fixed (not derived from the thread count) so each output element
/// is computed by the same GEMM call whatever the machine: results are bit-reproducible.
const ROW_CHUNK: usize = 64;

/// out (N, OC) = inp (N, IC) · weight (OC, IC)^T
pub fn matmul_forward<T: Scalar>(out: &mut [T], inp: &[T], weight: &[T], n: usize, ic: usize, oc: usize) {
    assert_eq!(out.len(), n * oc);
    assert_eq!(inp.len(), n * ic);
    assert_eq!(weight.len(), oc * ic);
    out.par_chunks_mut(ROW_CHUNK * oc).enumerate().for_each(|(ci, out_rows)| {
        let rows = out_rows.len() / oc;
        let r0 = ci * ROW_CHUNK;
        let a = Mat { data: &inp[r0 * ic..(r0 + rows) * ic], rs: ic, cs: 1 };
        let b = Mat { data: weight, rs: 1, cs: ic }; // W^T
        gemm(rows, ic, oc, T::one(), a, b, T::zero(), out_rows, oc, 1);
    });
}

/// dinp (N, IC) += dout (N, OC) · weight (OC, IC);  dweight (OC, IC) += dout^T · inp (N, IC)
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward<T: Scalar>(
    dinp: &mut [T], dweight: &mut [T], dout: &[T], inp: &[T], weight: &[T],
    n: usize, ic: usize, oc: usize,
) {
    assert_eq!(dinp.len(), n * ic);
    assert_eq!(dweight.len(), oc * ic);
    assert_eq!(dout.len(), n * oc);
    assert_eq!(inp.len(), n * ic);
    assert_eq!(weight.len(), oc * ic);
    dinp.par_chunks_mut(ROW_CHUNK * ic).enumerate().for_each(|(ci, dinp_rows)| {
        let rows = dinp_rows.len() / ic;
        let r0 = ci * ROW_CHUNK;
        let a = Mat { data: &dout[r0 * oc..(r0 + rows) * oc], rs: oc, cs: 1 };
        let b = Mat { data: weight, rs: ic, cs: 1 };
        gemm(rows, oc, ic, T::one(), a, b, T::one(), dinp_rows, ic, 1);
    });
    // Split dweight by output-channel rows; each task reduces over all N rows in one GEMM.
    let oc_chunk = 16;
    dweight.par_chunks_mut(oc_chunk * ic).enumerate().for_each(|(ci, dw_rows)| {
        let rows = dw_rows.len() / ic;
        let o0 = ci * oc_chunk;
        // A = dout^T restricted to channels o0..o0+rows: element (o, r) = dout[r * oc + o0 + o].
        let a = Mat { data: &dout[o0..], rs: 1, cs: oc };
        let b = Mat { data: inp, rs: ic, cs: 1 };
        gemm(rows, n, ic, T::one(), a, b, T::one(), dw_rows, ic, 1);
    });
}
