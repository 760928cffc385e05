//! The trainer's ops: forward and backward of each Llama building block as a plain function
//! over flat row-major slices, with shapes in the doc comment. This is the reference a CUDA
//! backend is compared with op by op (llm.c's train_gpt2.c plays the same role).
//!
//! Conventions, the same for every op:
//! - `N` = B*T rows, `C` hidden size, `I` intermediate size, `V` vocab, `H` query heads,
//!   `KVH` key/value heads, `D` head dim.
//! - Backward functions ACCUMULATE (`+=`) into parameter gradients and into input gradients,
//!   so residual branches add up without extra copies; callers zero what they own.
//!   (Exceptions are named in the op's doc: `swiglu_backward` and `attention_backward` write.)
//! - Every op is generic over [`Scalar`] (f32 for training, f64 for finite-difference checks).
//! - Reductions have a fixed order independent of the thread count, so a run is bit-for-bit
//!   reproducible (resume exactness depends on it).

mod adamw;
mod attention;
mod cross_entropy;
mod embedding;
mod matmul;
mod rms_norm;
mod rope;
mod swiglu;

pub use adamw::{adamw_step, AdamWParams};
pub use attention::{attention_backward, attention_forward};
pub use cross_entropy::softmax_cross_entropy_fused;
pub use embedding::{embedding_backward, embedding_forward};
pub use matmul::{matmul_backward, matmul_forward};
pub use rms_norm::{rms_norm_backward, rms_norm_forward};
pub use rope::{rope_backward, rope_forward, rope_tables};
pub use swiglu::{swiglu_backward, swiglu_forward};

use num_traits::{Float, FromPrimitive};

/// The element types the reference path runs in: f32 (training) and f64 (gradient checks).
pub trait Scalar:
    Float + FromPrimitive + Default + Send + Sync + std::fmt::Debug + std::iter::Sum + 'static
{
    /// C = alpha * A B + beta * C with arbitrary row/column strides (matrixmultiply's sgemm/dgemm).
    ///
    /// # Safety
    /// Every element addressed through the strides must lie inside the given pointers' allocations.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize, k: usize, n: usize, alpha: Self,
        a: *const Self, rsa: isize, csa: isize,
        b: *const Self, rsb: isize, csb: isize,
        beta: Self, c: *mut Self, rsc: isize, csc: isize,
    );

    fn from_f(x: f64) -> Self {
        <Self as FromPrimitive>::from_f64(x).expect("every f64 converts to f32/f64")
    }
}

impl Scalar for f32 {
    unsafe fn gemm_raw(
        m: usize, k: usize, n: usize, alpha: f32,
        a: *const f32, rsa: isize, csa: isize,
        b: *const f32, rsb: isize, csb: isize,
        beta: f32, c: *mut f32, rsc: isize, csc: isize,
    ) {
        unsafe { matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

impl Scalar for f64 {
    unsafe fn gemm_raw(
        m: usize, k: usize, n: usize, alpha: f64,
        a: *const f64, rsa: isize, csa: isize,
        b: *const f64, rsb: isize, csb: isize,
        beta: f64, c: *mut f64, rsc: isize, csc: isize,
    ) {
        unsafe { matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

/// Strided matrix view for [`gemm`]: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

/// Highest index a rows x cols strided view touches (+1), for bounds checks.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 { 0 } else { (rows - 1) * rs + (cols - 1) * cs + 1 }
}

/// Safe strided GEMM: C (m x n) = alpha * A (m x k) B (k x n) + beta * C.
/// Bounds are checked up front, which is what makes the raw call sound.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Scalar>(
    m: usize, k: usize, n: usize, alpha: T, a: Mat<'_, T>, b: Mat<'_, T>,
    beta: T, c: &mut [T], rsc: usize, csc: usize,
) {
    assert!(extent(m, k, a.rs, a.cs) <= a.data.len(), "gemm: A view out of bounds");
    assert!(extent(k, n, b.rs, b.cs) <= b.data.len(), "gemm: B view out of bounds");
    assert!(extent(m, n, rsc, csc) <= c.len(), "gemm: C view out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    unsafe {
        T::gemm_raw(
            m, k, n, alpha,
            a.data.as_ptr(), a.rs as isize, a.cs as isize,
            b.data.as_ptr(), b.rs as isize, b.cs as isize,
            beta, c.as_mut_ptr(), rsc as isize, csc as isize,
        )
    }
}

/// out (N, C) = a + b. The residual connection; its backward is the identity on both inputs.
pub fn residual_forward<T: Scalar>(out: &mut [T], a: &[T], b: &[T]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}
