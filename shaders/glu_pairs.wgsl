// Gated product on interleaved pairs: out[i] = act(gu[2i]) * gu[2i + 1], act from
// activation.wgsl (prepended). gu [2n] f32: the tiled matmul's output for a gate/up matrix whose
// rows alternate (gate 0, up 0, gate 1, ...); out [n] f32.
// Reference: HF act_fn(gate_proj(x)) * up_proj(x).

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gu: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn glu_pairs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    if (i >= p.n) { return; }
    out[i] = gate_act(gu[2u * i]) * gu[2u * i + 1u];
}
