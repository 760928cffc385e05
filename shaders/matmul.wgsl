// Tiled matrix-matrix product for prefill: out[m, out_offset + n] = sum_k x[m, k] * W[n, k]
// x [m, k] f32 (row-major, unpadded); W: rows [0, n) of one Matrix chunk as u32 words,
// row_words per row; out [m, out_stride] f32. Reference: HF nn.Linear (x @ W^T).
//
// Each 16x16 workgroup computes a 64x64 output tile, 4x4 per invocation, stepping through k in
// slices of 16 staged in workgroup memory (8 KiB): each loaded value is reused 64 times.
// f16/bf16 weights are unpacked from u32 pairs and Q8_0/Q4_0 blocks dequantized while staging
// (a 16-wide k-slice never straddles a 32-value block): no shader-f16 needed. The weight type
// is the KIND override constant (WeightDType::kind).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    row_words: u32,
    out_stride: u32,
    out_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const TILE: u32 = 64u;
const BK: u32 = 16u;
var<workgroup> xs: array<f32, 1024>; // [TILE][BK]
var<workgroup> ws: array<f32, 1024>; // [TILE][BK]

// Weight type: 0 f32, 1 f16, 2 q8_0, 3 q4_0, 4 bf16.
override KIND: u32 = 0;

fn weight_f32(n: u32, k: u32) -> f32 {
    return bitcast<f32>(w[n * p.row_words + k]);
}

// f16 (unpack2x16float) or bf16 (the top half of an f32) value k of row n.
fn weight_half(n: u32, k: u32) -> f32 {
    let q = w[n * p.row_words + k / 2u];
    if (KIND == 4u) { return bitcast<f32>(select(q << 16u, q & 0xffff0000u, (k & 1u) == 1u)); }
    let pair = unpack2x16float(q);
    return select(pair.x, pair.y, (k & 1u) == 1u);
}

// Scale of block b of the row starting at word `row` (scales follow the row's nq quant words).
fn block_scale(row: u32, nq: u32, b: u32) -> f32 {
    let pair = unpack2x16float(w[row + nq + b / 2u]);
    return select(pair.x, pair.y, (b & 1u) == 1u);
}

fn weight_q8_0(n: u32, k: u32) -> f32 {
    let row = n * p.row_words;
    let b = k / 32u;
    let word = w[row + b * 8u + (k % 32u) / 4u];
    let q = bitcast<i32>(word << (24u - 8u * (k % 4u))) >> 24u;
    return f32(q) * block_scale(row, ((p.k + 31u) / 32u) * 8u, b);
}

fn weight_q4_0(n: u32, k: u32) -> f32 {
    let row = n * p.row_words;
    let b = k / 32u;
    let word = w[row + b * 4u + (k % 32u) / 8u];
    let q = f32((word >> (4u * (k % 8u))) & 15u) - 8.0;
    return q * block_scale(row, ((p.k + 31u) / 32u) * 4u, b);
}

fn weight(n: u32, k: u32) -> f32 {
    switch KIND {
        case 0u: { return weight_f32(n, k); }
        case 2u: { return weight_q8_0(n, k); }
        case 3u: { return weight_q4_0(n, k); }
        default: { return weight_half(n, k); }
    }
}

fn stage(m0: u32, n0: u32, k0: u32, t: u32) {
    for (var l = 0u; l < 4u; l++) {
        let idx = t + l * 256u;
        let r = idx / BK;
        let c = idx % BK;
        let kk = k0 + c;
        var xv = 0.0;
        if (m0 + r < p.m && kk < p.k) { xv = x[(m0 + r) * p.k + kk]; }
        xs[idx] = xv;
        var wv = 0.0;
        if (n0 + r < p.n && kk < p.k) {
            wv = weight(n0 + r, kk);
        }
        ws[idx] = wv;
    }
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = wid.y * TILE;
    let n0 = wid.x * TILE;
    let t = lid.y * 16u + lid.x;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        stage(m0, n0, k0, t);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let b = vec4<f32>(ws[(lid.x * 4u) * BK + kk], ws[(lid.x * 4u + 1u) * BK + kk],
                              ws[(lid.x * 4u + 2u) * BK + kk], ws[(lid.x * 4u + 3u) * BK + kk]);
            for (var i = 0u; i < 4u; i++) {
                acc[i] += xs[(lid.y * 4u + i) * BK + kk] * b;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + lid.y * 4u + i;
        if (m >= p.m) { continue; }
        for (var j = 0u; j < 4u; j++) {
            let n = n0 + lid.x * 4u + j;
            if (n < p.n) { out[m * p.out_stride + p.out_offset + n] = acc[i][j]; }
        }
    }
}
