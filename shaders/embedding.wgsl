// Embedding lookup. out[t, d] = table[ids[t], d]   (HF: nn.Embedding / LlamaModel.embed_tokens)
// ids [n_tokens] u32; table: the rows [row_start, row_start + rows) of a Matrix chunk;
// out [n_tokens, dim] f32. Ids outside this chunk are left for the chunk that holds them.

struct Params {
    n_tokens: u32,
    dim: u32,
    row_start: u32,
    rows: u32,
    row_words: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

override WG: u32 = 256;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid.x;
}

@compute @workgroup_size(WG)
fn embedding_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wid, nwg, lid);
    if (i >= p.n_tokens * p.dim) { return; }
    let t = i / p.dim;
    let d = i % p.dim;
    let id = ids[t];
    if (id < p.row_start || id >= p.row_start + p.rows) { return; }
    out[i] = bitcast<f32>(table[(id - p.row_start) * p.row_words + d]);
}

@compute @workgroup_size(WG)
fn embedding_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wid, nwg, lid);
    if (i >= p.n_tokens * p.dim) { return; }
    let t = i / p.dim;
    let d = i % p.dim;
    let id = ids[t];
    if (id < p.row_start || id >= p.row_start + p.rows) { return; }
    let pair = unpack2x16float(table[(id - p.row_start) * p.row_words + d / 2u]);
    out[i] = select(pair.x, pair.y, (d & 1u) == 1u);
}

// Scale of block b of the row starting at word `row` (scales follow the row's nq quant words).
fn block_scale(row: u32, nq: u32, b: u32) -> f32 {
    let pair = unpack2x16float(table[row + nq + b / 2u]);
    return select(pair.x, pair.y, (b & 1u) == 1u);
}

@compute @workgroup_size(WG)
fn embedding_q8_0(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wid, nwg, lid);
    if (i >= p.n_tokens * p.dim) { return; }
    let t = i / p.dim;
    let d = i % p.dim;
    let id = ids[t];
    if (id < p.row_start || id >= p.row_start + p.rows) { return; }
    let row = (id - p.row_start) * p.row_words;
    let b = d / 32u;
    let word = table[row + b * 8u + (d % 32u) / 4u];
    let q = bitcast<i32>(word << (24u - 8u * (d % 4u))) >> 24u;
    out[i] = f32(q) * block_scale(row, ((p.dim + 31u) / 32u) * 8u, b);
}

@compute @workgroup_size(WG)
fn embedding_q4_0(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wid, nwg, lid);
    if (i >= p.n_tokens * p.dim) { return; }
    let t = i / p.dim;
    let d = i % p.dim;
    let id = ids[t];
    if (id < p.row_start || id >= p.row_start + p.rows) { return; }
    let row = (id - p.row_start) * p.row_words;
    let b = d / 32u;
    let word = table[row + b * 4u + (d % 32u) / 8u];
    let q = f32((word >> (4u * (d % 8u))) & 15u) - 8.0;
    out[i] = q * block_scale(row, ((p.dim + 31u) / 32u) * 4u, b);
}
