// SiLU-gated product (SwiGLU): out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g))
// gate, up, out [n] f32 (out may be gate's buffer only through a separate binding, never
// aliased). Reference: HF LlamaMLP, act_fn(gate_proj(x)) * up_proj(x) with act_fn = SiLU.

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    if (i >= p.n) { return; }
    let g = gate[i];
    // exp(-g) overflows to inf for g < -88: g / inf = -0, the right limit.
    out[i] = g / (1.0 + exp(-g)) * up[i];
}
