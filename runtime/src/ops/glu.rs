//! Gated product of a gated MLP: out = act(gate) * up, elementwise over n values (or over
//! interleaved gate/up pairs), with the family's gate activation: SiLU (SwiGLU: Llama, Qwen) or
//! GELU with the tanh approximation (GeGLU: Gemma).
//! Reference: HF `LlamaMLP` / `Gemma3MLP` (`act_fn(gate_proj(x)) * up_proj(x)`).

use super::check::{compare, tolerance, CheckFailure, DType, Rng};
use super::{grid, need};
use crate::error::Result;
use crate::gpu::{Binding, Gpu, GpuBuffer, KernelSpec, Recorder, Variant};

/// The gate activation of a gated MLP (shaders/activation.wgsl, override constant `ACT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// HF "silu": g / (1 + e^-g).
    Silu,
    /// HF "gelu_pytorch_tanh": 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))).
    GeluTanh,
}

impl Activation {
    pub const ALL: [Activation; 2] = [Activation::Silu, Activation::GeluTanh];

    /// The name config.json gives it (`hidden_act` / `hidden_activation`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Silu => "silu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
        }
    }

    /// The value of the shaders' `ACT` override constant.
    pub(crate) fn constant(self) -> f64 {
        match self {
            Activation::Silu => 0.0,
            Activation::GeluTanh => 1.0,
        }
    }

    /// CPU reference (f64).
    pub fn apply(self, g: f64) -> f64 {
        match self {
            Activation::Silu => g / (1.0 + (-g).exp()),
            Activation::GeluTanh => 0.5 * g * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g)).tanh()),
        }
    }
}

const WG: u32 = 256;
const SPEC: KernelSpec = KernelSpec {
    name: "glu",
    source: concat!(include_str!("../../../shaders/activation.wgsl"), include_str!("../../../shaders/glu.wgsl")),
    entry: "glu",
    bindings: &[Binding::ReadOnly, Binding::ReadOnly, Binding::ReadWrite],
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
}

fn variant(act: Activation) -> Variant {
    Variant::constants(&[("WG", WG as f64), ("ACT", act.constant())])
}

/// `out[i] = act(gate[i]) * up[i]` for i < n.
pub fn encode(rec: &mut Recorder<'_>, gate: &GpuBuffer, up: &GpuBuffer, out: &GpuBuffer, n: usize, act: Activation) -> Result<()> {
    need("glu", "gate", gate, n)?;
    need("glu", "up", up, n)?;
    need("glu", "out", out, n)?;
    let kernel = rec.gpu().kernel(&SPEC, &variant(act))?;
    rec.dispatch(&kernel, &Params { n: n as u32 }, &[gate, up, out], grid(rec, (n as u32).div_ceil(WG)))
}

const PAIRS: KernelSpec = KernelSpec {
    name: "glu_pairs",
    source: concat!(include_str!("../../../shaders/activation.wgsl"), include_str!("../../../shaders/glu_pairs.wgsl")),
    entry: "glu_pairs",
    bindings: &[Binding::ReadOnly, Binding::ReadWrite],
};

/// `out[i] = act(gu[2i]) * gu[2i + 1]` for i < n: gate and up interleaved (the prefill output
/// of an interleaved gate/up matrix).
pub fn encode_pairs(rec: &mut Recorder<'_>, gu: &GpuBuffer, out: &GpuBuffer, n: usize, act: Activation) -> Result<()> {
    need("glu", "gate/up pairs", gu, 2 * n)?;
    need("glu", "out", out, n)?;
    let kernel = rec.gpu().kernel(&PAIRS, &variant(act))?;
    rec.dispatch(&kernel, &Params { n: n as u32 }, &[gu, out], grid(rec, (n as u32).div_ceil(WG)))
}

/// CPU reference (f64).
pub fn reference(gate: &[f32], up: &[f32], act: Activation) -> Vec<f32> {
    gate.iter().zip(up).map(|(&g, &u)| (act.apply(f64::from(g)) * f64::from(u)) as f32).collect()
}

pub async fn check(gpu: &Gpu, seed: u64) -> Result<(), CheckFailure> {
    let mut rng = Rng::new(seed);
    for act in Activation::ALL {
        for &n in &[1usize, 3, 17, 255, 257, 5632, 70_000] {
            let mut gate = rng.normals(n, 3.0);
            // Saturated ends: silu's exp(-g) and tanh's exp(2u) overflow; the limits (-0, g)
            // must come out, not NaN.
            gate[0] = -100.0;
            if n > 2 {
                gate[1] = 100.0;
                gate[2] = -12.0;
            }
            let up = rng.normals(n, 1.0);
            let (gb, ub) = (GpuBuffer::from_slice(gpu, "gate", &gate)?, GpuBuffer::from_slice(gpu, "up", &up)?);
            let out = GpuBuffer::zeroed(gpu, "out", n as u64 * 4)?;
            let want = reference(&gate, &up, act);
            let mut rec = Recorder::new(gpu, 1);
            encode(&mut rec, &gb, &ub, &out, n, act)?;
            rec.submit()?;
            compare(&format!("glu {} n {n}", act.name()), seed, &out.read_f32(gpu).await?, &want, tolerance(DType::F32))?;
            let pairs: Vec<f32> = gate.iter().zip(&up).flat_map(|(&g, &u)| [g, u]).collect();
            let pb = GpuBuffer::from_slice(gpu, "pairs", &pairs)?;
            let mut rec = Recorder::new(gpu, 1);
            encode_pairs(&mut rec, &pb, &out, n, act)?;
            rec.submit()?;
            compare(&format!("glu pairs {} n {n}", act.name()), seed, &out.read_f32(gpu).await?, &want, tolerance(DType::F32))?;
        }
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

    /// The reference itself against known values of the two activations.
    #[test]
    fn reference_activations_have_known_values() {
        assert!((Activation::Silu.apply(1.0) - 0.731_058_578_630_004_9).abs() < 1e-12);
        // torch.nn.functional.gelu(torch.tensor(1.0, dtype=torch.float64), approximate="tanh")
        assert!((Activation::GeluTanh.apply(1.0) - 0.841_191_990_607_477_2).abs() < 1e-12);
        assert_eq!(Activation::GeluTanh.apply(-100.0), -0.0);
    }
}
