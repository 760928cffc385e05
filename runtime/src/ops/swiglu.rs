//! SiLU-gated product: out = silu(gate) * up, elementwise over n values (or over interleaved
//! gate/up pairs).
//! Reference: HF `LlamaMLP` (`act_fn(gate_proj(x)) * up_proj(x)`, act_fn = SiLU).

use super::check::{compare, tolerance, CheckFailure, DType, Rng};
use super::{grid, need};
use crate::error::Result;
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder, Variant};

const WG: u32 = 256;
const SPEC: KernelSpec = KernelSpec {
    name: "swiglu",
    source: include_str!("../../../shaders/swiglu.wgsl"),
    entry: "swiglu",
    bindings: &[Binding::ReadOnly, Binding::ReadOnly, Binding::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
}

pub fn encode(rec: &mut Recorder<'_>, gate: &GpuBuffer, up: &GpuBuffer, out: &GpuBuffer, n: usize) -> Result<()> {
    need("swiglu", "gate", gate, n)?;
    need("swiglu", "up", up, n)?;
    need("swiglu", "out", out, n)?;
    let kernel = rec.gpu().kernel(&SPEC, &Variant::constants(&[("WG", WG as f64)]))?;
    rec.dispatch(&kernel, &Params { n: n as u32 }, &[gate, up, out], grid(rec, (n as u32).div_ceil(WG)))
}

const PAIRS: KernelSpec = KernelSpec {
    name: "swiglu_pairs",
    source: include_str!("../../../shaders/swiglu_pairs.wgsl"),
    entry: "swiglu_pairs",
    bindings: &[Binding::ReadOnly, Binding::ReadWrite],
};

/// `out[i] = silu(gu[2i]) * gu[2i + 1]` for i < n: gate and up interleaved (the prefill output
/// of an interleaved gate/up matrix).
pub fn encode_pairs(rec: &mut Recorder<'_>, gu: &GpuBuffer, out: &GpuBuffer, n: usize) -> Result<()> {
    need("swiglu", "gate/up pairs", gu, 2 * n)?;
    need("swiglu", "out", out, n)?;
    let kernel = rec.gpu().kernel(&PAIRS, &Variant::constants(&[("WG", WG as f64)]))?;
    rec.dispatch(&kernel, &Params { n: n as u32 }, &[gu, out], grid(rec, (n as u32).div_ceil(WG)))
}

/// CPU reference (f64).
pub fn reference(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter().zip(up).map(|(&g, &u)| (f64::from(g) / (1.0 + (-f64::from(g)).exp()) * f64::from(u)) as f32).collect()
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    for &n in &[1usize, 3, 17, 255, 257, 5632, 70_000] {
        let mut gate = rng.normals(n, 3.0);
        gate[0] = -100.0; // exp(-g) overflows: silu must still be -0
        let up = rng.normals(n, 1.0);
        let (gb, ub) = (GpuBuffer::from_slice(gpu, "gate", &gate)?, GpuBuffer::from_slice(gpu, "up", &up)?);
        let out = GpuBuffer::zeroed(gpu, "out", n as u64 * 4)?;
        let mut rec = Recorder::new(gpu, 1);
        encode(&mut rec, &gb, &ub, &out, n)?;
        rec.submit()?;
        compare(&format!("swiglu n {n}"), seed, &out.read_f32(gpu).await?, &reference(&gate, &up), tolerance(DType::F32))?;
        let pairs: Vec<f32> = gate.iter().zip(&up).flat_map(|(&g, &u)| [g, u]).collect();
        let pb = GpuBuffer::from_slice(gpu, "pairs", &pairs)?;
        let mut rec = Recorder::new(gpu, 1);
        encode_pairs(&mut rec, &pb, &out, n)?;
        rec.submit()?;
        compare(&format!("swiglu pairs n {n}"), seed, &out.read_f32(gpu).await?, &reference(&gate, &up), tolerance(DType::F32))?;
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
