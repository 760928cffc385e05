// Rotary position embedding, Hugging Face convention (rotate_half), in place on Q and K.
// q [n_tokens, n_heads, head_dim], k [n_tokens, n_kv_heads, head_dim]; token t sits at position
// start_pos + t. cos_sin [max_pos, head_dim / 2] holds (cos, sin) of pos * inv_freq[i], computed
// on the host in f64 (GPU sin/cos lose accuracy for large angles).
// HF: apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, i.e. for i < half:
//   out[i] = x[i] cos_i - x[i + half] sin_i,   out[i + half] = x[i + half] cos_i + x[i] sin_i

struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    start_pos: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read_write> k: array<f32>;
@group(0) @binding(3) var<storage, read> cos_sin: array<vec2<f32>>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let half = p.head_dim / 2u;
    let heads = p.n_heads + p.n_kv_heads;
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    if (i >= p.n_tokens * heads * half) { return; }
    let j = i % half;
    let h = (i / half) % heads;
    let t = i / (half * heads);
    let cs = cos_sin[(p.start_pos + t) * half + j];
    if (h < p.n_heads) {
        let base = (t * p.n_heads + h) * p.head_dim;
        let a = q[base + j];
        let b = q[base + j + half];
        q[base + j] = a * cs.x - b * cs.y;
        q[base + j + half] = b * cs.x + a * cs.y;
    } else {
        let base = (t * p.n_kv_heads + (h - p.n_heads)) * p.head_dim;
        let a = k[base + j];
        let b = k[base + j + half];
        k[base + j] = a * cs.x - b * cs.y;
        k[base + j + half] = b * cs.x + a * cs.y;
    }
}
