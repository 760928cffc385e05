// Rotary position embedding, Hugging Face convention (rotate_half), fused with the KV-cache
// append: reads the fused projection qkv [n_tokens, q_dim + 2 kv_dim] (q heads, then k heads,
// then v heads), writes rotated q to q_out [n_tokens, n_heads, head_dim] (f32), rotated k and
// plain v into the caches [context, n_kv_heads, head_dim] (pairs of f16 or f32 values: kv_pair,
// see the Prelude in runtime/src/gpu/kernel.rs) at rows start_pos + t. head_dim is even, so a pair never
// straddles heads or tokens, and each pair is written whole by one invocation.
// cos_sin [max_pos, head_dim / 2] holds (cos, sin) of pos * inv_freq[i], computed on the host
// in f64 (GPU sin/cos lose accuracy for large angles).
// HF: apply_rotary_pos_emb: x * cos + rotate_half(x) * sin, i.e. for i < half:
//   out[i] = x[i] cos_i - x[i + half] sin_i,   out[i + half] = x[i + half] cos_i + x[i] sin_i
// Per family (override constants): BIAS adds the projections' biases bias[q_dim + 2 kv_dim]
// to every value read (Qwen2); QK_NORM first RMS-normalizes each q and k head and scales it by
// qk_norm[head_dim] (q) / qk_norm[head_dim..] (k), in f32 (Qwen3, Gemma 3: HF q_norm/k_norm).
// Each invocation recomputes its head's norm (head_dim reads; heads are at most 256 wide).

struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    start_pos: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> k_cache: array<kv_pair>;
@group(0) @binding(4) var<storage, read_write> v_cache: array<kv_pair>;
@group(0) @binding(5) var<storage, read> cos_sin: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;
@group(0) @binding(7) var<storage, read> qk_norm: array<f32>;

override WG: u32 = 256;
override BIAS: bool = false;
override QK_NORM: bool = false;

// Value e of token t's projection row (row starts at qkv[t0]), with its bias.
fn value(t0: u32, e: u32) -> f32 {
    if (BIAS) { return qkv[t0 + e] + bias[e]; }
    return qkv[t0 + e];
}

// A q or k head: its row start, its offset in the row, and (QK_NORM) 1/rms and the offset of
// its norm weights.
struct Head {
    t0: u32,
    off: u32,
    inv_rms: f32,
    w: u32,
}

fn head(t0: u32, off: u32, w: u32) -> Head {
    var inv_rms = 1.0;
    if (QK_NORM) {
        var ss = 0.0;
        for (var d = 0u; d < p.head_dim; d++) {
            let v = value(t0, off + d);
            ss += v * v;
        }
        inv_rms = inverseSqrt(ss / f32(p.head_dim) + p.eps);
    }
    return Head(t0, off, inv_rms, w);
}

// Element d of a head before rotation.
fn element(hd: Head, d: u32) -> f32 {
    let v = value(hd.t0, hd.off + d);
    if (QK_NORM) { return v * hd.inv_rms * qk_norm[hd.w + d]; }
    return v;
}

// Element d of a head rotated to position pos.
fn rotated(hd: Head, d: u32, pos: u32) -> f32 {
    let half = p.head_dim / 2u;
    let j = d % half;
    let cs = cos_sin[pos * half + j];
    let a = element(hd, j);
    let b = element(hd, j + half);
    if (d < half) { return a * cs.x - b * cs.y; }
    return b * cs.x + a * cs.y;
}

@compute @workgroup_size(WG)
fn rope_append(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let hd = p.head_dim;
    let half = hd / 2u;
    let q_dim = p.n_heads * hd;
    let kv_dim = p.n_kv_heads * hd;
    // Per token: one item per rotated pair (i, i + half) of q, one per cache word (two
    // adjacent values) of k and of v.
    let q_items = p.n_heads * half;
    let per_token = q_items + kv_dim;
    let i = (wid.x + wid.y * nwg.x) * WG + lid.x;
    if (i >= p.n_tokens * per_token) { return; }
    let t = i / per_token;
    let r = i % per_token;
    let pos = p.start_pos + t;
    let src = t * (q_dim + 2u * kv_dim);
    let row = pos * kv_dim / 2u; // in words
    if (r < q_items) {
        let h = r / half;
        let j = r % half;
        let dst = (t * p.n_heads + h) * hd;
        let qh = head(src, h * hd, 0u);
        q_out[dst + j] = rotated(qh, j, pos);
        q_out[dst + j + half] = rotated(qh, j + half, pos);
        return;
    }
    let w = r - q_items; // word of the k row, then of the v row
    if (w < kv_dim / 2u) {
        let e = 2u * w;
        let kh = head(src, q_dim + (e / hd) * hd, hd);
        k_cache[row + w] = kv_store(vec2<f32>(rotated(kh, e % hd, pos), rotated(kh, e % hd + 1u, pos)));
    } else {
        let e = q_dim + kv_dim + 2u * (w - kv_dim / 2u);
        v_cache[row + w - kv_dim / 2u] = kv_store(vec2<f32>(value(src, e), value(src, e + 1u)));
    }
}
