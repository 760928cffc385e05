// Matrix-vector product for decode: y[out_offset + r] = sum_k W[r, k] * x[k], and for a few
// tokens at once (short prefills), token t = workgroup_id.z: x[t * k ..], y[t * y_stride ..].
// W: rows [0, rows) of one Matrix chunk, stored as u32 words, row_words per row (a multiple of
// 4, so every row starts on a vec4<u32>); x [k] f32; y [>= out_offset + rows] f32.
// Reference: HF nn.Linear without bias (x @ W^T).
//
// ROWS rows per workgroup; the WG invocations stride along each row (adjacent invocations read
// adjacent 16-byte words, so loads coalesce) and a tree reduction in workgroup memory finishes.
// f32, f16, bf16, Q8_0 and Q4_0 weights (KIND, see runtime/src/ops/matrix.rs): no f16
// arithmetic, no subgroups (the portability floor).
// Quantized rows (see runtime/src/quant): each invocation takes whole 32-value blocks (Q8_0: two
// vec4<u32> of int8, Q4_0: one vec4<u32> of nibbles), scales as f16 pairs after the quants.

struct Params {
    rows: u32,
    k: u32,
    row_words: u32,
    out_offset: u32,
    y_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

override WG: u32 = 64;  // power of two
override ROWS: u32 = 4; // WG * ROWS <= 1024
// Fused SwiGLU: rows come in (gate, up) pairs (an interleaved Matrix; chunks start at even
// rows, ROWS is even) and y[pair] = silu(gate · x) * (up · x), y_stride counting pairs.
override GLU: bool = false;
// Weight type: 0 f32, 1 f16, 2 q8_0, 3 q4_0, 4 bf16 (WeightDType::kind).
override KIND: u32 = 0;
var<workgroup> partial: array<f32, 1024>;

var<private> x0: u32; // this token's offset in x

fn x4(k: u32) -> vec4<f32> {
    let i = x0 + k;
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}

fn x1(k: u32) -> f32 {
    return x[x0 + k];
}

// One scalar weight of the f32 layout.
fn w_f32(word: u32) -> f32 {
    return bitcast<f32>(w[word / 4u][word % 4u]);
}

// Per-row partial dot products of the f32 layout.
fn dot_f32(row: u32, lane: u32) -> f32 {
    let base = row * p.row_words / 4u; // in vec4 words
    let full = p.k / 4u;
    var acc = 0.0;
    for (var i = lane; i < full; i += WG) {
        acc += dot(bitcast<vec4<f32>>(w[base + i]), x4(i * 4u));
    }
    for (var kk = full * 4u + lane; kk < p.k; kk += WG) {
        acc += w_f32(row * p.row_words + kk) * x1(kk);
    }
    return acc;
}

// The two 16-bit values of a word (element 2i in the low half): f16 through unpack2x16float,
// bf16 as the top halves of f32s (a shift and a mask, no shader-f16).
fn halves(q: u32) -> vec2<f32> {
    if (KIND == 4u) { return bitcast<vec2<f32>>(vec2<u32>(q << 16u, q & 0xffff0000u)); }
    return unpack2x16float(q);
}

// Per-row partial dot products of the 16-bit layouts: a vec4<u32> holds 8 halves.
fn dot_halves(row: u32, lane: u32) -> f32 {
    let base = row * p.row_words / 4u;
    let full = p.k / 8u;
    var acc = 0.0;
    for (var i = lane; i < full; i += WG) {
        let q = w[base + i];
        let k0 = i * 8u;
        acc += dot(vec4<f32>(halves(q.x), halves(q.y)), x4(k0));
        acc += dot(vec4<f32>(halves(q.z), halves(q.w)), x4(k0 + 4u));
    }
    for (var kk = full * 8u + lane; kk < p.k; kk += WG) {
        let word = row * p.row_words + kk / 2u;
        let pair = halves(w[word / 4u][word % 4u]);
        acc += select(pair.x, pair.y, (kk & 1u) == 1u) * x1(kk);
    }
    return acc;
}

// x[k..k+4] with zeros past the end (for the last, partial block of a quantized row).
fn x4_tail(k: u32) -> vec4<f32> {
    let last = p.k - 1u;
    let m = vec4<bool>(k < p.k, k + 1u < p.k, k + 2u < p.k, k + 3u < p.k);
    let v = vec4<f32>(x1(min(k, last)), x1(min(k + 1u, last)), x1(min(k + 2u, last)), x1(min(k + 3u, last)));
    return select(vec4<f32>(0.0), v, m);
}

fn xq(k: u32, full: bool) -> vec4<f32> {
    if (full) { return x4(k); }
    return x4_tail(k);
}

// Four int8 quants of a word, sign-extended.
fn i8x4(q: u32) -> vec4<f32> {
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(q << 24u, q << 16u, q << 8u, q)) >> vec4<u32>(24u));
}

