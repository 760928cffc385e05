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
// Table type: 0 f32, 1 f16, 2 q8_0, 3 q4_0, 4 bf16 (WeightDType::kind).
override KIND: u32 = 0;

fn element(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.x + wid.y * nwg.x) * WG + lid.x;
}

// Scale of block b of the row starting at word `row` (scales follow the row's nq quant words).
fn block_scale(row: u32, nq: u32, b: u32) -> f32 {
    let pair = unpack2x16float(table[row + nq + b / 2u]);
    return select(pair.x, pair.y, (b & 1u) == 1u);
}

// Value d of the table row starting at word `row`.
fn value(row: u32, d: u32) -> f32 {
    let b = d / 32u;
    let nb = (p.dim + 31u) / 32u;
    switch KIND {
        case 0u: { return bitcast<f32>(table[row + d]); }
        case 1u: {
            let pair = unpack2x16float(table[row + d / 2u]);
            return select(pair.x, pair.y, (d & 1u) == 1u);
        }
        case 4u: {
            let q = table[row + d / 2u];
            return bitcast<f32>(select(q << 16u, q & 0xffff0000u, (d & 1u) == 1u));
        }
        case 2u: {
            let word = table[row + b * 8u + (d % 32u) / 4u];
            return f32(bitcast<i32>(word << (24u - 8u * (d % 4u))) >> 24u) * block_scale(row, nb * 8u, b);
        }
        default: { // 3: q4_0
            let word = table[row + b * 4u + (d % 32u) / 8u];
            return (f32((word >> (4u * (d % 8u))) & 15u) - 8.0) * block_scale(row, nb * 4u, b);
        }
    }
}

@compute @workgroup_size(WG)
fn embedding(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wid, nwg, lid);
    if (i >= p.n_tokens * p.dim) { return; }
    let id = ids[i / p.dim];
    if (id < p.row_start || id >= p.row_start + p.rows) { return; }
    out[i] = value((id - p.row_start) * p.row_words, i % p.dim);
}
