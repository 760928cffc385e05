// Matrix-vector product for decode: y[out_offset + r] = sum_k W[r, k] * x[k], and for a few
// tokens at once (short prefills), token t = workgroup_id.z: x[t * k ..], y[t * y_stride ..].
// W: rows [0, rows) of one Matrix chunk, stored as u32 words, row_words per row (a multiple of
// 4, so every row starts on a vec4<u32>); x [k] f32; y [>= out_offset + rows] f32.
// Reference: HF nn.Linear without bias (x @ W^T).
//
// ROWS rows per workgroup; the WG invocations stride along each row (adjacent invocations read
// adjacent 16-byte words, so loads coalesce) and a tree reduction in workgroup memory finishes.
// Every weight type (KIND and the block constants of weights.wgsl, prepended): no f16
// arithmetic, no subgroups (the portability floor). Float rows are read as vec4<u32>; block
// rows a 32-value run per invocation (a whole Q8_0/Q4_0 block, an eighth of a K-quant
// super-block), as quants times the scale of each 16-value group minus its min.

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
// Fused gated MLP input: rows come in (gate, up) pairs (an interleaved Matrix; chunks start at
// even rows, ROWS is even) and y[pair] = act(gate · x) * (up · x), y_stride counting pairs;
// act from activation.wgsl (prepended, override constant ACT).
override GLU: bool = false;
var<workgroup> partial: array<f32, 1024>;

var<private> x0: u32; // this token's offset in x

fn x4(k: u32) -> vec4<f32> {
    let i = x0 + k;
    return vec4<f32>(x[i], x[i + 1u], x[i + 2u], x[i + 3u]);
}

fn x1(k: u32) -> f32 {
    return x[x0 + k];
}

fn weight_word(i: u32) -> u32 {
    return w[i / 4u][i % 4u];
}

// One scalar weight of the f32 layout.
fn w_f32(word: u32) -> f32 {
    return bitcast<f32>(weight_word(word));
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
    if (KIND == KIND_BF16) { return bitcast<vec2<f32>>(vec2<u32>(q << 16u, q & 0xffff0000u)); }
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

// Per-row partial dot products of a block type: 32-value runs, two 16-value groups each.
fn dot_blocks(row: u32, lane: u32) -> f32 {
    let row_word = row * p.row_words;
    let runs = (p.k + 31u) / 32u;
    let per_block = BLOCK_VALUES / 32u;
    var acc = 0.0;
    for (var c = lane; c < runs; c += WG) {
        let blk = block_at(row_word, p.k, c / per_block);
        let k0 = c * 32u;
        let full = k0 + 32u <= p.k;
        for (var g = 0u; g < 2u; g++) {
            let j = (c % per_block) * 32u + 16u * g;
            let k = k0 + 16u * g;
            let xa = xq(k, full);
            let xb = xq(k + 4u, full);
            let xc = xq(k + 8u, full);
            let xd = xq(k + 12u, full);
            let qx = dot(quants4(blk, j), xa) + dot(quants4(blk, j + 4u), xb) + dot(quants4(blk, j + 8u), xc) + dot(quants4(blk, j + 12u), xd);
            let sm = group_scale(blk, j / 16u);
            acc += sm.x * qx - sm.y * dot(xa + xb + xc + xd, vec4<f32>(1.0));
        }
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
            y[token * p.y_stride + (p.out_offset + row0 + lane) / 2u] = gate_act(partial[lane * WG]) * partial[(lane + 1u) * WG];
        }
    } else if (lane < ROWS && row0 + lane < p.rows) {
        y[token * p.y_stride + p.out_offset + row0 + lane] = partial[lane * WG];
    }
}

fn dot_row(row: u32, lane: u32) -> f32 {
    if (KIND == KIND_F32) { return dot_f32(row, lane); }
    if (is_block()) { return dot_blocks(row, lane); }
    return dot_halves(row, lane);
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