// Eight 4-bit quants of a word minus 8: values 0..3 and 4..7.
fn u4x8_lo(q: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(q, q >> 4u, q >> 8u, q >> 12u) & vec4<u32>(15u))) - vec4<f32>(8.0);
}
fn u4x8_hi(q: u32) -> vec4<f32> {
    return u4x8_lo(q >> 16u);
}

fn block_scale(row_word: u32, nq: u32, b: u32) -> f32 {
    let word = row_word + nq + b / 2u;
    let pair = unpack2x16float(w[word / 4u][word % 4u]);
    return select(pair.x, pair.y, (b & 1u) == 1u);
}

fn dot_q8_0(row: u32, lane: u32) -> f32 {
    let row_word = row * p.row_words;
    let nb = (p.k + 31u) / 32u;
    var acc = 0.0;
    for (var b = lane; b < nb; b += WG) {
        let q0 = w[row_word / 4u + b * 2u];
        let q1 = w[row_word / 4u + b * 2u + 1u];
        let k0 = b * 32u;
        let full = k0 + 32u <= p.k;
        var s = dot(i8x4(q0.x), xq(k0, full)) + dot(i8x4(q0.y), xq(k0 + 4u, full));
        s += dot(i8x4(q0.z), xq(k0 + 8u, full)) + dot(i8x4(q0.w), xq(k0 + 12u, full));
        s += dot(i8x4(q1.x), xq(k0 + 16u, full)) + dot(i8x4(q1.y), xq(k0 + 20u, full));
        s += dot(i8x4(q1.z), xq(k0 + 24u, full)) + dot(i8x4(q1.w), xq(k0 + 28u, full));
        acc += s * block_scale(row_word, nb * 8u, b);
    }
    return acc;
}

fn dot_q4_0(row: u32, lane: u32) -> f32 {
    let row_word = row * p.row_words;
    let nb = (p.k + 31u) / 32u;
    var acc = 0.0;
    for (var b = lane; b < nb; b += WG) {
        let q = w[row_word / 4u + b];
        let k0 = b * 32u;
        let full = k0 + 32u <= p.k;
        var s = dot(u4x8_lo(q.x), xq(k0, full)) + dot(u4x8_hi(q.x), xq(k0 + 4u, full));
        s += dot(u4x8_lo(q.y), xq(k0 + 8u, full)) + dot(u4x8_hi(q.y), xq(k0 + 12u, full));
        s += dot(u4x8_lo(q.z), xq(k0 + 16u, full)) + dot(u4x8_hi(q.z), xq(k0 + 20u, full));
        s += dot(u4x8_lo(q.w), xq(k0 + 24u, full)) + dot(u4x8_hi(q.w), xq(k0 + 28u, full));
        acc += s * block_scale(row_word, nb * 4u, b);
    }
    return acc;
}

fn reduce_and_store(row0: u32, lane: u32, token: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            for (var r = 0u; r < ROWS; r++) {
                partial[r * WG + lane] += partial[r * WG + lane + s];
            }
        }
        workgroupBarrier();
    }
    if (GLU) {
        if (lane < ROWS && lane % 2u == 0u && row0 + lane + 1u < p.rows) {
            let g = partial[lane * WG];
            // exp(-g) overflows to inf for g < -88: g / inf = -0, the right limit.
            y[token * p.y_stride + (p.out_offset + row0 + lane) / 2u] = g / (1.0 + exp(-g)) * partial[(lane + 1u) * WG];
        }
    } else if (lane < ROWS && row0 + lane < p.rows) {
        y[token * p.y_stride + p.out_offset + row0 + lane] = partial[lane * WG];
    }
}

fn dot_row(row: u32, lane: u32) -> f32 {
    switch KIND {
        case 0u: { return dot_f32(row, lane); }
        case 2u: { return dot_q8_0(row, lane); }
        case 3u: { return dot_q4_0(row, lane); }
        default: { return dot_halves(row, lane); }
    }
}

@compute @workgroup_size(WG)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>) {
    let lane = lid.x;
    let row0 = (wid.x + wid.y * nwg.x) * ROWS;
    x0 = wid.z * p.k;
    for (var r = 0u; r < ROWS; r++) {
        var acc = 0.0;
        if (row0 + r < p.rows) { acc = dot_row(row0 + r, lane); }
        partial[r * WG + lane] = acc;
    }
    reduce_and_store(row0, lane, wid.z);
}
