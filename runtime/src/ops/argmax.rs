//! Argmax of each row: x [rows, dim] -> out [rows] u32, ties to the smallest index as
//! `torch.argmax` does (greedy decoding must pick the same token).

use super::check::{compare_exact, CheckFailure, Rng};
use super::{grid, need};
use crate::error::Result;
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder, Variant};

const WG: u32 = 256;
const SPEC: KernelSpec = KernelSpec {
    name: "argmax",
    source: include_str!("../../../shaders/argmax.wgsl"),
    entry: "argmax",
    bindings: &[Binding::ReadOnly, Binding::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
}

pub fn encode(rec: &mut Recorder<'_>, x: &GpuBuffer, out: &GpuBuffer, rows: usize, dim: usize) -> Result<()> {
    need("argmax", "x", x, rows * dim)?;
    need("argmax", "out", out, rows)?;
    let kernel = rec.gpu().kernel(&SPEC, &Variant::constants(&[("WG", WG as f64)]))?;
    rec.dispatch(&kernel, &Params { rows: rows as u32, dim: dim as u32 }, &[x, out], grid(rec, rows as u32))
}

/// CPU reference: first index of the maximum; NaN never wins.
pub fn reference(x: &[f32], dim: usize) -> Vec<u32> {
    x.chunks(dim)
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] || row[best].is_nan() && !v.is_nan() {
                    best = i;
                }
            }
            best as u32
        })
        .collect()
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    for &(rows, dim) in &[(1usize, 1usize), (3, 17), (2, 255), (5, 257), (1, 32000), (2, 50304)] {
        let mut x = rng.normals(rows * dim, 1.0);
        // Plant ties: the first occurrence must win.
        for r in 0..rows {
            let row = &mut x[r * dim..(r + 1) * dim];
            let a = rng.below(dim as u32) as usize;
            let b = rng.below(dim as u32) as usize;
            row[a] = 10.0;
            row[b] = 10.0;
        }
        let xb = GpuBuffer::from_slice(gpu, "x", &x)?;
        let out = GpuBuffer::zeroed(gpu, "out", rows as u64 * 4)?;
        let mut rec = Recorder::new(gpu, 1);
        encode(&mut rec, &xb, &out, rows, dim)?;
        rec.submit()?;
        compare_exact(&format!("argmax {rows}x{dim}"), seed, &out.read_u32(gpu).await?, &reference(&x, dim))?;
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
