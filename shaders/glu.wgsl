// Gated product: out[i] = act(gate[i]) * up[i], act from activation.wgsl (prepended): SiLU
// (SwiGLU, HF LlamaMLP) or GELU-tanh (GeGLU, HF Gemma3MLP).
// gate, up, out [n] f32 (out may be gate's buffer only through a separate binding, never
// aliased). Reference: HF act_fn(gate_proj(x)) * up_proj(x).

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn glu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    if (i >= p.n) { return; }
    out[i] = gate_act(gate[i]) * up[i];
}
