//! Tiled matrix-matrix product for prefill: out [m, rows] = x [m, k] · W [rows, k]^T,
//! f32 or f16 weights. Reference: HF `nn.Linear` (bias-free).

use super::check::{compare, tolerance, CheckFailure, DType, Rng};
use super::matvec::reference;
use super::{need, Matrix, WeightDType};
use crate::error::{Error, Result};
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder, Variant};

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

fn spec(dtype: WeightDType) -> KernelSpec {
    let entry = match dtype {
        WeightDType::F32 => "matmul_f32",
        WeightDType::F16 => "matmul_f16",
    };
    KernelSpec { name: entry, source: include_str!("../../../shaders/matmul.wgsl"), entry, bindings: BINDINGS }
}

/// Records `out = x W^T` for `m` rows of x. `out` must not alias `x`.
pub fn encode(rec: &mut Recorder<'_>, w: &Matrix, x: &GpuBuffer, m: usize, out: &GpuBuffer) -> Result<()> {
    need("matmul", "x", x, m * w.cols)?;
    need("matmul", "out", out, m * w.rows)?;
    if w.cols == 0 {
        return Err(Error::shape("matmul", format!("columns of {}", w.name), ">= 1", 0));
    }
    let kernel = rec.gpu().kernel(&spec(w.dtype), &Variant::default())?;
    for chunk in &w.chunks {
        let params = Params {
            m: m as u32,
            n: chunk.rows.len() as u32,
            k: w.cols as u32,
            row_words: w.row_words as u32,
            out_stride: w.rows as u32,
            out_offset: chunk.rows.start as u32,
        };
        let groups = [(chunk.rows.len() as u32).div_ceil(TILE), (m as u32).div_ceil(TILE), 1];
        rec.dispatch(&kernel, &params, &[x, &chunk.buffer, out], groups)?;
    }
    Ok(())
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    // (m, rows, k, chunk limit): edges that cut tiles, k not a multiple of the k-slice, split W.
    let cases = [(1usize, 1usize, 1usize, None), (3, 17, 5, None), (17, 255, 33, None), (65, 257, 17, None), (7, 100, 40, Some(2048u64)), (128, 64, 256, None)];
    for &(m, rows, k, limit) in &cases {
        for dtype in [WeightDType::F32, WeightDType::F16] {
            let data = rng.normals(rows * k, 1.0);
            let w = Matrix::from_f32_with_limit(gpu, "w", rows, k, dtype, &data, limit.unwrap_or(u64::MAX))?;
            let x = rng.normals(m * k, 1.0);
            let xb = GpuBuffer::from_slice(gpu, "x", &x)?;
            let out = GpuBuffer::zeroed(gpu, "out", (m * rows * 4) as u64)?;
            let mut rec = Recorder::new(gpu, 64);
            encode(&mut rec, &w, &xb, m, &out)?;
            rec.submit()?;
            let want = reference(&x, &Matrix::stored_values(dtype, &data), m, rows, k);
            let what = format!("matmul {dtype:?} {m}x{k} · ({rows}x{k})^T ({} chunks)", w.chunks.len());
            compare(&what, seed, &out.read_f32(gpu).await?, &want, tolerance(DType::F32))?;
        }
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::testing::{floor_gpu, gpu, run};
    use super::*;

    #[test]
    fn matches_cpu_reference() {
        run(gpu(), |g, s| check(g, s));
    }

    #[test]
    fn f16_weights_without_shader_f16() {
        run(floor_gpu(), |g, s| check(g, s));
    }
}
