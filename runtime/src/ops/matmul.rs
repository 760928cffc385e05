//! Tiled matrix-matrix product for prefill: out [m, rows] = x [m, k] · W [rows, k]^T,
//! weights of every type. Reference: HF `nn.Linear` (bias-free).

use super::check::CheckFailure;
use super::matrix::weight_variant;
use super::{need, Matrix};
use crate::error::Result;
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder};

/// Output tile edge (see shaders/matmul.wgsl).
const TILE: u32 = 64;
const BINDINGS: &[Binding] = &[Binding::ReadOnly, Binding::ReadOnly, Binding::ReadWrite];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    row_words: u32,
    out_stride: u32,
    out_offset: u32,
}

/// One entry point for every weight type: the type is a set of override constants.
const SPEC: KernelSpec = KernelSpec { name: "matmul", source: concat!(include_str!("../../../shaders/weights.wgsl"), include_str!("../../../shaders/matmul.wgsl")), entry: "matmul", bindings: BINDINGS };

/// Records `out = x W^T` for `m` rows of x. `out` must not alias `x`.
pub fn encode(rec: &mut Recorder<'_>, w: &Matrix, x: &GpuBuffer, m: usize, out: &GpuBuffer) -> Result<()> {
    need("matmul", "x", x, m * w.cols)?;
    need("matmul", "out", out, m * w.rows)?;
    for chunk in &w.chunks {
        let kernel = rec.gpu().kernel(&SPEC, &weight_variant(chunk.dtype, &[]))?;
        let params = Params {
            m: m as u32,
            n: chunk.rows.len() as u32,
            k: w.cols as u32,
            row_words: chunk.row_words as u32,
            out_stride: w.rows as u32,
            out_offset: chunk.rows.start as u32,
        };
        let groups = [(chunk.rows.len() as u32).div_ceil(TILE), (m as u32).div_ceil(TILE), 1];
        rec.dispatch(&kernel, &params, &[x, &chunk.buffer, out], groups)?;
    }
    Ok(())
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    // (m, rows, k, chunk limit): edges that cut tiles, k not a multiple of the k-slice, split W.
    // k = 256·n and 32·n (whole blocks) split over bindings too.
    let cases = [(1, 1, 1, None), (3, 17, 5, None), (17, 255, 33, None), (65, 257, 17, None), (7, 100, 40, Some(2048)), (128, 64, 256, None), (9, 70, 100, None), (70, 67, 512, Some(5000)), (5, 33, 96, Some(600))];
    super::matrix::check_linear(gpu, seed, "matmul", &cases, encode).await
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::testing::{floor_gpu, gpu, run};
    use super::*;

    #[test]
    fn matches_cpu_reference() {
        run(gpu(), check);
    }

    #[test]
    fn f16_weights_without_shader_f16() {
        run(floor_gpu(), check);
    }
}
