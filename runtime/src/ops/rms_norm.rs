//! RMSNorm over rows, and the variant fused with the residual add.
//! x, out [rows, dim]; weight [dim]. Reference: HF `LlamaRMSNorm`
//! (`x * rsqrt(mean(x^2) + eps) * weight`, computed in f32).

use super::check::{compare, tolerance, CheckFailure, DType, Rng};
use super::{grid, need};
use crate::error::Result;
use crate::gpu::{Binding, GpuBuffer, KernelSpec, Recorder, Variant};

const WG: u32 = 256;
const SOURCE: &str = include_str!("../../../shaders/rms_norm.wgsl");
const BINDINGS: &[Binding] = &[Binding::ReadWrite, Binding::ReadOnly, Binding::ReadOnly, Binding::ReadWrite];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    eps: f32,
}

// One argument per kernel binding and parameter: a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn record(
    rec: &mut Recorder<'_>,
    entry: &'static str,
    x: &GpuBuffer,
    delta: &GpuBuffer,
    weight: &GpuBuffer,
    out: &GpuBuffer,
    rows: usize,
    dim: usize,
    eps: f32,
) -> Result<()> {
    need(entry, "x", x, rows * dim)?;
    need(entry, "weight", weight, dim)?;
    need(entry, "out", out, rows * dim)?;
    let spec = KernelSpec { name: entry, source: SOURCE, entry, bindings: BINDINGS };
    let kernel = rec.gpu().kernel(&spec, &Variant::constants(&[("WG", WG as f64)]))?;
    let params = Params { rows: rows as u32, dim: dim as u32, eps };
    rec.dispatch(&kernel, &params, &[x, delta, weight, out], grid(rec, rows as u32))
}

/// `out = rms_norm(x) * weight` for each of `rows` rows of `dim`. `out` must not alias `x`.
pub fn encode(rec: &mut Recorder<'_>, x: &GpuBuffer, weight: &GpuBuffer, out: &GpuBuffer, rows: usize, dim: usize, eps: f32) -> Result<()> {
    // `delta` is unused by this entry point; bind the weight in its place.
    record(rec, "rms_norm", x, weight, weight, out, rows, dim, eps)
}

/// `x += delta; out = rms_norm(x) * weight` (the residual stream `x` is updated in place).
#[allow(clippy::too_many_arguments)]
pub fn encode_add(
    rec: &mut Recorder<'_>,
    x: &GpuBuffer,
    delta: &GpuBuffer,
    weight: &GpuBuffer,
    out: &GpuBuffer,
    rows: usize,
    dim: usize,
    eps: f32,
) -> Result<()> {
    need("rms_norm_add", "delta", delta, rows * dim)?;
    record(rec, "rms_norm_add", x, delta, weight, out, rows, dim, eps)
}

/// CPU reference (f64 accumulation).
pub fn reference(x: &[f32], weight: &[f32], dim: usize, eps: f32) -> Vec<f32> {
    x.chunks(dim)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / dim as f64;
            let scale = 1.0 / (ms + f64::from(eps)).sqrt();
            row.iter().zip(weight).map(move |(&v, &w)| (f64::from(v) * scale) as f32 * w)
        })
        .collect()
}

pub async fn check(gpu: &crate::Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    for &(rows, dim) in &[(1usize, 1usize), (3, 17), (2, 255), (5, 257), (1, 1000), (17, 64)] {
        let eps = [1e-5f32, 1e-6][rng.below(2) as usize];
        let x = rng.normals(rows * dim, 2.0);
        let delta = rng.normals(rows * dim, 1.0);
        let weight: Vec<f32> = (0..dim).map(|_| rng.range(0.5, 1.5)).collect();
        let xb = GpuBuffer::from_slice(gpu, "x", &x)?;
        let db = GpuBuffer::from_slice(gpu, "delta", &delta)?;
        let wb = GpuBuffer::from_slice(gpu, "weight", &weight)?;
        let out = GpuBuffer::zeroed(gpu, "out", (rows * dim * 4) as u64)?;
        let out2 = GpuBuffer::zeroed(gpu, "out2", (rows * dim * 4) as u64)?;
        let mut rec = Recorder::new(gpu, 8);
        encode(&mut rec, &xb, &wb, &out, rows, dim, eps)?;
        rec.submit()?;
        let want = reference(&x, &weight, dim, eps);
        compare(&format!("rms_norm {rows}x{dim}"), seed, &out.read_f32(gpu).await?, &want, tolerance(DType::F32))?;

        encode_add(&mut rec, &xb, &db, &wb, &out2, rows, dim, eps)?;
        rec.submit()?;
        let sum: Vec<f32> = x.iter().zip(&delta).map(|(a, b)| a + b).collect();
        compare(&format!("rms_norm_add residual {rows}x{dim}"), seed, &xb.read_f32(gpu).await?, &sum, tolerance(DType::F32))?;
        let want = reference(&sum, &weight, dim, eps);
        compare(&format!("rms_norm_add {rows}x{dim}"), seed, &out2.read_f32(gpu).await?, &want, tolerance(DType::F32))?;
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::testing::{gpu, run};
    use super::*;

    #[test]
    fn matches_cpu_reference() {
        run(gpu(), check);
    }
}
