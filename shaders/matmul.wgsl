// Tiled matrix-matrix product for prefill: out[m, out_offset + n] = sum_k x[m, k] * W[n, k]
// x [m, k] f32 (row-major, unpadded); W: rows [0, n) of one Matrix chunk as u32 words,
// row_words per row; out [m, out_stride] f32. Reference: HF nn.Linear (x @ W^T).
//
// Each 16x16 workgroup computes a 64x64 output tile, 4x4 per invocation, stepping through k in
// slices of 16 staged in workgroup memory (8 KiB): each loaded value is reused 64 times.
// Weights of every type are decoded while staging, four consecutive values per invocation
// (weights.wgsl, prepended; a 16-wide k-slice is one 16-value group of a block): no
// shader-f16 needed.

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

fn weight_word(i: u32) -> u32 {
    return w[i];
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
    }
    // Weights: row t / 4 of the tile, values 4 (t % 4) .. + 3 of the slice.
    let r = t / 4u;
    let c = 4u * (t % 4u);
    let kk = k0 + c;
    var wv = vec4<f32>(0.0);
    if (n0 + r < p.n && kk < p.k) {
        // Values past the row's end are zeroed: a block row's padding need not be.
        let live = vec4<bool>(true, kk + 1u < p.k, kk + 2u < p.k, kk + 3u < p.k);
        wv = select(vec4<f32>(0.0), weights4((n0 + r) * p.row_words, p.k, kk), live);
    }
    ws[r * BK + c] = wv.x;
    ws[r * BK + c + 1u] = wv.y;
    ws[r * BK + c + 2u] = wv.z;
    ws[r * BK + c + 3u] = wv.w;
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
