//! Elementwise add in place: x += y over n values (the residual connection).

use super::check::{compare, tolerance, CheckFailure, DType, Rng};
use super::{grid, need};
use crate::error::Result;
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder, Variant};

const WG: u32 = 256;
const SPEC: KernelSpec = KernelSpec {
    name: "add",
    source: include_str!("../../../shaders/add.wgsl"),
    entry: "add",
    bindings: &[Binding::ReadWrite, Binding::ReadOnly],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
}

pub fn encode(rec: &mut Recorder<'_>, x: &GpuBuffer, y: &GpuBuffer, n: usize) -> Result<()> {
    need("add", "x", x, n)?;
    need("add", "y", y, n)?;
    let kernel = rec.gpu().kernel(&SPEC, &Variant::constants(&[("WG", WG as f64)]))?;
    rec.dispatch(&kernel, &Params { n: n as u32 }, &[x, y], grid(rec, (n as u32).div_ceil(WG)))
}

pub fn reference(x: &[f32], y: &[f32]) -> Vec<f32> {
    x.iter().zip(y).map(|(a, b)| a + b).collect()
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    // 17 million values need more than 65535 workgroups of 256: exercises the folded grid.
    for &n in &[1usize, 3, 17, 255, 257, 4099, 17_000_000] {
        let x = rng.normals(n, 1.0);
        let y = rng.normals(n, 1.0);
        let (xb, yb) = (GpuBuffer::from_slice(gpu, "x", &x)?, GpuBuffer::from_slice(gpu, "y", &y)?);
        let mut rec = Recorder::new(gpu, 1);
        encode(&mut rec, &xb, &yb, n)?;
        rec.submit()?;
        compare(&format!("add n {n}"), seed, &xb.read_f32(gpu).await?, &reference(&x, &y), tolerance(DType::F32))?;
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
