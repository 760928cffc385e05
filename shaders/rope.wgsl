// Rotary position embedding, Hugging Face convention (rotate_half), fused with the KV-cache
// append: reads the fused projection qkv [n_tokens, q_dim + 2 kv_dim] (q heads, then k heads,
// then v heads), writes rotated q to q_out [n_tokens, n_heads, head_dim], rotated k and plain v
// into the caches [context, n_kv_heads, head_dim] at rows start_pos + t.
// cos_sin [max_pos, head_dim / 2] holds (cos, sin) of pos * inv_freq[i], computed on the host
// in f64 (GPU sin/cos lose accuracy for large angles).
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
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<f32>;
@group(0) @binding(5) var<storage, read> cos_sin: array<vec2<f32>>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn rope_append(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let hd = p.head_dim;
    let half = hd / 2u;
    let q_dim = p.n_heads * hd;
    let kv_dim = p.n_kv_heads * hd;
    // Per token: one item per rotated pair of q and of k, one per value of v.
    let per_token = (p.n_heads + p.n_kv_heads) * half + kv_dim;
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    if (i >= p.n_tokens * per_token) { return; }
    let t = i / per_token;
    var r = i % per_token;
    let src = t * (q_dim + 2u * kv_dim);
    let row = (p.start_pos + t) * kv_dim;
    if (r >= (p.n_heads + p.n_kv_heads) * half) {
        let e = r - (p.n_heads + p.n_kv_heads) * half;
        v_cache[row + e] = qkv[src + q_dim + kv_dim + e];
        return;
    }
    let j = r % half;
    let h = r / half;
    let cs = cos_sin[(p.start_pos + t) * half + j];
    if (h < p.n_heads) {
        let a = qkv[src + h * hd + j];
        let b = qkv[src + h * hd + j + half];
        let dst = (t * p.n_heads + h) * hd;
        q_out[dst + j] = a * cs.x - b * cs.y;
        q_out[dst + j + half] = b * cs.x + a * cs.y;
    } else {
        let kh = h - p.n_heads;
        let a = qkv[src + q_dim + kh * hd + j];
        let b = qkv[src + q_dim + kh * hd + j + half];
        k_cache[row + kh * hd + j] = a * cs.x - b * cs.y;
        k_cache[row + kh * hd + j + half] = b * cs.x + a * cs.y;
    }
}
