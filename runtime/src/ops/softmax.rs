//! Softmax over rows, in place. x [rows, dim]. Reference: `torch.softmax(x, dim=-1)`.

use super::check::{compare, tolerance, CheckFailure, DType, Rng};
use super::{grid, need};
use crate::error::Result;
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder, Variant};

const WG: u32 = 256;
const SPEC: KernelSpec = KernelSpec {
    name: "softmax",
    source: include_str!("../../../shaders/softmax.wgsl"),
    entry: "softmax",
    bindings: &[Binding::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
}

pub fn encode(rec: &mut Recorder<'_>, x: &GpuBuffer, rows: usize, dim: usize) -> Result<()> {
    need("softmax", "x", x, rows * dim)?;
    let kernel = rec.gpu().kernel(&SPEC, &Variant::constants(&[("WG", WG as f64)]))?;
    rec.dispatch(&kernel, &Params { rows: rows as u32, dim: dim as u32 }, &[x], grid(rec, rows as u32))
}

/// CPU reference (f64).
pub fn reference(x: &[f32], dim: usize) -> Vec<f32> {
    x.chunks(dim)
        .flat_map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f64> = row.iter().map(|&v| f64::from(v - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            exps.into_iter().map(move |e| (e / total) as f32)
        })
        .collect()
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    for &(rows, dim) in &[(1usize, 1usize), (3, 17), (2, 255), (4, 257), (1, 5000), (17, 3)] {
        let x = rng.normals(rows * dim, 4.0);
        let xb = GpuBuffer::from_slice(gpu, "x", &x)?;
        let mut rec = Recorder::new(gpu, 1);
        encode(&mut rec, &xb, rows, dim)?;
        rec.submit()?;
        compare(&format!("softmax {rows}x{dim}"), seed, &xb.read_f32(gpu).await?, &reference(&x, dim), tolerance(DType::F32))?;
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
