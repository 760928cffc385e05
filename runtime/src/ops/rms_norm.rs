//! RMSNorm over rows, and the variant fused with the residual add (which can also normalise
//! the branch output before adding it: Gemma's post-attention and post-feedforward norms).
//! x, out [rows, dim]; weight [dim]. Reference: HF `LlamaRMSNorm`
//! (`x * rsqrt(mean(x^2) + eps) * weight`, computed in f32; Gemma's `1 + w` is added to the
//! weights at load).

use super::check::{compare, tolerance, CheckFailure, DType, Rng};
use super::{grid, need};
use crate::error::Result;
use crate::gpu::{Binding, GpuBuffer, KernelSpec, Recorder, Variant};

const WG: u32 = 256;
const SOURCE: &str = include_str!("../../../shaders/rms_norm.wgsl");
const BINDINGS: &[Binding] = &[Binding::ReadWrite, Binding::ReadOnly, Binding::ReadOnly, Binding::ReadWrite, Binding::ReadOnly];

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
    delta_weight: Option<&GpuBuffer>,
    weight: &GpuBuffer,
    out: &GpuBuffer,
    rows: usize,
    dim: usize,
    eps: f32,
) -> Result<()> {
    need(entry, "x", x, rows * dim)?;
    need(entry, "weight", weight, dim)?;
    need(entry, "out", out, rows * dim)?;
    if let Some(w) = delta_weight {
        need(entry, "delta weight", w, dim)?;
    }
    let spec = KernelSpec { name: entry, source: SOURCE, entry, bindings: BINDINGS };
    let constants = [("WG", WG as f64), ("NORM_DELTA", if delta_weight.is_some() { 1.0 } else { 0.0 })];
    let kernel = rec.gpu().kernel(&spec, &Variant::constants(&constants))?;
    let params = Params { rows: rows as u32, dim: dim as u32, eps };
    // Without a delta norm its binding holds the weight (read-only, never read).
    rec.dispatch(&kernel, &params, &[x, delta, weight, out, delta_weight.unwrap_or(weight)], grid(rec, rows as u32))
}

/// `out = rms_norm(x) * weight` for each of `rows` rows of `dim`. `out` must not alias `x`.
pub fn encode(rec: &mut Recorder<'_>, x: &GpuBuffer, weight: &GpuBuffer, out: &GpuBuffer, rows: usize, dim: usize, eps: f32) -> Result<()> {
    // `delta` is unused by this entry point; bind the weight in its place.
    record(rec, "rms_norm", x, weight, None, weight, out, rows, dim, eps)
}

/// `x += delta; out = rms_norm(x) * weight` (the residual stream `x` is updated in place); with
/// `delta_weight`, `x += rms_norm(delta) * delta_weight` (both norms with `eps`).
#[allow(clippy::too_many_arguments)]
pub fn encode_add(
    rec: &mut Recorder<'_>,
    x: &GpuBuffer,
    delta: &GpuBuffer,
    delta_weight: Option<&GpuBuffer>,
    weight: &GpuBuffer,
    out: &GpuBuffer,
    rows: usize,
    dim: usize,
    eps: f32,
) -> Result<()> {
    need("rms_norm_add", "delta", delta, rows * dim)?;
    record(rec, "rms_norm_add", x, delta, delta_weight, weight, out, rows, dim, eps)
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
        let delta_weight: Vec<f32> = (0..dim).map(|_| rng.range(-1.0, 2.0)).collect();
        let dwb = GpuBuffer::from_slice(gpu, "delta weight", &delta_weight)?;
        let mut rec = Recorder::new(gpu, 8);
        encode(&mut rec, &xb, &wb, &out, rows, dim, eps)?;
        rec.submit()?;
        let want = reference(&x, &weight, dim, eps);
        compare(&format!("rms_norm {rows}x{dim}"), seed, &out.read_f32(gpu).await?, &want, tolerance(DType::F32))?;

        encode_add(&mut rec, &xb, &db, None, &wb, &out2, rows, dim, eps)?;
        rec.submit()?;
        let sum: Vec<f32> = x.iter().zip(&delta).map(|(a, b)| a + b).collect();
        compare(&format!("rms_norm_add residual {rows}x{dim}"), seed, &xb.read_f32(gpu).await?, &sum, tolerance(DType::F32))?;
        let want = reference(&sum, &weight, dim, eps);
        compare(&format!("rms_norm_add {rows}x{dim}"), seed, &out2.read_f32(gpu).await?, &want, tolerance(DType::F32))?;

        // The branch normalised before the add (x now holds `sum`).
        encode_add(&mut rec, &xb, &db, Some(&dwb), &wb, &out2, rows, dim, eps)?;
        rec.submit()?;
        let normed = reference(&delta, &delta_weight, dim, eps);
        let sum2: Vec<f32> = sum.iter().zip(&normed).map(|(a, b)| a + b).collect();
        compare(&format!("rms_norm_add normed delta, residual {rows}x{dim}"), seed, &xb.read_f32(gpu).await?, &sum2, tolerance(DType::F32))?;
        let want = reference(&sum2, &weight, dim, eps);
        compare(&format!("rms_norm_add normed delta {rows}x{dim}"), seed, &out2.read_f32(gpu).await?, &want, tolerance(DType::F32))?;
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
