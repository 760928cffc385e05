// Causal attention with grouped-query heads over a KV cache.
// q [n_tokens, n_heads, head_dim] f32; k_cache, v_cache [positions, n_kv_heads, head_dim] of
// f16 or f32 values (kv_pair, see the Prelude in runtime/src/gpu/kernel.rs; head_dim even); query
// head h reads kv head h / (n_heads / n_kv_heads) (HF: repeat_kv). Query t sits at position
// start_pos + t and attends to keys 0 ..= start_pos + t (HF: eager_attention_forward with the
// causal mask): out = softmax(q k^T * scale) v. scale is the family's (1/sqrt(head_dim), or
// Gemma's query_pre_attn_scalar^-1/2). A sliding-window layer (window > 0) sees only the latest
// `window` keys, itself included: keys start_pos + t + 1 - window ..= start_pos + t (HF's
// sliding_window_overlay: kv_idx > q_idx - window); decode never reads the keys before them.
//
// One workgroup handles one (query, head) over a range of keys, in blocks of WG keys: each
// invocation scores one key of the block, then each invocation owns head_dim / WG output dims
// and folds the block in with the online-softmax rescaling of FlashAttention (running max m,
// running denominator l). head_dim <= WG * MAXD.
//   attn_prefill:        all keys of each query, causal; out [n_tokens, n_heads, head_dim].
//   attn_decode_partial: one query, keys first_key..n_keys split into chunks of `chunk` so long
//                        caches spread over many workgroups (flash-decoding); writes (m, l, acc)
//                        per split.
//   attn_decode_combine: merges the splits of each head into out [n_heads, head_dim].

struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    start_pos: u32,
    n_keys: u32,
    chunk: u32,
    n_splits: u32,
    scale: f32,
    window: u32,    // 0: every earlier key
    first_key: u32, // decode: the first key in the window
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<kv_pair>;
@group(0) @binding(3) var<storage, read> v_cache: array<kv_pair>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
const MAXD: u32 = 4u;
const NEG: f32 = -3.0e38;

var<workgroup> sh_q: array<f32, 256>;
var<workgroup> sh_p: array<f32, 64>;

struct State {
    m: f32,
    l: f32,
    acc: array<f32, 4>,
}

// Attends query (at q[q_base..]) of head h to keys [lo, hi). lo < hi, uniform per workgroup.
fn attend(q_base: u32, h: u32, lo: u32, hi: u32, lane: u32) -> State {
    let hd = p.head_dim;
    let kvh = h / (p.n_heads / p.n_kv_heads);
    let row = p.n_kv_heads * hd;
    for (var d = lane; d < hd; d += WG) { sh_q[d] = q[q_base + d]; }
    workgroupBarrier();
    var st: State;
    st.m = NEG;
    st.l = 0.0;
    for (var b0 = lo; b0 < hi; b0 += WG) {
        let j = b0 + lane;
        var s = NEG;
        if (j < hi) {
            let kb = j * row + kvh * hd;
            var dotp = 0.0;
            for (var d = 0u; d < hd; d += 2u) {
                let kv = kv_load(k_cache[(kb + d) / 2u]);
                dotp += sh_q[d] * kv.x + sh_q[d + 1u] * kv.y;
            }
            s = dotp * p.scale;
        }
        sh_p[lane] = s;
        workgroupBarrier();
        let nb = min(WG, hi - b0);
        var bm = NEG;
        for (var i = 0u; i < nb; i++) { bm = max(bm, sh_p[i]); }
        let m_new = max(st.m, bm);
        workgroupBarrier();
        sh_p[lane] = select(0.0, exp(s - m_new), j < hi);
        workgroupBarrier();
        let corr = exp(st.m - m_new);
        var psum = 0.0;
        for (var i = 0u; i < nb; i++) { psum += sh_p[i]; }
        st.l = st.l * corr + psum;
        for (var c = 0u; c < MAXD; c++) {
            let d = lane + c * WG;
            if (d < hd) {
                var a = st.acc[c] * corr;
                let odd = (d & 1u) == 1u; // row and head offsets are even
                for (var i = 0u; i < nb; i++) {
                    let pair = kv_load(v_cache[((b0 + i) * row + kvh * hd + d) / 2u]);
                    a += sh_p[i] * select(pair.x, pair.y, odd);
                }
                st.acc[c] = a;
            }
        }
        st.m = m_new;
        workgroupBarrier();
    }
    return st;
}

@compute @workgroup_size(WG)
fn attn_prefill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = wid.x + wid.y * nwg.x; // t * n_heads + h
    if (idx >= p.n_tokens * p.n_heads) { return; }
    let t = idx / p.n_heads;
    let h = idx % p.n_heads;
    let base = idx * p.head_dim;
    let end = p.start_pos + t + 1u;
    var lo = 0u;
    if (p.window > 0u && end > p.window) { lo = end - p.window; }
    let st = attend(base, h, lo, end, lid.x);
    for (var c = 0u; c < MAXD; c++) {
        let d = lid.x + c * WG;
        if (d < p.head_dim) { out[base + d] = st.acc[c] / st.l; }
    }
}

@compute @workgroup_size(WG)
fn attn_decode_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = wid.x + wid.y * nwg.x; // h * n_splits + split
    if (idx >= p.n_heads * p.n_splits) { return; }
    let h = idx / p.n_splits;
    let lo = p.first_key + (idx % p.n_splits) * p.chunk;
    let hi = min(lo + p.chunk, p.n_keys);
    let st = attend(h * p.head_dim, h, lo, hi, lid.x);
    let base = idx * (p.head_dim + 2u);
    if (lid.x == 0u) {
        out[base] = st.m;
        out[base + 1u] = st.l;
    }
    for (var c = 0u; c < MAXD; c++) {
        let d = lid.x + c * WG;
        if (d < p.head_dim) { out[base + 2u + d] = st.acc[c]; }
    }
}

// Bindings reused: q = the partials [n_heads, n_splits, 2 + head_dim]; out [n_heads, head_dim].
@compute @workgroup_size(WG)
fn attn_decode_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let h = wid.x;
    if (h >= p.n_heads) { return; }
    let stride = p.head_dim + 2u;
    var m = NEG;
    for (var s = 0u; s < p.n_splits; s++) { m = max(m, q[(h * p.n_splits + s) * stride]); }
    var l = 0.0;
    for (var s = 0u; s < p.n_splits; s++) {
        let b = (h * p.n_splits + s) * stride;
        l += exp(q[b] - m) * q[b + 1u];
    }
    for (var d = lid.x; d < p.head_dim; d += WG) {
        var a = 0.0;
        for (var s = 0u; s < p.n_splits; s++) {
            let b = (h * p.n_splits + s) * stride;
            a += exp(q[b] - m) * q[b + 2u + d];
        }
        out[h * p.head_dim + d] = a / l;
    }
}
