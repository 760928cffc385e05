// Buffer copy through a kernel: dst[i] = src[i] over n vec4<u32> words. Not used by models: it
// measures the bandwidth ceiling a memory-bound kernel can reach on this adapter (cria bench).

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    if (i >= p.n) { return; }
    dst[i] = src[i];
}
